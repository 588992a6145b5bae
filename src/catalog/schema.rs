//! The catalog's schema, as an ordered list of migrations keyed on
//! `PRAGMA user_version`.
//!
//! Migration `i` (0-based) takes a database from version `i` to `i + 1`. Steps
//! are only ever appended: a released step is never edited, because databases in
//! the field have already applied it.

use rusqlite::{Connection, TransactionBehavior};

use super::Error;

/// The migration steps, oldest first.
const MIGRATIONS: &[&str] = &[V1];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Version 1: what was received, what failed, and the audit log.
///
/// Tables are STRICT so that a wrong type is an error, not a silently coerced
/// value. Times are RFC 3339 UTC text with six fractional digits (sortable).
const V1: &str = r#"
CREATE TABLE studies (
    study_uid           TEXT PRIMARY KEY NOT NULL,
    patient_id          TEXT,
    accession_number    TEXT,
    issuer_of_accession TEXT,
    modalities          TEXT NOT NULL DEFAULT '',
    study_date          TEXT,
    study_time          TEXT,
    study_description   TEXT,
    referring_physician TEXT,
    institution_name    TEXT,
    source              TEXT NOT NULL,
    calling_ae          TEXT NOT NULL,
    first_received_at   TEXT NOT NULL,
    last_received_at    TEXT NOT NULL,
    series_count        INTEGER NOT NULL DEFAULT 0 CHECK (series_count >= 0),
    instance_count      INTEGER NOT NULL DEFAULT 0 CHECK (instance_count >= 0),
    reported_at         TEXT,
    deadline            TEXT
) STRICT;
CREATE INDEX studies_by_last_received ON studies (last_received_at);
CREATE INDEX studies_by_deadline ON studies (deadline, first_received_at);
CREATE INDEX studies_by_accession ON studies (accession_number);

CREATE TABLE series (
    series_uid          TEXT PRIMARY KEY NOT NULL,
    study_uid           TEXT NOT NULL REFERENCES studies (study_uid),
    modality            TEXT,
    series_number       INTEGER,
    series_description  TEXT,
    instance_count      INTEGER NOT NULL DEFAULT 0 CHECK (instance_count >= 0),
    first_received_at   TEXT NOT NULL,
    last_received_at    TEXT NOT NULL
) STRICT;
CREATE INDEX series_by_study ON series (study_uid);

CREATE TABLE instances (
    sop_instance_uid    TEXT PRIMARY KEY NOT NULL,
    series_uid          TEXT NOT NULL REFERENCES series (series_uid),
    study_uid           TEXT NOT NULL REFERENCES studies (study_uid),
    sop_class_uid       TEXT NOT NULL,
    transfer_syntax     TEXT NOT NULL,
    size_bytes          INTEGER NOT NULL CHECK (size_bytes >= 0),
    sha256              TEXT NOT NULL
                        CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    rel_path            TEXT NOT NULL,
    received_at         TEXT NOT NULL,
    calling_ae          TEXT NOT NULL
) STRICT;
CREATE INDEX instances_by_study ON instances (study_uid, series_uid);
CREATE INDEX instances_by_series ON instances (series_uid);

CREATE TABLE ingest_failures (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    at                  TEXT NOT NULL,
    calling_ae          TEXT NOT NULL,
    source              TEXT NOT NULL,
    sop_class_uid       TEXT,
    sop_instance_uid    TEXT,
    study_uid           TEXT,
    status              INTEGER NOT NULL CHECK (status BETWEEN 0 AND 65535),
    reason              TEXT NOT NULL
) STRICT;
CREATE INDEX ingest_failures_by_at ON ingest_failures (at);
CREATE INDEX ingest_failures_by_study ON ingest_failures (study_uid);

CREATE TABLE integrity_conflicts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    at                  TEXT NOT NULL,
    sop_instance_uid    TEXT NOT NULL,
    study_uid           TEXT,
    calling_ae          TEXT NOT NULL,
    existing_sha256     TEXT NOT NULL,
    new_sha256          TEXT NOT NULL,
    quarantine_path     TEXT NOT NULL
) STRICT;
CREATE INDEX integrity_conflicts_by_study ON integrity_conflicts (study_uid);
CREATE INDEX integrity_conflicts_by_instance ON integrity_conflicts (sop_instance_uid);

-- The audit log is append-only: governance relies on it not changing after the fact.
CREATE TABLE audit (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    at                  TEXT NOT NULL,
    actor               TEXT NOT NULL,
    action              TEXT NOT NULL,
    study_uid           TEXT,
    detail              TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_study ON audit (study_uid, id);
CREATE INDEX audit_by_at ON audit (at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;
"#;

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per step, or
/// refuses it if it is newer than this binary.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), Error> {
    loop {
        // IMMEDIATE takes the write lock before reading the version, so a CLI and
        // a server opening a fresh database at once cannot both apply a step.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        // A negative version was never written by studywatch: treat it like one
        // from the future rather than overwrite whatever wrote it.
        if !(0..=SCHEMA_VERSION).contains(&found) {
            return Err(Error::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let Some(step) = usize::try_from(found).ok().and_then(|i| MIGRATIONS.get(i)) else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
        tracing::info!(version = found + 1, "catalog schema migrated");
    }
}
