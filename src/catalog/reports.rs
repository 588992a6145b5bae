//! Reports, orders and HL7 messages in the catalog, and the linking of reports
//! to studies.
//!
//! Linking rules, strongest first; each link records the rule that made it:
//! 1. `study_uid` — the Study Instance UID the report names;
//! 2. `accession` — its accession number (and issuer, when both sides have one);
//!    one accession shared by several studies links to all of them;
//! 3. `order` — its placer or filler order number, through a stored order that
//!    names the study UID or accession;
//! 4. `patient_date` — only when enabled, and only when 1–3 found nothing: the
//!    patient ID and a study date within a window of the exam time. Such a link
//!    is *probable*: it is shown for a person to confirm and never counts as
//!    reported until one does.
//!
//! Rules 1–3 refuse a study whose patient ID is known and differs from every
//! patient ID the report carries: a reused accession or a wrong UID must not
//! close another patient's study. The refusal is audited. A patient ID is
//! compared with its issuer (PID-3's assigning authority, the images' Issuer
//! of Patient ID) when both sides name one, in rule 4 too.
//!
//! Linking runs when a report arrives, and again for the reports that could
//! match when a new study is first received or an order arrives, so a report
//! that arrives before its images links when they come.
//!
//! A request (an accession, or else a filler, placer or study UID) may be
//! reported several times — preliminary, final, corrected, withdrawn: each
//! report supersedes the earlier ones for the same request, and a study is
//! reported when the current report of a linked request is final or corrected
//! and not withdrawn. The clock stops at the earliest final time of such a
//! request.

use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::store::{
    SYSTEM, cached_exec, cached_row, collect, fmt_ts, insert_audit, parse_opt_ts, parse_ts,
    sql_limit,
};
use super::{Error, Store};

/// Where a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportOrigin {
    /// An HL7 v2 ORU message.
    Hl7,
    /// A DICOM Structured Report or Encapsulated PDF received by the SCP.
    DicomSr,
    /// Entered by a person (`report link`, `POST /api/reports`).
    Manual,
    /// A row of a CSV back-fill (`report import`).
    Import,
}

impl ReportOrigin {
    /// The stored and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportOrigin::Hl7 => "hl7",
            ReportOrigin::DicomSr => "dicom_sr",
            ReportOrigin::Manual => "manual",
            ReportOrigin::Import => "import",
        }
    }

    fn parse(s: &str) -> Option<ReportOrigin> {
        Some(match s {
            "hl7" => ReportOrigin::Hl7,
            "dicom_sr" => ReportOrigin::DicomSr,
            "manual" => ReportOrigin::Manual,
            "import" => ReportOrigin::Import,
            _ => return None,
        })
    }
}

/// A report's result status (HL7 OBR-25 P/F/C/X).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportStatus {
    /// Shown, but does not stop the formal-report clock.
    Preliminary,
    /// The formal report.
    Final,
    /// A correction of a final report; still a formal report.
    Corrected,
    /// The order was cancelled. On a study with images a person must decide.
    Cancelled,
}

impl ReportStatus {
    /// The stored, CLI and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Preliminary => "preliminary",
            ReportStatus::Final => "final",
            ReportStatus::Corrected => "corrected",
            ReportStatus::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`ReportStatus::as_str`].
    pub fn parse(s: &str) -> Option<ReportStatus> {
        Some(match s {
            "preliminary" => ReportStatus::Preliminary,
            "final" => ReportStatus::Final,
            "corrected" => ReportStatus::Corrected,
            "cancelled" => ReportStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether a report with this status is a formal report.
    pub fn is_formal(self) -> bool {
        matches!(self, ReportStatus::Final | ReportStatus::Corrected)
    }
}

/// The rule that linked a report to a study.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkRule {
    StudyUid,
    Accession,
    Order,
    PatientDate,
}

impl LinkRule {
    /// The stored and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkRule::StudyUid => "study_uid",
            LinkRule::Accession => "accession",
            LinkRule::Order => "order",
            LinkRule::PatientDate => "patient_date",
        }
    }

    fn parse(s: &str) -> Option<LinkRule> {
        Some(match s {
            "study_uid" => LinkRule::StudyUid,
            "accession" => LinkRule::Accession,
            "order" => LinkRule::Order,
            "patient_date" => LinkRule::PatientDate,
            _ => return None,
        })
    }
}

/// One patient identifier (HL7 PID-3 repeat, DICOM Patient ID).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientId {
    pub id: String,
    /// Assigning authority (PID-3.4), e.g. a trust's code or `NHS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Identifier type code (PID-3.5), e.g. `MR`, `NH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// What links may be made automatically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Whether patient ID + date window makes probable links.
    pub probable: bool,
    /// How far a study's date may be from the report's exam time (or, without
    /// one, its report or arrival time) for a probable link.
    pub probable_window: Duration,
    /// A report dated more than this before a study's date never links to
    /// it by accession or order number: the number was reused.
    pub report_before_study: Duration,
    /// The site's zone, in which DICOM study dates are read.
    pub timezone: jiff::tz::TimeZone,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        LinkPolicy {
            probable: false,
            probable_window: Duration::from_secs(2 * 86_400),
            report_before_study: Duration::from_secs(30 * 86_400),
            timezone: jiff::tz::TimeZone::UTC,
        }
    }
}

/// A report to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReport {
    pub origin: ReportOrigin,
    pub received_at: Timestamp,
    pub status: ReportStatus,
    /// Posted in error (HL7 OBX-11 = W): reopens what the report had closed.
    pub withdrawn: bool,
    /// When the report was made (OBR-22, Verification DateTime, `--time`).
    pub reported_at: Option<Timestamp>,
    pub exam_at: Option<Timestamp>,
    pub author: Option<String>,
    pub accession_number: Option<String>,
    pub issuer_of_accession: Option<String>,
    /// Study Instance UIDs the report names, most specific first (an SR
    /// names its own study and those it references). Already checked against
    /// the UID grammar by the caller.
    pub study_uids: Vec<String>,
    pub placer_number: Option<String>,
    pub filler_number: Option<String>,
    pub patient_ids: Vec<PatientId>,
    pub procedure: Option<String>,
    pub text: Option<String>,
    /// `critical`, `urgent`, `significant_unexpected` or `suspected_cancer`.
    pub alert_category: Option<String>,
    /// The SR document's SOP Instance UID, for `dicom_sr` reports.
    pub sop_instance_uid: Option<String>,
    /// The person who entered it (manual entries and imports).
    pub recorded_by: Option<String>,
}

impl NewReport {
    /// The request this report reports on: an accession (with its issuer), or
    /// else a filler, placer or study UID. `None` when it names none of them.
    fn request_key(&self) -> Option<String> {
        if let Some(acc) = non_blank(&self.accession_number) {
            let issuer = non_blank(&self.issuer_of_accession).unwrap_or("");
            return Some(format!("accession:{issuer}:{acc}"));
        }
        if let Some(f) = non_blank(&self.filler_number) {
            return Some(format!("filler:{f}"));
        }
        if let Some(p) = non_blank(&self.placer_number) {
            return Some(format!("placer:{p}"));
        }
        self.study_uids.first().map(|u| format!("study:{u}"))
    }
}

/// An order (HL7 ORM^O01 / OMI^O23): the cross-walk between accession, study
/// UID, placer and filler numbers, and the patient class and priority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewOrder {
    pub received_at: Option<Timestamp>,
    pub placer_number: Option<String>,
    pub filler_number: Option<String>,
    pub accession_number: Option<String>,
    pub issuer_of_accession: Option<String>,
    pub study_uid: Option<String>,
    pub patient_ids: Vec<PatientId>,
    pub patient_class: Option<String>,
    pub priority: Option<String>,
    pub procedure: Option<String>,
    pub order_control: Option<String>,
    pub order_status: Option<String>,
}

/// An HL7 message as received, with the answer decided for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewHl7Message {
    pub received_at: Timestamp,
    /// The remote address it came from.
    pub peer: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub control_id: String,
    /// `ORU^R01`, or whatever MSH-9 said (empty when unreadable).
    pub message_type: String,
    pub version: String,
    /// The bytes as received (only the head of an oversized frame).
    pub raw: Vec<u8>,
    pub raw_truncated: bool,
    /// `AA`, `AE` or `AR`.
    pub ack_code: String,
    pub ack_reason: String,
    /// The sender's clock as MSH-7 shows it, recorded in the same
    /// transaction (not for a duplicate, whose MSH-7 is the first one's).
    pub clock: Option<super::ClockReading>,
}

/// What an accepted HL7 message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hl7Content {
    Reports(Vec<NewReport>),
    Orders(Vec<NewOrder>),
    /// Refused (AE/AR): kept for the record, nothing processed.
    Nothing,
}

/// The outcome of [`Store::record_hl7`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hl7Recorded {
    /// The row of this message, or of the earlier one it duplicates.
    pub message_id: i64,
    /// True when the key (MSH-3, MSH-4, MSH-10) was already accepted: nothing
    /// was processed again.
    pub duplicate: bool,
    pub ack_code: String,
    pub ack_reason: String,
    /// Reports recorded from it.
    pub report_ids: Vec<i64>,
    /// Links made while recording it (to its reports, or by its orders to
    /// reports that were waiting).
    pub links: Vec<Link>,
}

/// A link made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub report_id: i64,
    pub study_uid: String,
    pub rule: LinkRule,
    pub probable: bool,
}

/// A row of `reports`, with its links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub id: i64,
    pub origin: ReportOrigin,
    pub message_id: Option<i64>,
    pub sop_instance_uid: Option<String>,
    pub received_at: Timestamp,
    pub superseded_by: Option<i64>,
    pub status: ReportStatus,
    pub withdrawn: bool,
    pub reported_at: Option<Timestamp>,
    pub exam_at: Option<Timestamp>,
    pub author: Option<String>,
    pub accession_number: Option<String>,
    pub issuer_of_accession: Option<String>,
    pub study_uid: Option<String>,
    pub placer_number: Option<String>,
    pub filler_number: Option<String>,
    pub patient_ids: Vec<PatientId>,
    pub procedure: Option<String>,
    pub text: Option<String>,
    pub alert_category: Option<String>,
    pub recorded_by: Option<String>,
    /// Who on the referrer's side acknowledged the alert, and when.
    pub alert_acknowledged_by: Option<String>,
    pub alert_acknowledged_at: Option<Timestamp>,
    pub links: Vec<LinkRow>,
}

/// A row of `report_links`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRow {
    pub report_id: i64,
    pub study_uid: String,
    pub rule: LinkRule,
    pub probable: bool,
    /// `confirmed` or `rejected` once a person decided a probable link.
    pub confirmation: Option<String>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<Timestamp>,
    pub linked_at: Timestamp,
}

impl LinkRow {
    /// Whether this link lets its report count for the study.
    pub fn counts(&self) -> bool {
        match self.confirmation.as_deref() {
            Some("rejected") => false,
            Some("confirmed") => true,
            _ => !self.probable,
        }
    }
}

impl Store {
    /// Records one HL7 message and what it carries, in one transaction (a
    /// savepoint when called inside a group commit): the message row with the
    /// ACK decided for it, then its reports (superseding earlier ones of the
    /// same request, and linked) or its orders (re-linking reports that were
    /// waiting for them).
    ///
    /// A message whose key (MSH-3, MSH-4, MSH-10) was accepted before is not
    /// processed again: the result names the earlier row, with `duplicate`.
    pub fn record_hl7(
        &mut self,
        msg: &NewHl7Message,
        content: &Hl7Content,
    ) -> Result<Hl7Recorded, Error> {
        let policy = self.link_policy.clone();
        self.write(|conn| {
            if msg.ack_code == "AA" && !msg.control_id.is_empty() {
                let earlier: Option<i64> = cached_row(
                    conn,
                    // The conditions of the partial unique index, so that
                    // SQLite searches it instead of scanning every message.
                    "SELECT id FROM hl7_messages WHERE sending_application = ?1 \
                     AND sending_facility = ?2 AND control_id = ?3 AND ack_code = 'AA' \
                     AND control_id <> ''",
                    params![
                        msg.sending_application,
                        msg.sending_facility,
                        msg.control_id
                    ],
                    |r| r.get(0),
                )
                .optional()?;
                if let Some(id) = earlier {
                    return Ok(Hl7Recorded {
                        message_id: id,
                        duplicate: true,
                        ack_code: "AA".to_owned(),
                        ack_reason: format!("duplicate of message {id}, already processed"),
                        report_ids: Vec::new(),
                        links: Vec::new(),
                    });
                }
            }
            let at = fmt_ts(msg.received_at);
            cached_exec(
                conn,
                "INSERT INTO hl7_messages (received_at, peer, sending_application, \
                 sending_facility, control_id, message_type, version, raw, raw_truncated, \
                 ack_code, ack_reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    at,
                    msg.peer,
                    msg.sending_application,
                    msg.sending_facility,
                    msg.control_id,
                    msg.message_type,
                    msg.version,
                    msg.raw,
                    msg.raw_truncated,
                    msg.ack_code,
                    msg.ack_reason
                ],
            )?;
            let message_id = conn.last_insert_rowid();
            if let Some(reading) = &msg.clock {
                super::clock::record(conn, reading)?;
            }
            let mut out = Hl7Recorded {
                message_id,
                duplicate: false,
                ack_code: msg.ack_code.clone(),
                ack_reason: msg.ack_reason.clone(),
                report_ids: Vec::new(),
                links: Vec::new(),
            };
            match content {
                Hl7Content::Reports(reports) => {
                    for report in reports {
                        let (id, links) = insert_report(conn, report, Some(message_id), &policy)?;
                        out.report_ids.push(id);
                        out.links.extend(links);
                    }
                }
                Hl7Content::Orders(orders) => {
                    for order in orders {
                        out.links.extend(insert_order(
                            conn,
                            order,
                            message_id,
                            msg.received_at,
                            &policy,
                        )?);
                    }
                }
                Hl7Content::Nothing => {}
            }
            Ok(out)
        })
    }

    /// Records a report entered by a person or imported, and links it. Returns
    /// its id and the links made (none when its study has not arrived yet: it
    /// waits on the unmatched list and links when the images come).
    pub fn record_report(&mut self, report: &NewReport) -> Result<(i64, Vec<Link>), Error> {
        let policy = self.link_policy.clone();
        self.write(|conn| insert_report(conn, report, None, &policy))
    }

    /// Records several reports in one transaction (a CSV back-fill).
    pub fn record_reports(
        &mut self,
        reports: &[NewReport],
    ) -> Result<Vec<(i64, Vec<Link>)>, Error> {
        let policy = self.link_policy.clone();
        self.write(|conn| {
            reports
                .iter()
                .map(|r| insert_report(conn, r, None, &policy))
                .collect()
        })
    }

    /// Reports matching `condition` (which may end with ORDER BY / LIMIT),
    /// each with its links.
    fn reports_where<P: rusqlite::Params>(
        &self,
        condition: &str,
        params: P,
    ) -> Result<Vec<ReportRow>, Error> {
        let sql = format!("SELECT {REPORT_COLUMNS} FROM reports WHERE {condition}");
        let mut reports = collect(&self.conn, &sql, params, report_from_row)?;
        for r in &mut reports {
            r.links = links_of_report(&self.conn, r.id)?;
        }
        Ok(reports)
    }

    /// The most recently received reports, newest first, with their links.
    pub fn recent_reports(&self, limit: Option<usize>) -> Result<Vec<ReportRow>, Error> {
        self.reports_where("1 ORDER BY id DESC LIMIT ?1", [sql_limit(limit)])
    }

    /// One report with its links.
    pub fn report(&self, id: i64) -> Result<Option<ReportRow>, Error> {
        let sql = format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1");
        let Some(mut report) = self
            .conn
            .query_row(&sql, [id], report_from_row)
            .optional()?
        else {
            return Ok(None);
        };
        report.links = links_of_report(&self.conn, id)?;
        Ok(Some(report))
    }

    /// Reports linked to a study (counting or not), oldest first, with their links.
    pub fn reports_of_study(&self, study_uid: &str) -> Result<Vec<ReportRow>, Error> {
        self.reports_where(
            "id IN (SELECT report_id FROM report_links WHERE study_uid = ?1) ORDER BY id",
            [study_uid],
        )
    }

    /// Current reports that count for no study: linked to nothing, or only by
    /// probable links nobody has confirmed (those are listed with them).
    /// Oldest first.
    pub fn unmatched_reports(&self, limit: Option<usize>) -> Result<Vec<ReportRow>, Error> {
        self.reports_where(
            "linked = 0 AND superseded_by IS NULL ORDER BY received_at, id LIMIT ?1",
            [sql_limit(limit)],
        )
    }

    /// A person's decision on a probable link: confirmed, it counts as a link
    /// (and may make the study reported); rejected, it never counts.
    /// `Ok(false)` when there is no such probable link.
    pub fn decide_link(
        &mut self,
        report_id: i64,
        study_uid: &str,
        confirm: bool,
        by: &str,
        at: Timestamp,
    ) -> Result<bool, Error> {
        self.write(|conn| {
            let decision = if confirm { "confirmed" } else { "rejected" };
            let at_s = fmt_ts(at);
            let changed = cached_exec(
                conn,
                "UPDATE report_links SET confirmation = ?3, confirmed_by = ?4, confirmed_at = ?5 \
                 WHERE report_id = ?1 AND study_uid = ?2 AND probable = 1",
                params![report_id, study_uid, decision, by, at_s],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            if confirm {
                cached_exec(
                    conn,
                    "UPDATE reports SET linked = 1 WHERE id = ?1 AND linked = 0",
                    [report_id],
                )?;
            }
            insert_audit(
                conn,
                &at_s,
                by,
                if confirm {
                    "link_confirmed"
                } else {
                    "link_rejected"
                },
                Some(study_uid),
                &format!("probable link of report {report_id} {decision}"),
            )?;
            refresh_study(conn, study_uid, &at_s)?;
            Ok(true)
        })
    }
}

/// Inserts a report, supersedes earlier reports of its request, links it, and
/// audits it. Returns its id and the links made.
pub(super) fn insert_report(
    conn: &Connection,
    r: &NewReport,
    message_id: Option<i64>,
    policy: &LinkPolicy,
) -> Result<(i64, Vec<Link>), Error> {
    // A report naming no request cannot be linked; it is kept under its own key
    // so it stays on the unmatched list rather than superseding anything.
    let key = r.request_key();
    let at = fmt_ts(r.received_at);
    let patient_ids = serde_json::to_string(&r.patient_ids).unwrap_or_else(|_| "[]".to_owned());
    cached_exec(
        conn,
        "INSERT INTO reports (origin, message_id, sop_instance_uid, received_at, request_key, \
         status, withdrawn, reported_at, exam_at, author, accession_number, issuer_of_accession, \
         study_uid, placer_number, filler_number, patient_ids, procedure, text, alert_category, \
         recorded_by) VALUES (?1, ?2, ?3, ?4, coalesce(?5, ''), ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
         ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        params![
            r.origin.as_str(),
            message_id,
            r.sop_instance_uid,
            at,
            key,
            r.status.as_str(),
            r.withdrawn,
            r.reported_at.map(fmt_ts),
            r.exam_at.map(fmt_ts),
            non_blank(&r.author),
            non_blank(&r.accession_number),
            non_blank(&r.issuer_of_accession),
            r.study_uids.first(),
            non_blank(&r.placer_number),
            non_blank(&r.filler_number),
            patient_ids,
            non_blank(&r.procedure),
            r.text.as_deref().filter(|t| !t.trim().is_empty()),
            r.alert_category,
            non_blank(&r.recorded_by)
        ],
    )?;
    let id = conn.last_insert_rowid();
    for uid in &r.study_uids {
        cached_exec(
            conn,
            "INSERT OR IGNORE INTO report_study_uids (study_uid, report_id) VALUES (?1, ?2)",
            params![uid, id],
        )?;
    }
    if key.is_none() {
        cached_exec(
            conn,
            "UPDATE reports SET request_key = 'report:' || id WHERE id = ?1",
            [id],
        )?;
    }
    // The studies the superseded reports counted for must be looked at again.
    let mut affected: Vec<String> = Vec::new();
    if let Some(key) = &key {
        // Two indexed lookups: the request's current reports, then their links.
        let earlier: Vec<i64> = collect(
            conn,
            "SELECT id FROM reports WHERE request_key = ?1 AND superseded_by IS NULL",
            [key],
            |row| row.get(0),
        )?;
        for report in earlier.into_iter().filter(|r| *r != id) {
            affected.extend(collect(
                conn,
                "SELECT study_uid FROM report_links WHERE report_id = ?1",
                [report],
                |row| row.get::<_, String>(0),
            )?);
        }
        affected.sort_unstable();
        affected.dedup();
        cached_exec(
            conn,
            "UPDATE reports SET superseded_by = ?2 \
             WHERE request_key = ?1 AND superseded_by IS NULL AND id <> ?2",
            params![key, id],
        )?;
    }
    let actor = r.recorded_by.as_deref().unwrap_or(SYSTEM);
    let detail = format!(
        "report {id} ({origin}{msg}): {status}{withdrawn}{alert}, accession {acc}, study UID {uid}",
        origin = r.origin.as_str(),
        msg = message_id
            .map(|m| format!(", HL7 message {m}"))
            .unwrap_or_default(),
        status = r.status.as_str(),
        withdrawn = if r.withdrawn { " (withdrawn)" } else { "" },
        alert = r
            .alert_category
            .as_deref()
            .map(|c| format!(", alert {c}"))
            .unwrap_or_default(),
        acc = non_blank(&r.accession_number).unwrap_or("-"),
        uid = if r.study_uids.is_empty() {
            "-".to_owned()
        } else {
            r.study_uids.join(" ")
        },
    );
    insert_audit(conn, &at, actor, "report_received", None, &detail)?;
    let links = link_report(conn, id, policy, &at, actor)?;
    for study in affected {
        if !links.iter().any(|l| l.study_uid == study) {
            refresh_study(conn, &study, &at)?;
        }
    }
    Ok((id, links))
}

/// Inserts an order and links the reports that were waiting for it.
fn insert_order(
    conn: &Connection,
    o: &NewOrder,
    message_id: i64,
    received_at: Timestamp,
    policy: &LinkPolicy,
) -> Result<Vec<Link>, Error> {
    let at = fmt_ts(o.received_at.unwrap_or(received_at));
    let patient_ids = serde_json::to_string(&o.patient_ids).unwrap_or_else(|_| "[]".to_owned());
    cached_exec(
        conn,
        "INSERT INTO orders (message_id, received_at, placer_number, filler_number, \
         accession_number, issuer_of_accession, study_uid, patient_ids, patient_class, priority, \
         procedure, order_control, order_status) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            message_id,
            at,
            non_blank(&o.placer_number),
            non_blank(&o.filler_number),
            non_blank(&o.accession_number),
            non_blank(&o.issuer_of_accession),
            non_blank(&o.study_uid),
            patient_ids,
            non_blank(&o.patient_class),
            non_blank(&o.priority),
            non_blank(&o.procedure),
            non_blank(&o.order_control),
            non_blank(&o.order_status)
        ],
    )?;
    let waiting: Vec<i64> = collect(
        conn,
        "SELECT id FROM reports WHERE (placer_number = ?1 OR filler_number = ?2) ORDER BY id",
        params![non_blank(&o.placer_number), non_blank(&o.filler_number)],
        |r| r.get(0),
    )?;
    let mut links = Vec::new();
    for id in waiting {
        links.extend(link_report(conn, id, policy, &at, SYSTEM)?);
    }
    Ok(links)
}

/// Links the reports that may belong to a study just received for the first
/// time. Runs inside the transaction that records its first instance.
pub(super) fn link_new_study(
    conn: &Connection,
    study_uid: &str,
    accession: Option<&str>,
    patient_id: Option<&str>,
    policy: &LinkPolicy,
    at: &str,
) -> Result<(), Error> {
    let mut candidates: Vec<i64> = collect(
        conn,
        "SELECT report_id FROM report_study_uids WHERE study_uid = ?1 \
         UNION SELECT id FROM reports WHERE accession_number = ?2 \
         UNION SELECT r.id FROM orders o JOIN reports r \
             ON (r.placer_number = o.placer_number OR r.filler_number = o.filler_number) \
             WHERE o.study_uid = ?1 OR o.accession_number = ?2",
        params![study_uid, accession],
        |r| r.get(0),
    )?;
    if policy.probable {
        if let Some(pid) = patient_id {
            // Only reports that count for nothing yet are candidates for a guess.
            candidates.extend(collect(
                conn,
                "SELECT r.id FROM reports r WHERE r.superseded_by IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM report_links l WHERE l.report_id = r.id) \
                 AND EXISTS (SELECT 1 FROM json_each(r.patient_ids) p \
                             WHERE json_extract(p.value, '$.id') = ?1)",
                [pid],
                |r| r.get::<_, i64>(0),
            )?);
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    for id in candidates {
        link_report(conn, id, policy, at, SYSTEM)?;
    }
    Ok(())
}

/// The keys of a report that linking reads.
struct Keys {
    study_uids: Vec<String>,
    accession: Option<String>,
    issuer: Option<String>,
    placer: Option<String>,
    filler: Option<String>,
    patient_ids: Vec<PatientId>,
    when: Timestamp,
    has_links: bool,
}

/// A study a rule found: its UID and patient ID (with its issuer).
struct Candidate {
    study_uid: String,
    patient_id: Option<String>,
    study_date: Option<String>,
    patient_issuer: Option<String>,
}

fn candidate(r: &Row<'_>) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        study_uid: r.get(0)?,
        patient_id: r.get(1)?,
        study_date: r.get(2)?,
        patient_issuer: r.get(3)?,
    })
}

/// Whether one of a report's patient IDs names the study's patient: the
/// same ID, and the same issuer when both sides name one (an HL7 PID-3
/// assigning authority, a DICOM Issuer of Patient ID). A patient ID is
/// unique only within its issuer, so the same digits from another issuer
/// are another patient.
fn names_patient(ids: &[PatientId], id: &str, issuer: Option<&str>) -> bool {
    let issuer = issuer.map(str::trim).filter(|i| !i.is_empty());
    ids.iter().any(|p| {
        let authority = p
            .authority
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());
        p.id == id && (issuer.is_none() || authority.is_none() || authority == issuer)
    })
}

/// Applies the linking rules to one report and inserts the links it lacks;
/// refreshes the state of every study it newly links to.
fn link_report(
    conn: &Connection,
    report_id: i64,
    policy: &LinkPolicy,
    at: &str,
    actor: &str,
) -> Result<Vec<Link>, Error> {
    let keys = cached_row(
        conn,
        "SELECT (SELECT json_group_array(study_uid) FROM report_study_uids \
         WHERE report_id = reports.id), accession_number, issuer_of_accession, placer_number, \
         filler_number, patient_ids, coalesce(exam_at, reported_at, received_at), \
         EXISTS (SELECT 1 FROM report_links WHERE report_id = reports.id) \
         FROM reports WHERE id = ?1",
        [report_id],
        |r| {
            let ids: String = r.get(5)?;
            let uids: String = r.get(0)?;
            Ok(Keys {
                study_uids: serde_json::from_str(&uids).unwrap_or_default(),
                accession: r.get(1)?,
                issuer: r.get(2)?,
                placer: r.get(3)?,
                filler: r.get(4)?,
                patient_ids: serde_json::from_str(&ids).unwrap_or_default(),
                when: parse_ts(r, 6)?,
                has_links: r.get(7)?,
            })
        },
    )?;

    let mut found: Vec<(Candidate, LinkRule)> = Vec::new();
    for uid in &keys.study_uids {
        for c in collect(
            conn,
            "SELECT study_uid, patient_id, study_date, issuer_of_patient_id FROM studies \
             WHERE study_uid = ?1",
            [uid],
            candidate,
        )? {
            found.push((c, LinkRule::StudyUid));
        }
    }
    if let Some(acc) = &keys.accession {
        // The issuer is compared here: when either side has none, any matches.
        let issuer = keys.issuer.as_deref();
        for c in collect(
            conn,
            "SELECT study_uid, patient_id, study_date, issuer_of_patient_id, issuer_of_accession \
             FROM studies \
             WHERE accession_number = ?1",
            [acc],
            |r| Ok((candidate(r)?, r.get::<_, Option<String>>(4)?)),
        )? {
            let (c, study_issuer) = c;
            if issuer.is_none() || study_issuer.is_none() || study_issuer.as_deref() == issuer {
                found.push((c, LinkRule::Accession));
            }
        }
    }
    if keys.placer.is_some() || keys.filler.is_some() {
        let mut orders: Vec<(Option<String>, Option<String>)> = Vec::new();
        for (sql, number) in [
            (
                "SELECT study_uid, accession_number FROM orders WHERE placer_number = ?1",
                &keys.placer,
            ),
            (
                "SELECT study_uid, accession_number FROM orders WHERE filler_number = ?1",
                &keys.filler,
            ),
        ] {
            if let Some(number) = number {
                orders.extend(collect(conn, sql, [number], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?);
            }
        }
        orders.sort_unstable();
        orders.dedup();
        for (uid, accession) in orders {
            let mut studies = Vec::new();
            if let Some(uid) = &uid {
                studies.extend(collect(
                    conn,
                    "SELECT study_uid, patient_id, study_date, issuer_of_patient_id FROM studies \
             WHERE study_uid = ?1",
                    [uid],
                    candidate,
                )?);
            }
            if let Some(acc) = &accession {
                studies.extend(collect(
                    conn,
                    "SELECT study_uid, patient_id, study_date, issuer_of_patient_id FROM studies \
                     WHERE accession_number = ?1",
                    [acc],
                    candidate,
                )?);
            }
            for c in studies {
                found.push((c, LinkRule::Order));
            }
        }
    }

    let mut links = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (c, rule) in &found {
        if seen.contains(&c.study_uid) {
            continue;
        }
        seen.push(c.study_uid.clone());
        if let Some(pid) = c.patient_id.as_deref() {
            if !keys.patient_ids.is_empty()
                && !names_patient(&keys.patient_ids, pid, c.patient_issuer.as_deref())
            {
                audit_refusal(conn, report_id, &c.study_uid, *rule, at)?;
                continue;
            }
        }
        // An accession or order number reused later (next year, another
        // trust) must not close the new study with the old report.
        if matches!(rule, LinkRule::Accession | LinkRule::Order)
            && report_predates(c.study_date.as_deref(), keys.when, policy)
        {
            let detail = format!(
                "report {report_id} matches by {} but is dated {}, more than {} before \
                 the study: the number was reused; not linked",
                rule.as_str(),
                keys.when,
                crate::config::format_duration(policy.report_before_study)
            );
            audit_refused_link(conn, report_id, &c.study_uid, *rule, &detail, at)?;
            continue;
        }
        if let Some(link) = insert_link(conn, report_id, &c.study_uid, *rule, false, at, actor)? {
            links.push(link);
        }
    }

    if policy.probable && seen.is_empty() && !keys.has_links && !keys.patient_ids.is_empty() {
        let mut ids: Vec<&str> = keys.patient_ids.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            for c in collect(
                conn,
                "SELECT study_uid, patient_id, study_date, issuer_of_patient_id FROM studies \
                 WHERE patient_id = ?1",
                [id],
                candidate,
            )? {
                if within_window(c.study_date.as_deref(), keys.when, policy)
                    && names_patient(&keys.patient_ids, id, c.patient_issuer.as_deref())
                    && !links.iter().any(|l: &Link| l.study_uid == c.study_uid)
                {
                    if let Some(link) = insert_link(
                        conn,
                        report_id,
                        &c.study_uid,
                        LinkRule::PatientDate,
                        true,
                        at,
                        actor,
                    )? {
                        links.push(link);
                    }
                }
            }
        }
    }
    Ok(links)
}

/// Whether a report dated `when` is more than the policy's
/// `report_before_study` older than the study's date (YYYYMMDD,
/// site-local). A study without a readable date is never judged so.
fn report_predates(study_date: Option<&str>, when: Timestamp, policy: &LinkPolicy) -> bool {
    let Some(date) = study_date.and_then(|d| jiff::civil::Date::strptime("%Y%m%d", d.trim()).ok())
    else {
        return false;
    };
    let report = when.to_zoned(policy.timezone.clone()).date();
    let Ok(span) = report.until(date) else {
        return false;
    };
    let days = (policy.report_before_study.as_secs() / 86_400).max(1);
    span.get_days() > 0 && span.get_days().unsigned_abs() as u64 > days
}

/// Whether a DICOM study date (YYYYMMDD, site-local) lies within the policy's
/// window of `when`. A study without a date never matches a guess.
fn within_window(study_date: Option<&str>, when: Timestamp, policy: &LinkPolicy) -> bool {
    let Some(date) = study_date.and_then(|d| jiff::civil::Date::strptime("%Y%m%d", d.trim()).ok())
    else {
        return false;
    };
    let local = when.to_zoned(policy.timezone.clone()).date();
    let days = (policy.probable_window.as_secs() / 86_400).max(1);
    let Ok(span) = date.until(local) else {
        return false;
    };
    span.get_days().unsigned_abs() as u64 <= days
}

fn insert_link(
    conn: &Connection,
    report_id: i64,
    study_uid: &str,
    rule: LinkRule,
    probable: bool,
    at: &str,
    actor: &str,
) -> Result<Option<Link>, Error> {
    let inserted = cached_exec(
        conn,
        "INSERT OR IGNORE INTO report_links (report_id, study_uid, rule, probable, linked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![report_id, study_uid, rule.as_str(), probable, at],
    )?;
    if inserted == 0 {
        return Ok(None);
    }
    if !probable {
        cached_exec(
            conn,
            "UPDATE reports SET linked = 1 WHERE id = ?1 AND linked = 0",
            [report_id],
        )?;
    }
    let detail = if probable {
        format!(
            "report {report_id} probably belongs here (patient ID and date): a person must confirm"
        )
    } else {
        format!("report {report_id} linked by {}", rule.as_str())
    };
    insert_audit(
        conn,
        at,
        actor,
        if probable {
            "report_probable_link"
        } else {
            "report_linked"
        },
        Some(study_uid),
        &detail,
    )?;
    refresh_study(conn, study_uid, at)?;
    Ok(Some(Link {
        report_id,
        study_uid: study_uid.to_owned(),
        rule,
        probable,
    }))
}

fn audit_refusal(
    conn: &Connection,
    report_id: i64,
    study_uid: &str,
    rule: LinkRule,
    at: &str,
) -> Result<(), Error> {
    let detail = format!(
        "report {report_id} matches by {} but its patient IDs differ from the study's: not linked",
        rule.as_str()
    );
    audit_refused_link(conn, report_id, study_uid, rule, &detail, at)
}

/// Audits a link a rule found but that was refused, once per report,
/// study and reason: re-linking must not flood the audit log.
fn audit_refused_link(
    conn: &Connection,
    report_id: i64,
    study_uid: &str,
    rule: LinkRule,
    detail: &str,
    at: &str,
) -> Result<(), Error> {
    let already: bool = cached_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM audit WHERE study_uid = ?1 AND action = 'report_link_refused' \
         AND detail = ?2)",
        params![study_uid, detail],
        |r| r.get(0),
    )?;
    if !already {
        tracing::warn!(
            report_id,
            study_uid,
            rule = rule.as_str(),
            reason = detail,
            "report not linked"
        );
        insert_audit(
            conn,
            at,
            SYSTEM,
            "report_link_refused",
            Some(study_uid),
            detail,
        )?;
    }
    Ok(())
}

/// Recomputes a study's `reported_at` and `report_status` from its links, and
/// audits the change when it becomes reported or is reopened.
pub(super) fn refresh_study(conn: &Connection, study_uid: &str, at: &str) -> Result<(), Error> {
    // Requests (by key) whose current report is formal and not withdrawn, and
    // that some counting link ties to this study.
    let reported_at: Option<String> = cached_row(
        conn,
        "SELECT min(coalesce(r.reported_at, r.received_at)) FROM reports r \
         WHERE r.status IN ('final', 'corrected') AND r.withdrawn = 0 \
         AND r.request_key IN ( \
             SELECT c.request_key FROM reports c JOIN report_links l ON l.report_id = c.id \
             WHERE l.study_uid = ?1 AND c.superseded_by IS NULL \
             AND c.status IN ('final', 'corrected') AND c.withdrawn = 0 \
             AND (l.confirmation = 'confirmed' OR (l.probable = 0 AND l.confirmation IS NULL)))",
        [study_uid],
        |r| r.get(0),
    )?;
    // What the latest current report linked here says (withdrawn wins over
    // its status: the report is void).
    let status: Option<String> = cached_row(
        conn,
        "SELECT CASE WHEN c.withdrawn = 1 THEN 'withdrawn' ELSE c.status END \
         FROM reports c JOIN report_links l ON l.report_id = c.id \
         WHERE l.study_uid = ?1 AND c.superseded_by IS NULL \
         AND coalesce(l.confirmation, '') <> 'rejected' \
         ORDER BY c.id DESC LIMIT 1",
        [study_uid],
        |r| r.get(0),
    )
    .optional()?;
    let (was_reported, was_status): (Option<String>, Option<String>) = cached_row(
        conn,
        "SELECT reported_at, report_status FROM studies WHERE study_uid = ?1",
        [study_uid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if was_reported == reported_at && was_status == status {
        return Ok(());
    }
    cached_exec(
        conn,
        "UPDATE studies SET reported_at = ?2, report_status = ?3 WHERE study_uid = ?1",
        params![study_uid, reported_at, status],
    )?;
    match (&was_reported, &reported_at) {
        (None, Some(t)) => insert_audit(
            conn,
            at,
            SYSTEM,
            "study_reported",
            Some(study_uid),
            &format!("formally reported at {t}"),
        )?,
        (Some(_), None) => insert_audit(
            conn,
            at,
            SYSTEM,
            "study_reopened",
            Some(study_uid),
            &format!(
                "no formal report counts any more (latest report: {})",
                status.as_deref().unwrap_or("none")
            ),
        )?,
        _ => 0,
    };
    if status.as_deref() == Some("cancelled") && was_status.as_deref() != Some("cancelled") {
        insert_audit(
            conn,
            at,
            SYSTEM,
            "order_cancelled",
            Some(study_uid),
            "the RIS cancelled the order of a study that has images: a person must decide",
        )?;
    }
    Ok(())
}

fn links_of_report(conn: &Connection, report_id: i64) -> Result<Vec<LinkRow>, Error> {
    collect(
        conn,
        "SELECT report_id, study_uid, rule, probable, confirmation, confirmed_by, confirmed_at, \
         linked_at FROM report_links WHERE report_id = ?1 ORDER BY linked_at, study_uid",
        [report_id],
        |r| {
            let rule: String = r.get(2)?;
            Ok(LinkRow {
                report_id: r.get(0)?,
                study_uid: r.get(1)?,
                rule: LinkRule::parse(&rule).ok_or_else(|| bad_text(2, &rule))?,
                probable: r.get(3)?,
                confirmation: r.get(4)?,
                confirmed_by: r.get(5)?,
                confirmed_at: parse_opt_ts(r, 6)?,
                linked_at: parse_ts(r, 7)?,
            })
        },
    )
}

const REPORT_COLUMNS: &str = "id, origin, message_id, sop_instance_uid, received_at, \
    superseded_by, status, withdrawn, reported_at, exam_at, author, accession_number, \
    issuer_of_accession, study_uid, placer_number, filler_number, patient_ids, procedure, text, \
    alert_category, recorded_by, alert_acknowledged_by, alert_acknowledged_at";

fn report_from_row(r: &Row<'_>) -> rusqlite::Result<ReportRow> {
    let origin: String = r.get(1)?;
    let status: String = r.get(6)?;
    let ids: String = r.get(16)?;
    Ok(ReportRow {
        id: r.get(0)?,
        origin: ReportOrigin::parse(&origin).ok_or_else(|| bad_text(1, &origin))?,
        message_id: r.get(2)?,
        sop_instance_uid: r.get(3)?,
        received_at: parse_ts(r, 4)?,
        superseded_by: r.get(5)?,
        status: ReportStatus::parse(&status).ok_or_else(|| bad_text(6, &status))?,
        withdrawn: r.get(7)?,
        reported_at: parse_opt_ts(r, 8)?,
        exam_at: parse_opt_ts(r, 9)?,
        author: r.get(10)?,
        accession_number: r.get(11)?,
        issuer_of_accession: r.get(12)?,
        study_uid: r.get(13)?,
        placer_number: r.get(14)?,
        filler_number: r.get(15)?,
        patient_ids: serde_json::from_str(&ids).unwrap_or_default(),
        procedure: r.get(17)?,
        text: r.get(18)?,
        alert_category: r.get(19)?,
        recorded_by: r.get(20)?,
        alert_acknowledged_by: r.get(21)?,
        alert_acknowledged_at: parse_opt_ts(r, 22)?,
        links: Vec::new(),
    })
}

fn bad_text(idx: usize, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        format!("unexpected value {value:?}").into(),
    )
}

fn non_blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
