//! Reports in: the HL7 v2 MLLP listener, and the turning of a parsed HL7
//! message into what the catalog records.
//!
//! The order of one message is fixed: frame → parse → decide the ACK code →
//! commit the raw message, its reports or orders and their links in one
//! (group-committed) transaction → send the ACK. An ACK is therefore never
//! sent for a message that is not durably in the catalog; if the commit
//! fails, no ACK is sent and the connection is closed, so the RIS resends.
//!
//! Parsing and ACK building live in [`crate::hl7`]; linking lives in the
//! catalog. DICOM reports (SR, PDF) come in through ingest
//! ([`crate::ingest::sr`]); manual entries through the CLI and HTTP.

pub mod manual;
mod server;

pub use server::{Intake, run};

use jiff::Timestamp;

use crate::catalog::{Hl7Content, NewOrder, NewReport, PatientId, ReportOrigin, ReportStatus};
use crate::hl7::{AlertRules, Kind, Parsed, Request, ResultStatus};
use crate::uid::Uid;

/// What an accepted message carries, ready for the catalog, plus the
/// problems worth a log line (never patient data).
pub fn content(
    parsed: &Parsed,
    received_at: Timestamp,
    alerts: &AlertRules,
) -> (Hl7Content, Vec<String>) {
    let mut warnings = parsed.warnings.clone();
    let patient_ids: Vec<PatientId> = parsed
        .patient_ids
        .iter()
        .filter(|p| !p.id.trim().is_empty())
        .map(|p| PatientId {
            id: p.id.trim().to_owned(),
            authority: p.assigning_authority.clone(),
            kind: p.type_code.clone(),
        })
        .collect();
    let mut study_uid = |r: &Request| -> Option<String> {
        let raw = r.study_uid.as_deref()?;
        match Uid::parse(raw) {
            Ok(uid) => Some(uid.to_string()),
            Err(e) => {
                warnings.push(format!("study UID ignored: {e}"));
                None
            }
        }
    };
    match parsed.kind {
        Kind::Order => {
            let orders = parsed
                .requests
                .iter()
                .map(|r| NewOrder {
                    received_at: Some(received_at),
                    placer_number: r.placer.clone(),
                    filler_number: r.filler.clone(),
                    accession_number: r.accession.clone(),
                    issuer_of_accession: r.accession_issuer.clone(),
                    study_uid: study_uid(r),
                    patient_ids: patient_ids.clone(),
                    patient_class: parsed.patient_class.clone(),
                    priority: r.priority.clone(),
                    procedure: r.procedure.clone(),
                    order_control: r.order_control.clone(),
                    order_status: r.order_status.clone(),
                })
                .collect();
            (Hl7Content::Orders(orders), warnings)
        }
        Kind::Report => {
            let reports = parsed
                .requests
                .iter()
                .map(|r| {
                    let text = r.text.trim();
                    NewReport {
                        origin: ReportOrigin::Hl7,
                        received_at,
                        status: status(r.result_status.as_ref()),
                        withdrawn: r.withdrawn,
                        reported_at: r.report_time,
                        exam_at: r.exam_time,
                        author: r.author.clone(),
                        accession_number: r.accession.clone(),
                        issuer_of_accession: r.accession_issuer.clone(),
                        study_uids: study_uid(r).into_iter().collect(),
                        placer_number: r.placer.clone(),
                        filler_number: r.filler.clone(),
                        patient_ids: patient_ids.clone(),
                        procedure: r.procedure.clone(),
                        text: (!text.is_empty()).then(|| text.to_owned()),
                        alert_category: alerts
                            .classify(&r.abnormal_flags, &r.text)
                            .map(|c| c.as_str().to_owned()),
                        sop_instance_uid: None,
                        recorded_by: None,
                    }
                })
                .collect();
            (Hl7Content::Reports(reports), warnings)
        }
    }
}

/// OBR-25 as a catalog status. Any status other than P/F/C/X (in progress,
/// scheduled, results stored unverified, ...) is kept as preliminary: shown,
/// never counted as a formal report.
fn status(s: Option<&ResultStatus>) -> ReportStatus {
    match s {
        Some(ResultStatus::Final) => ReportStatus::Final,
        Some(ResultStatus::Corrected) => ReportStatus::Corrected,
        Some(ResultStatus::Cancelled) => ReportStatus::Cancelled,
        Some(ResultStatus::Preliminary | ResultStatus::Other(_)) | None => {
            ReportStatus::Preliminary
        }
    }
}
