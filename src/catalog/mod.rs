//! The catalog: the single source of truth for what studywatch has received,
//! kept in SQLite (WAL).
//!
//! This is the only module that writes SQL. Everything else sees plain row
//! structs ([`StudyRow`], [`InstanceRow`], ...) that are deliberately not
//! `Serialize`: the shapes printed by the CLI's `--json` and by the HTTP API live
//! in [`crate::json`], built from these rows.
//!
//! Two ways in:
//! - [`Store`] is a synchronous wrapper around one SQLite connection. The CLI uses
//!   it directly; it works with the server down, and beside a running server
//!   thanks to WAL.
//! - [`Catalog`] is the server's cloneable async handle. It owns one dedicated
//!   thread holding a [`Store`], so SQLite never runs on a tokio worker, and it
//!   group-commits concurrent [`Catalog::record_instance`] calls: one transaction
//!   and one WAL fsync for a whole batch of received instances.
//!
//! Times are stored as RFC 3339 UTC text with exactly six fractional digits
//! (`2026-11-22T10:15:00.000000Z`), so that text order is time order and the
//! database stays readable with the `sqlite3` shell. Stored times therefore have
//! microsecond precision.
//!
//! What this module never does: touch the network, read DICOM, or decide a
//! deadline. It stores what it is told and answers questions about it.

mod alarms;
mod clock;
mod commit;
mod coverage;
pub mod dashboard;
mod figures;
mod forward;
mod handle;
pub mod orders;
mod readers;
mod reports;
mod retention;
mod schema;
mod stability;
mod store;
mod syncer;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_reports;
pub mod views;

use jiff::Timestamp;

pub use alarms::{
    AlarmFilter, AlarmRow, AlarmUpdate, DeadlineUpdate, NewAlarm, NewNotification, OutboxRow,
    StudyForRules,
};
pub use clock::{ClockReading, ClockRow};
pub use commit::{CommitAnswer, CommitBatch, DueReport, PeerRequest, UncommittedRow};
pub use coverage::CoverageRow;
pub use figures::{AGE_BUCKETS, Figures};
pub use forward::{ForwardItem, ForwardOutcome, ForwardStatusRow};
pub use handle::Catalog;
pub use readers::Readers;
pub use reports::{
    Hl7Content, Hl7Recorded, Link, LinkPolicy, LinkRow, LinkRule, NewHl7Message, NewOrder,
    NewReport, PatientId, ReportOrigin, ReportRow, ReportStatus,
};
pub use retention::{Prunable, PruneCursor};
pub use schema::SCHEMA_VERSION;
pub use stability::{Completeness, Settling, ToCheck};
pub use store::Store;

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer studywatch; refusing it protects that
    /// newer schema from being misread or damaged by this binary.
    #[error(
        "catalog schema version {found} is newer than this studywatch supports ({supported}); \
         upgrade studywatch or point it at another database"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// A migration step would have left rows whose foreign key points at
    /// nothing; the step was rolled back and the catalog is as it was.
    #[error(
        "catalog migration to version {version} would leave {problems} row(s) \
         with a dangling foreign key; nothing was changed"
    )]
    MigrationBroken { version: i64, problems: i64 },
    /// An instance with this SOP Instance UID is already catalogued.
    #[error("SOP instance {0} is already in the catalog")]
    DuplicateInstance(String),
    /// The series is already catalogued under another study: the sender reused a
    /// Series Instance UID, and accepting the instance would corrupt both studies.
    #[error("series {series_uid} belongs to study {existing_study_uid}, not {study_uid}")]
    SeriesInOtherStudy {
        series_uid: String,
        existing_study_uid: String,
        study_uid: String,
    },
    /// The group commit holding this request failed as a whole (for example the
    /// disk filled up at COMMIT); nothing of the batch was stored. The cause is
    /// shared by every request of the batch.
    #[error("catalog group commit failed: {0}")]
    GroupCommit(std::sync::Arc<Error>),
    /// The catalog thread has stopped (shut down, or died), so the request was
    /// not carried out.
    #[error("the catalog thread has stopped")]
    ThreadGone,
    /// The transaction a grouped call shared was rolled back by SQLite (or
    /// by a panicking call in the same group) before it could commit.
    #[error("the shared catalog transaction was rolled back before it committed")]
    GroupAborted,
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Where a study stands with respect to its formal report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StudyState {
    /// No report linked yet and the deadline (if any) has not passed.
    Unreported,
    /// No report linked and the deadline has passed.
    Overdue,
    /// A qualifying report is linked.
    Reported,
    /// A watchdog rule says this study needs no report.
    NoReportNeeded,
}

impl StudyState {
    /// The name used in JSON, the HTTP API's `?state=` and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            StudyState::Unreported => "unreported",
            StudyState::Overdue => "overdue",
            StudyState::Reported => "reported",
            StudyState::NoReportNeeded => "no_report_needed",
        }
    }

    /// The inverse of [`StudyState::as_str`].
    pub fn parse(s: &str) -> Option<StudyState> {
        match s {
            "unreported" => Some(StudyState::Unreported),
            "overdue" => Some(StudyState::Overdue),
            "reported" => Some(StudyState::Reported),
            "no_report_needed" => Some(StudyState::NoReportNeeded),
            _ => None,
        }
    }
}

impl std::fmt::Display for StudyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which studies [`Store::studies`] returns.
#[derive(Clone, Debug, Default)]
pub struct StudyFilter {
    /// `Unreported` selects every study without a report, overdue ones included
    /// (overdue is the loud kind of unreported); `Overdue` only those past their
    /// deadline; `Reported` those with a report. `None`: all studies.
    pub state: Option<StudyState>,
    /// At most this many studies.
    pub limit: Option<usize>,
}

/// One received instance, as ingest hands it to the catalog after the file is
/// durably stored. Optional attributes that are empty count as absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInstance {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub patient_id: Option<String>,
    /// Issuer of Patient ID (0010,0021): the namespace the patient ID is
    /// unique in, compared with an HL7 PID-3 assigning authority.
    pub issuer_of_patient_id: Option<String>,
    pub accession_number: Option<String>,
    pub issuer_of_accession: Option<String>,
    pub modality: Option<String>,
    /// DICOM DA as received (`YYYYMMDD`), local to the site.
    pub study_date: Option<String>,
    /// DICOM TM as received (`HHMMSS.FFFFFF`), local to the site.
    pub study_time: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician: Option<String>,
    pub institution_name: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub size_bytes: u64,
    /// SHA-256 of the stored file, 64 lowercase hex digits.
    pub sha256: String,
    /// Path of the stored file, relative to the storage root.
    pub rel_path: String,
    pub received_at: Timestamp,
    pub calling_ae: String,
    /// The configured label of the peer that sent it.
    pub source: String,
    /// The report this instance is (a verified SR document, an encapsulated
    /// PDF report), recorded and linked in the same transaction.
    pub report: Option<Box<NewReport>>,
    /// DICOM attributes watchdog rules match on (keyword, value as text);
    /// the first non-empty value per study is kept.
    pub attributes: Vec<(String, String)>,
    /// The forward destinations that take this instance (decided by the
    /// caller from the configuration); each gets a queue row in the same
    /// transaction as the instance.
    pub forward_to: Vec<String>,
    /// The sender's clock as this instance shows it (its Instance Creation
    /// or Acquisition time), recorded in the same transaction; `None` when
    /// it carries no such time or the check is off.
    pub clock: Option<ClockReading>,
}

/// A rejected C-STORE (or other ingest failure), kept so nothing is lost silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFailure {
    pub at: Timestamp,
    pub calling_ae: String,
    pub source: String,
    pub sop_class_uid: Option<String>,
    /// As received: may be an invalid UID; it is only ever stored as text.
    pub sop_instance_uid: Option<String>,
    pub study_uid: Option<String>,
    /// The DIMSE status we answered.
    pub status: u16,
    pub reason: String,
}

/// An instance resent under a known SOP Instance UID with different content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConflict {
    pub at: Timestamp,
    pub sop_instance_uid: String,
    pub study_uid: Option<String>,
    pub calling_ae: String,
    pub existing_sha256: String,
    pub new_sha256: String,
    /// Where the new content was kept aside.
    pub quarantine_path: String,
}

/// A row of `studies`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudyRow {
    pub study_uid: String,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    pub accession_number: Option<String>,
    pub issuer_of_accession: Option<String>,
    /// Distinct modalities of the study's instances, sorted.
    pub modalities: Vec<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician: Option<String>,
    pub institution_name: Option<String>,
    /// Peer label and calling AE of the first instance received.
    pub source: String,
    pub calling_ae: String,
    pub first_received_at: Timestamp,
    pub last_received_at: Timestamp,
    pub series_count: u64,
    pub instance_count: u64,
    pub reported_at: Option<Timestamp>,
    pub deadline: Option<Timestamp>,
    /// What the latest report linked to the study says: `preliminary`,
    /// `final`, `corrected`, `cancelled` or `withdrawn`; `None` without one.
    pub report_status: Option<String>,
    /// The watchdog rule that set the deadline (`None`: none matched, or not
    /// evaluated yet).
    pub rule: Option<String>,
    /// Its rule says the study needs no report.
    pub no_report_needed: bool,
}

impl StudyRow {
    /// The study's state as of `now`.
    pub fn state(&self, now: Timestamp) -> StudyState {
        if self.reported_at.is_some() {
            StudyState::Reported
        } else if self.no_report_needed {
            StudyState::NoReportNeeded
        } else if self.deadline.is_some_and(|d| d < now) {
            StudyState::Overdue
        } else {
            StudyState::Unreported
        }
    }
}

/// A row of `series`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesRow {
    pub series_uid: String,
    pub study_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub instance_count: u64,
    pub first_received_at: Timestamp,
    pub last_received_at: Timestamp,
}

/// A row of `instances`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRow {
    pub sop_instance_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub rel_path: String,
    pub received_at: Timestamp,
    pub calling_ae: String,
    /// When the local file was pruned (every destination had it); the row
    /// and its hash stay.
    pub pruned_at: Option<Timestamp>,
}

/// A row of `ingest_failures`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureRow {
    pub id: i64,
    pub at: Timestamp,
    pub calling_ae: String,
    pub source: String,
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub study_uid: Option<String>,
    pub status: u16,
    pub reason: String,
}

/// A row of `integrity_conflicts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictRow {
    pub id: i64,
    pub at: Timestamp,
    pub sop_instance_uid: String,
    pub study_uid: Option<String>,
    pub calling_ae: String,
    pub existing_sha256: String,
    pub new_sha256: String,
    pub quarantine_path: String,
}

/// A row of the append-only `audit` log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: Timestamp,
    /// `system` or the person who acted.
    pub actor: String,
    pub action: String,
    pub study_uid: Option<String>,
    pub detail: String,
}

/// Everything the catalog knows about one study.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudyDetail {
    pub study: StudyRow,
    pub series: Vec<SeriesRow>,
    pub instances: Vec<InstanceRow>,
    pub failures: Vec<FailureRow>,
    pub conflicts: Vec<ConflictRow>,
    pub audit: Vec<AuditRow>,
    /// Reports linked to the study, oldest first, with their links.
    pub reports: Vec<ReportRow>,
    /// Stability and completeness.
    pub transfer: TransferRow,
    /// Each instance's delivery to each destination that takes it.
    pub delivery: Vec<DeliveryRow>,
}

/// Whether a study has settled, and whether its sender says it is whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferRow {
    pub stable_at: Option<Timestamp>,
    /// `checking | complete | incomplete | unknown`, or None (not checked:
    /// the sender is not configured for query/retrieve).
    pub completeness: Option<String>,
    pub expected_instances: Option<u64>,
    pub completeness_at: Option<Timestamp>,
    pub completeness_detail: Option<String>,
}

/// One instance's row in the forward queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    pub sop_instance_uid: String,
    pub destination: String,
    /// `pending | sent | failed`.
    pub state: String,
    pub attempts: u64,
    pub sent_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// `awaiting | requested | committed | failed`, or None when the
    /// destination does not do storage commitment.
    pub commit_state: Option<String>,
    pub committed_at: Option<Timestamp>,
    pub commit_failure: Option<String>,
}

/// Row counts, for `stats`, `/metrics` and readiness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub studies: u64,
    pub instances: u64,
    pub failures: u64,
    pub conflicts: u64,
}
