//! The JSON shapes that both the CLI's `--json` and the HTTP API print.
//!
//! One module so the two can never drift apart. Keys are snake_case, times are
//! RFC 3339 strings in UTC (`2026-11-22T10:15:00Z`), and absent values are
//! `null` (never omitted). Shapes are built from [`crate::catalog`] rows, which
//! are deliberately not `Serialize` themselves: what we store and what we
//! promise to users change for different reasons. Patient names are never part
//! of any shape (the catalog does not even store them).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::catalog;

/// A time as printed in JSON: RFC 3339 in UTC, with as many fractional digits
/// as it has (none for whole seconds).
pub fn time(ts: Timestamp) -> String {
    ts.to_string()
}

fn opt_time(ts: Option<Timestamp>) -> Option<String> {
    ts.map(time)
}

/// A study, as listed by `studies` and `GET /api/studies`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Study {
    pub study_uid: String,
    pub accession_number: Option<String>,
    /// Who issued the accession number (DICOM Issuer of Accession Number,
    /// its Local Namespace Entity ID), or null.
    pub issuer_of_accession: Option<String>,
    pub patient_id: Option<String>,
    /// The namespace the patient ID is unique in (DICOM Issuer of Patient
    /// ID), or null.
    pub issuer_of_patient_id: Option<String>,
    pub modalities: Vec<String>,
    pub source: String,
    pub calling_ae: String,
    pub first_received_at: String,
    pub last_received_at: String,
    pub series_count: u64,
    pub instance_count: u64,
    /// `unreported | overdue | reported | no_report_needed`.
    pub state: String,
    pub deadline: Option<String>,
    pub reported_at: Option<String>,
    /// What the latest linked report says: `preliminary | final | corrected |
    /// cancelled | withdrawn`, or null when no report is linked. `cancelled` on
    /// a study with images waits for a person to decide.
    pub report_status: Option<String>,
    /// The watchdog rule that set the deadline, or null (none matched: the
    /// 28-day ceiling applies).
    pub rule: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub institution_name: Option<String>,
}

impl Study {
    /// The study as of `now`, which decides whether it is overdue.
    pub fn from_row(row: &catalog::StudyRow, now: Timestamp) -> Study {
        Study {
            study_uid: row.study_uid.clone(),
            accession_number: row.accession_number.clone(),
            issuer_of_accession: row.issuer_of_accession.clone(),
            patient_id: row.patient_id.clone(),
            issuer_of_patient_id: row.issuer_of_patient_id.clone(),
            modalities: row.modalities.clone(),
            source: row.source.clone(),
            calling_ae: row.calling_ae.clone(),
            first_received_at: time(row.first_received_at),
            last_received_at: time(row.last_received_at),
            series_count: row.series_count,
            instance_count: row.instance_count,
            state: row.state(now).as_str().to_owned(),
            deadline: opt_time(row.deadline),
            reported_at: opt_time(row.reported_at),
            report_status: row.report_status.clone(),
            rule: row.rule.clone(),
            study_date: row.study_date.clone(),
            study_description: row.study_description.clone(),
            institution_name: row.institution_name.clone(),
        }
    }
}

/// One study with everything known about it (`study UID`, `GET /api/studies/{uid}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyDetail {
    #[serde(flatten)]
    pub study: Study,
    pub series: Vec<Series>,
    pub instances: Vec<Instance>,
    pub ingest_failures: Vec<IngestFailure>,
    pub integrity_conflicts: Vec<IntegrityConflict>,
    /// Reports linked to the study, oldest first, each with how it was linked.
    pub reports: Vec<Report>,
    pub audit: Vec<AuditEntry>,
    /// The study's alarms in every state, newest first.
    pub alarms: Vec<Alarm>,
    /// Whether the study has settled, and whether its sender says it is whole.
    pub transfer: Transfer,
    /// Per destination that takes the study: received → forwarded →
    /// committed in PACS, counted over its instances.
    pub forwarding: Vec<Forwarding>,
}

/// `transfer` of a study.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// When it became stable (no instance for `stable_after`); null while
    /// instances may still arrive.
    pub stable_at: Option<String>,
    /// `checking | complete | incomplete | unknown`, or null when its sender
    /// is not configured for query/retrieve.
    pub completeness: Option<String>,
    /// How many instances the sender says the study has.
    pub expected_instances: Option<u64>,
    pub completeness_at: Option<String>,
    /// In words: "2 of 3 instance(s) received", or why it is unknown.
    pub completeness_detail: Option<String>,
}

/// One destination's view of a study.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarding {
    pub destination: String,
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    /// Sent and waiting for the destination's storage commitment.
    pub awaiting_commitment: u64,
    /// Committed in the destination (storage commitment).
    pub committed: u64,
    /// The destination refused to commit them.
    pub commit_failed: u64,
    /// Whether the destination does storage commitment (judged by its rows).
    pub commits: bool,
    pub last_sent_at: Option<String>,
    pub last_committed_at: Option<String>,
}

/// One instance's delivery to one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub destination: String,
    /// `pending | sent | failed`.
    pub state: String,
    pub attempts: u64,
    pub sent_at: Option<String>,
    pub last_error: Option<String>,
    /// `awaiting | requested | committed | failed`, or null when the
    /// destination does not do storage commitment.
    pub commit_state: Option<String>,
    pub committed_at: Option<String>,
    pub commit_failure: Option<String>,
}

impl From<&catalog::DeliveryRow> for Delivery {
    fn from(row: &catalog::DeliveryRow) -> Delivery {
        Delivery {
            destination: row.destination.clone(),
            state: row.state.clone(),
            attempts: row.attempts,
            sent_at: opt_time(row.sent_at),
            last_error: row.last_error.clone(),
            commit_state: row.commit_state.clone(),
            committed_at: opt_time(row.committed_at),
            commit_failure: row.commit_failure.clone(),
        }
    }
}

/// The per-destination summary of a study's delivery rows (also the
/// dashboard's study page).
pub fn forwarding(rows: &[catalog::DeliveryRow]) -> Vec<Forwarding> {
    let mut out: Vec<Forwarding> = Vec::new();
    for row in rows {
        let i = match out.iter().position(|f| f.destination == row.destination) {
            Some(i) => i,
            None => {
                out.push(Forwarding {
                    destination: row.destination.clone(),
                    pending: 0,
                    sent: 0,
                    failed: 0,
                    awaiting_commitment: 0,
                    committed: 0,
                    commit_failed: 0,
                    commits: false,
                    last_sent_at: None,
                    last_committed_at: None,
                });
                out.len() - 1
            }
        };
        let f = &mut out[i];
        match row.state.as_str() {
            "pending" => f.pending += 1,
            "sent" => f.sent += 1,
            _ => f.failed += 1,
        }
        match row.commit_state.as_deref() {
            Some("awaiting" | "requested") => f.awaiting_commitment += 1,
            Some("committed") => f.committed += 1,
            Some(_) => f.commit_failed += 1,
            None => {}
        }
        f.commits |= row.commit_state.is_some();
        let later = |a: &Option<String>, b: Option<jiff::Timestamp>| match (a, b) {
            (_, None) => a.clone(),
            (None, Some(b)) => Some(time(b)),
            (Some(x), Some(b)) => Some(if *x >= time(b) { x.clone() } else { time(b) }),
        };
        f.last_sent_at = later(&f.last_sent_at, row.sent_at);
        f.last_committed_at = later(&f.last_committed_at, row.committed_at);
    }
    out.sort_by(|a, b| a.destination.cmp(&b.destination));
    out
}

impl StudyDetail {
    /// The study with its `alarms`, as of `now`, which decides whether it is
    /// overdue. The alarms are a parameter so that no caller can leave them
    /// out: the CLI and the API print the same shape.
    pub fn from_detail(
        detail: &catalog::StudyDetail,
        alarms: &[catalog::AlarmRow],
        now: Timestamp,
    ) -> StudyDetail {
        StudyDetail {
            study: Study::from_row(&detail.study, now),
            series: detail.series.iter().map(Series::from).collect(),
            instances: detail
                .instances
                .iter()
                .map(|i| {
                    let mut instance = Instance::from(i);
                    instance.delivery = detail
                        .delivery
                        .iter()
                        .filter(|d| d.sop_instance_uid == i.sop_instance_uid)
                        .map(Delivery::from)
                        .collect();
                    instance
                })
                .collect(),
            ingest_failures: detail.failures.iter().map(IngestFailure::from).collect(),
            integrity_conflicts: detail
                .conflicts
                .iter()
                .map(IntegrityConflict::from)
                .collect(),
            reports: detail.reports.iter().map(Report::from).collect(),
            audit: detail.audit.iter().map(AuditEntry::from).collect(),
            alarms: alarms.iter().map(Alarm::from).collect(),
            transfer: Transfer {
                stable_at: opt_time(detail.transfer.stable_at),
                completeness: detail.transfer.completeness.clone(),
                expected_instances: detail.transfer.expected_instances,
                completeness_at: opt_time(detail.transfer.completeness_at),
                completeness_detail: detail.transfer.completeness_detail.clone(),
            },
            forwarding: forwarding(&detail.delivery),
        }
    }
}

/// One page of `GET /api/studies`: the studies, and the cursor that fetches
/// the next page (`null` on the last one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyPage {
    pub studies: Vec<Study>,
    pub next_cursor: Option<String>,
}

impl StudyPage {
    /// The page as of `now`, which decides whether each study is overdue.
    pub fn new(
        rows: &[catalog::StudyRow],
        next: Option<&catalog::views::StudyCursor>,
        now: Timestamp,
    ) -> StudyPage {
        StudyPage {
            studies: rows.iter().map(|r| Study::from_row(r, now)).collect(),
            next_cursor: next.map(catalog::views::StudyCursor::encode),
        }
    }
}

/// The studies still waiting for their report (`GET /api/stats/backlog`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    /// The time the figures are for.
    pub at: String,
    /// Every study waiting for its report, overdue ones included.
    pub unreported: u64,
    /// Of those, past their deadline.
    pub overdue: u64,
    /// Of those, whose deadline is not computed yet.
    pub no_deadline: u64,
    /// By time since first receipt: `<24h`, `24h-7d`, `7d-28d`, `>28d`,
    /// always all four, in that order.
    pub by_age: Vec<AgeCount>,
    /// A study of several modalities counts under each; one without any
    /// under `null`. Largest first.
    pub by_modality: Vec<ModalityCount>,
    /// Largest first.
    pub by_source: Vec<SourceCount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgeCount {
    pub bucket: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModalityCount {
    pub modality: Option<String>,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    pub source: String,
    pub count: u64,
}

impl From<&catalog::views::BacklogStats> for Backlog {
    fn from(b: &catalog::views::BacklogStats) -> Backlog {
        Backlog {
            at: time(b.at),
            unreported: b.unreported,
            overdue: b.overdue,
            no_deadline: b.no_deadline,
            by_age: b
                .by_age
                .iter()
                .map(|(bucket, count)| AgeCount {
                    bucket: (*bucket).to_owned(),
                    count: *count,
                })
                .collect(),
            by_modality: b
                .by_modality
                .iter()
                .map(|(modality, count)| ModalityCount {
                    modality: modality.clone(),
                    count: *count,
                })
                .collect(),
            by_source: b
                .by_source
                .iter()
                .map(|(source, count)| SourceCount {
                    source: source.clone(),
                    count: *count,
                })
                .collect(),
        }
    }
}

/// A series of a study.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    pub series_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub instance_count: u64,
    pub first_received_at: String,
    pub last_received_at: String,
}

impl From<&catalog::SeriesRow> for Series {
    fn from(row: &catalog::SeriesRow) -> Series {
        Series {
            series_uid: row.series_uid.clone(),
            modality: row.modality.clone(),
            series_number: row.series_number,
            series_description: row.series_description.clone(),
            instance_count: row.instance_count,
            first_received_at: time(row.first_received_at),
            last_received_at: time(row.last_received_at),
        }
    }
}

/// A stored instance. Its path on disk is an internal detail and not shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub sop_instance_uid: String,
    pub series_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub received_at: String,
    pub calling_ae: String,
    /// When the local file was pruned because every destination had it
    /// (committed, where it commits); the catalog keeps the row and hash.
    pub pruned_at: Option<String>,
    /// Its delivery to each destination that takes it.
    pub delivery: Vec<Delivery>,
}

impl From<&catalog::InstanceRow> for Instance {
    fn from(row: &catalog::InstanceRow) -> Instance {
        Instance {
            sop_instance_uid: row.sop_instance_uid.clone(),
            series_uid: row.series_uid.clone(),
            sop_class_uid: row.sop_class_uid.clone(),
            transfer_syntax: row.transfer_syntax.clone(),
            size_bytes: row.size_bytes,
            sha256: row.sha256.clone(),
            received_at: time(row.received_at),
            calling_ae: row.calling_ae.clone(),
            pruned_at: opt_time(row.pruned_at),
            delivery: Vec::new(),
        }
    }
}

/// A rejected instance. `status` is the DIMSE status we answered, as a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestFailure {
    pub id: i64,
    pub at: String,
    pub calling_ae: String,
    pub source: String,
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub study_uid: Option<String>,
    pub status: u16,
    pub reason: String,
}

impl From<&catalog::FailureRow> for IngestFailure {
    fn from(row: &catalog::FailureRow) -> IngestFailure {
        IngestFailure {
            id: row.id,
            at: time(row.at),
            calling_ae: row.calling_ae.clone(),
            source: row.source.clone(),
            sop_class_uid: row.sop_class_uid.clone(),
            sop_instance_uid: row.sop_instance_uid.clone(),
            study_uid: row.study_uid.clone(),
            status: row.status,
            reason: row.reason.clone(),
        }
    }
}

/// An instance resent with different content under a known SOP Instance UID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityConflict {
    pub id: i64,
    pub at: String,
    pub sop_instance_uid: String,
    pub study_uid: Option<String>,
    pub calling_ae: String,
    pub existing_sha256: String,
    pub new_sha256: String,
    pub quarantine_path: String,
}

impl From<&catalog::ConflictRow> for IntegrityConflict {
    fn from(row: &catalog::ConflictRow) -> IntegrityConflict {
        IntegrityConflict {
            id: row.id,
            at: time(row.at),
            sop_instance_uid: row.sop_instance_uid.clone(),
            study_uid: row.study_uid.clone(),
            calling_ae: row.calling_ae.clone(),
            existing_sha256: row.existing_sha256.clone(),
            new_sha256: row.new_sha256.clone(),
            quarantine_path: row.quarantine_path.clone(),
        }
    }
}

/// A report (HL7, DICOM SR, manual or imported), with its links
/// (`reports`, `GET /api/reports`, and inside a study's detail).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: i64,
    /// `hl7 | dicom_sr | manual | import`.
    pub origin: String,
    /// `preliminary | final | corrected | cancelled`.
    pub status: String,
    /// Posted in error (HL7 OBX-11 = W): it counts for nothing.
    pub withdrawn: bool,
    /// False once a later report for the same request superseded it.
    pub current: bool,
    pub superseded_by: Option<i64>,
    pub received_at: String,
    pub reported_at: Option<String>,
    pub exam_at: Option<String>,
    pub author: Option<String>,
    pub accession_number: Option<String>,
    pub issuer_of_accession: Option<String>,
    pub study_uid: Option<String>,
    pub placer_number: Option<String>,
    pub filler_number: Option<String>,
    pub patient_ids: Vec<PatientId>,
    pub procedure: Option<String>,
    /// `critical | urgent | significant_unexpected | suspected_cancer`, or null.
    pub alert_category: Option<String>,
    /// Who on the referrer's side acknowledged the alert, and when.
    pub alert_acknowledged_by: Option<String>,
    pub alert_acknowledged_at: Option<String>,
    pub hl7_message_id: Option<i64>,
    pub sop_instance_uid: Option<String>,
    pub recorded_by: Option<String>,
    pub text: Option<String>,
    pub links: Vec<ReportLink>,
}

/// One patient identifier of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientId {
    pub id: String,
    pub authority: Option<String>,
    pub kind: Option<String>,
}

/// How a report is tied to a study.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportLink {
    pub study_uid: String,
    /// `study_uid | accession | order | patient_date`.
    pub rule: String,
    /// A guess (patient ID and date) that a person must confirm.
    pub probable: bool,
    /// `confirmed | rejected` once a person decided a probable link.
    pub confirmation: Option<String>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<String>,
    pub linked_at: String,
    /// Whether the link lets the report count for the study.
    pub counts: bool,
}

impl From<&catalog::ReportRow> for Report {
    fn from(row: &catalog::ReportRow) -> Report {
        Report {
            id: row.id,
            origin: row.origin.as_str().to_owned(),
            status: row.status.as_str().to_owned(),
            withdrawn: row.withdrawn,
            current: row.superseded_by.is_none(),
            superseded_by: row.superseded_by,
            received_at: time(row.received_at),
            reported_at: opt_time(row.reported_at),
            exam_at: opt_time(row.exam_at),
            author: row.author.clone(),
            accession_number: row.accession_number.clone(),
            issuer_of_accession: row.issuer_of_accession.clone(),
            study_uid: row.study_uid.clone(),
            placer_number: row.placer_number.clone(),
            filler_number: row.filler_number.clone(),
            patient_ids: row
                .patient_ids
                .iter()
                .map(|p| PatientId {
                    id: p.id.clone(),
                    authority: p.authority.clone(),
                    kind: p.kind.clone(),
                })
                .collect(),
            procedure: row.procedure.clone(),
            alert_category: row.alert_category.clone(),
            alert_acknowledged_by: row.alert_acknowledged_by.clone(),
            alert_acknowledged_at: opt_time(row.alert_acknowledged_at),
            hl7_message_id: row.message_id,
            sop_instance_uid: row.sop_instance_uid.clone(),
            recorded_by: row.recorded_by.clone(),
            text: row.text.clone(),
            links: row
                .links
                .iter()
                .map(|l| ReportLink {
                    study_uid: l.study_uid.clone(),
                    rule: l.rule.as_str().to_owned(),
                    probable: l.probable,
                    confirmation: l.confirmation.clone(),
                    confirmed_by: l.confirmed_by.clone(),
                    confirmed_at: opt_time(l.confirmed_at),
                    linked_at: time(l.linked_at),
                    counts: l.counts(),
                })
                .collect(),
        }
    }
}

/// An alarm (`alarms --json`, `GET /api/alarms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub id: i64,
    /// `overdue_report | failsafe_unacknowledged | unmatched_report |
    /// feed_silent | integrity | storage_low | forward_stalled |
    /// incomplete_transfer | order_without_images | calendar_expiring |
    /// clock_skew`.
    pub kind: String,
    /// `open | acknowledged | resolved`.
    pub state: String,
    pub study_uid: Option<String>,
    pub accession_number: Option<String>,
    pub report_id: Option<i64>,
    pub rule: Option<String>,
    pub detail: String,
    pub raised_at: String,
    /// The deadline (or threshold) that was missed.
    pub due_at: String,
    /// Escalation steps fired so far.
    pub steps_sent: usize,
    pub next_action_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
    pub acknowledged_until: Option<String>,
    pub ack_reason: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_reason: Option<String>,
}

impl From<&catalog::AlarmRow> for Alarm {
    fn from(a: &catalog::AlarmRow) -> Alarm {
        Alarm {
            id: a.id,
            kind: a.kind.clone(),
            state: a.state.clone(),
            study_uid: a.study_uid.clone(),
            accession_number: a.accession_number.clone(),
            report_id: a.report_id,
            rule: a.rule.clone(),
            detail: a.detail.clone(),
            raised_at: time(a.raised_at),
            due_at: time(a.due_at),
            steps_sent: a.next_step,
            next_action_at: opt_time(a.next_action_at),
            acknowledged_by: a.acknowledged_by.clone(),
            acknowledged_at: opt_time(a.acknowledged_at),
            acknowledged_until: opt_time(a.acknowledged_until),
            ack_reason: a.ack_reason.clone(),
            resolved_at: opt_time(a.resolved_at),
            resolved_reason: a.resolved_reason.clone(),
        }
    }
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub study_uid: Option<String>,
    pub detail: String,
}

impl From<&catalog::AuditRow> for AuditEntry {
    fn from(row: &catalog::AuditRow) -> AuditEntry {
        AuditEntry {
            id: row.id,
            at: time(row.at),
            actor: row.actor.clone(),
            action: row.action.clone(),
            study_uid: row.study_uid.clone(),
            detail: row.detail.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    fn keys(value: &serde_json::Value) -> BTreeSet<&str> {
        value
            .as_object()
            .expect("a JSON object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn study_row() -> catalog::StudyRow {
        catalog::StudyRow {
            study_uid: "1.2.3".into(),
            patient_id: Some("H123".into()),
            issuer_of_patient_id: None,
            accession_number: Some("ACC1".into()),
            issuer_of_accession: None,
            modalities: vec!["CT".into(), "SR".into()],
            study_date: Some("20261122".into()),
            study_time: Some("101500".into()),
            study_description: Some("CT head".into()),
            referring_physician: Some("Dr Who".into()),
            institution_name: None,
            source: "ed-ct".into(),
            calling_ae: "CT1".into(),
            first_received_at: ts("2026-11-22T10:15:00Z"),
            last_received_at: ts("2026-11-22T10:16:30.25Z"),
            series_count: 2,
            instance_count: 7,
            reported_at: None,
            deadline: Some(ts("2026-11-23T10:15:00Z")),
            report_status: None,
            rule: None,
            no_report_needed: false,
        }
    }

    const STUDY_KEYS: &[&str] = &[
        "study_uid",
        "accession_number",
        "issuer_of_accession",
        "patient_id",
        "issuer_of_patient_id",
        "modalities",
        "source",
        "calling_ae",
        "first_received_at",
        "last_received_at",
        "series_count",
        "instance_count",
        "state",
        "deadline",
        "reported_at",
        "report_status",
        "rule",
        "study_date",
        "study_description",
        "institution_name",
    ];

    #[test]
    fn study_has_exactly_the_design_keys_with_rfc3339_times_and_nulls() {
        let row = study_row();
        let value = serde_json::to_value(Study::from_row(&row, ts("2026-11-22T12:00:00Z")))
            .expect("serialize");
        assert_eq!(keys(&value), STUDY_KEYS.iter().copied().collect());
        assert_eq!(value["modalities"], serde_json::json!(["CT", "SR"]));
        assert_eq!(value["first_received_at"], "2026-11-22T10:15:00Z");
        assert_eq!(value["last_received_at"], "2026-11-22T10:16:30.25Z");
        assert_eq!(value["deadline"], "2026-11-23T10:15:00Z");
        assert_eq!(value["reported_at"], serde_json::Value::Null);
        assert_eq!(value["institution_name"], serde_json::Value::Null);
        assert_eq!(value["issuer_of_accession"], serde_json::Value::Null);
        assert_eq!(value["issuer_of_patient_id"], serde_json::Value::Null);
        assert_eq!(value["series_count"], 2);
        assert_eq!(value["state"], "unreported");
        // Nothing named like a patient's name or birth date ever appears.
        assert!(!value.to_string().to_lowercase().contains("patient_name"));
    }

    #[test]
    fn study_state_follows_the_clock_and_the_report() {
        let mut row = study_row();
        let after_deadline = ts("2026-11-23T10:15:00.000001Z");
        assert_eq!(Study::from_row(&row, after_deadline).state, "overdue");
        row.reported_at = Some(ts("2026-11-22T18:00:00Z"));
        let value = serde_json::to_value(Study::from_row(&row, after_deadline)).expect("json");
        assert_eq!(value["state"], "reported");
        assert_eq!(value["reported_at"], "2026-11-22T18:00:00Z");
    }

    #[test]
    fn study_detail_flattens_the_study_and_nests_its_parts() {
        let at = ts("2026-11-22T10:15:00Z");
        let detail = catalog::StudyDetail {
            study: study_row(),
            series: vec![catalog::SeriesRow {
                series_uid: "1.2.3.1".into(),
                study_uid: "1.2.3".into(),
                modality: Some("CT".into()),
                series_number: Some(1),
                series_description: None,
                instance_count: 1,
                first_received_at: at,
                last_received_at: at,
            }],
            instances: vec![catalog::InstanceRow {
                sop_instance_uid: "1.2.3.1.1".into(),
                series_uid: "1.2.3.1".into(),
                study_uid: "1.2.3".into(),
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                transfer_syntax: "1.2.840.10008.1.2.1".into(),
                size_bytes: 524_288,
                sha256: "ab".repeat(32),
                rel_path: "1.2.3/1.2.3.1/1.2.3.1.1.dcm".into(),
                received_at: at,
                calling_ae: "CT1".into(),
                pruned_at: None,
            }],
            failures: vec![catalog::FailureRow {
                id: 4,
                at,
                calling_ae: "CT1".into(),
                source: "ed-ct".into(),
                sop_class_uid: None,
                sop_instance_uid: Some("1.2.03".into()),
                study_uid: Some("1.2.3".into()),
                status: 0xC000,
                reason: "truncated".into(),
            }],
            conflicts: vec![catalog::ConflictRow {
                id: 1,
                at,
                sop_instance_uid: "1.2.3.1.1".into(),
                study_uid: Some("1.2.3".into()),
                calling_ae: "CT1".into(),
                existing_sha256: "ab".repeat(32),
                new_sha256: "cd".repeat(32),
                quarantine_path: "quarantine/1".into(),
            }],
            audit: vec![catalog::AuditRow {
                id: 9,
                at,
                actor: "system".into(),
                action: "study_received".into(),
                study_uid: Some("1.2.3".into()),
                detail: "first instance".into(),
            }],
            reports: vec![],
            transfer: catalog::TransferRow::default(),
            delivery: vec![],
        };
        let alarm = catalog::AlarmRow {
            id: 3,
            kind: "overdue_report".into(),
            subject: "1.2.3".into(),
            study_uid: Some("1.2.3".into()),
            accession_number: Some("ACC1".into()),
            patient_id: Some("H123".into()),
            report_id: None,
            rule: None,
            state: "open".into(),
            raised_at: at,
            due_at: at,
            detail: "overdue".into(),
            next_step: 0,
            next_action_at: None,
            acknowledged_by: None,
            acknowledged_at: None,
            acknowledged_until: None,
            ack_reason: None,
            resolved_at: None,
            resolved_reason: None,
        };
        let alarms = [alarm];
        let value =
            serde_json::to_value(StudyDetail::from_detail(&detail, &alarms, at)).expect("json");
        let mut expected: BTreeSet<&str> = STUDY_KEYS.iter().copied().collect();
        expected.extend([
            "series",
            "instances",
            "ingest_failures",
            "integrity_conflicts",
            "reports",
            "audit",
            "alarms",
            "transfer",
            "forwarding",
        ]);
        assert_eq!(keys(&value), expected);
        assert_eq!(
            keys(&value["series"][0]),
            BTreeSet::from([
                "series_uid",
                "modality",
                "series_number",
                "series_description",
                "instance_count",
                "first_received_at",
                "last_received_at",
            ])
        );
        assert_eq!(
            keys(&value["instances"][0]),
            BTreeSet::from([
                "sop_instance_uid",
                "series_uid",
                "sop_class_uid",
                "transfer_syntax",
                "size_bytes",
                "sha256",
                "received_at",
                "calling_ae",
                "pruned_at",
                "delivery",
            ])
        );
        assert_eq!(
            keys(&value["ingest_failures"][0]),
            BTreeSet::from([
                "id",
                "at",
                "calling_ae",
                "source",
                "sop_class_uid",
                "sop_instance_uid",
                "study_uid",
                "status",
                "reason",
            ])
        );
        assert_eq!(value["ingest_failures"][0]["status"], 0xC000);
        assert_eq!(
            keys(&value["integrity_conflicts"][0]),
            BTreeSet::from([
                "id",
                "at",
                "sop_instance_uid",
                "study_uid",
                "calling_ae",
                "existing_sha256",
                "new_sha256",
                "quarantine_path",
            ])
        );
        assert_eq!(
            keys(&value["audit"][0]),
            BTreeSet::from(["id", "at", "actor", "action", "study_uid", "detail"])
        );
        assert_eq!(value["audit"][0]["at"], "2026-11-22T10:15:00Z");
        assert_eq!(value["alarms"][0]["id"], 3);
        assert_eq!(value["alarms"][0]["state"], "open");
        // The round trip through Deserialize gives back the same shape.
        let back: StudyDetail = serde_json::from_value(value).expect("deserialize");
        assert_eq!(back, StudyDetail::from_detail(&detail, &alarms, at));
    }
}

/// One forward destination's queue (`forward status --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardDestination {
    pub destination: String,
    /// Null for a destination no longer in the configuration that still
    /// has queue rows.
    pub ae_title: Option<String>,
    /// `HOST:PORT`; null as for `ae_title`.
    pub address: Option<String>,
    /// Instances still to send (due now or waiting for their next attempt).
    pub pending: u64,
    /// Of those, how many wait for a later attempt after a failure.
    pub waiting: u64,
    pub oldest_pending_at: Option<String>,
    pub sent: u64,
    /// Instances that cannot be sent as things stand (`forward retry`).
    pub failed: u64,
    /// The most attempts any pending instance has had.
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_sent_at: Option<String>,
}

impl ForwardDestination {
    pub fn new(
        name: &str,
        config: Option<&crate::config::Destination>,
        row: Option<&catalog::ForwardStatusRow>,
    ) -> ForwardDestination {
        ForwardDestination {
            destination: name.to_owned(),
            ae_title: config.map(|d| d.ae_title.clone()),
            address: config.map(crate::config::Destination::address),
            pending: row.map_or(0, |r| r.pending),
            waiting: row.map_or(0, |r| r.waiting),
            oldest_pending_at: row.and_then(|r| opt_time(r.oldest_pending)),
            sent: row.map_or(0, |r| r.sent),
            failed: row.map_or(0, |r| r.failed),
            max_attempts: row.map_or(0, |r| r.max_attempts),
            last_error: row.and_then(|r| r.last_error.clone()),
            last_error_at: row.and_then(|r| opt_time(r.last_error_at)),
            last_sent_at: row.and_then(|r| opt_time(r.last_sent_at)),
        }
    }
}

/// One modality and source among the studies received lately, and the
/// watchdog rules that take them (`rules coverage --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Null for studies whose instances named no modality.
    pub modality: Option<String>,
    pub source: String,
    /// Studies of this modality from this source in the window (a study of
    /// several modalities counts under each).
    pub studies: u64,
    /// Rules, in order, that take such a study only if its other facts
    /// match too (their `conditions`); each comes before `applies`.
    pub only_if: Vec<CoverageRule>,
    /// The rule that takes every other such study, or the 28-day ceiling
    /// (`rule` null) when none does.
    pub applies: CoverageRule,
    /// The outcomes the watchdog recorded on these studies, with counts.
    pub recorded: Vec<RecordedRule>,
}

/// A rule as `rules coverage` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageRule {
    /// The rule's name; null for no rule (the 28-day ceiling).
    pub rule: Option<String>,
    /// What else a study needs for the rule to take it, in words
    /// (`patient class I or E`); empty for `applies`.
    pub conditions: Vec<String>,
    /// The deadline in words (`report within 24h (calendar time)`, `no
    /// report needed`, `no rule matches: 28-day ceiling`).
    pub deadline: String,
    /// As written in the config (`24h`, `2d`); null for a rule that needs
    /// no report; `28d` for the ceiling.
    pub report_within: Option<String>,
    /// `calendar | working`; null for the ceiling and for a rule that needs
    /// no report.
    pub hours: Option<String>,
    /// `received | study_time`; null as for `hours`.
    pub clock: Option<String>,
    pub no_report_needed: bool,
}

impl CoverageRule {
    pub fn new(rule: Option<&crate::watchdog::rules::Rule>, conditions: Vec<String>) -> Self {
        use crate::watchdog::rules::{ClockStart, Hours};
        let timed = rule.filter(|r| !r.no_report_needed);
        CoverageRule {
            rule: rule.map(|r| r.name.clone()),
            conditions,
            deadline: crate::watchdog::rules::describe_deadline(rule),
            report_within: match rule {
                None => Some("28d".to_owned()),
                Some(r) => crate::watchdog::rules::within_text(r),
            },
            hours: timed.map(|r| {
                match r.hours {
                    Hours::Calendar => "calendar",
                    Hours::Working => "working",
                }
                .to_owned()
            }),
            clock: timed.map(|r| {
                match r.clock {
                    ClockStart::Received => "received",
                    ClockStart::StudyTime => "study_time",
                }
                .to_owned()
            }),
            no_report_needed: rule.is_some_and(|r| r.no_report_needed),
        }
    }
}

/// Studies on which the watchdog recorded one outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRule {
    /// `studies.rule`; null when no rule matched (or, with `evaluated`
    /// false, when the watchdog has not looked at them yet).
    pub rule: Option<String>,
    pub no_report_needed: bool,
    pub evaluated: bool,
    pub studies: u64,
}

impl From<&catalog::CoverageRow> for RecordedRule {
    fn from(r: &catalog::CoverageRow) -> Self {
        RecordedRule {
            rule: r.rule.clone(),
            no_report_needed: r.no_report_needed,
            evaluated: r.evaluated,
            studies: r.studies,
        }
    }
}
