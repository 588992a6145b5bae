//! The catalog's schema, as an ordered list of migrations keyed on
//! `PRAGMA user_version`.
//!
//! Migration `i` (0-based) takes a database from version `i` to `i + 1`. Steps
//! are only ever appended: a released step is never edited, because databases in
//! the field have already applied it.

use rusqlite::{Connection, TransactionBehavior};

use super::Error;

/// The migration steps, oldest first.
const MIGRATIONS: &[&str] = &[
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    CLOCK_OBSERVATIONS,
    ISSUER_OF_PATIENT_ID,
    ORDERS_AWAITING_IMAGES,
];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Version 1: what was received, what failed, and the audit log.
///
/// Tables are STRICT so that a wrong type is an error, not a silently coerced
/// value. Times are RFC 3339 UTC text with six fractional digits (sortable).
pub(super) const V1: &str = r#"
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

/// Version 2: reports and orders, the HL7 messages they came in, and the links
/// between reports and studies.
///
/// Every HL7 message is kept (raw bytes as received, with the ACK we answered)
/// before it is acknowledged. A report is one result of one request (an OBR, an
/// SR document, a manual entry); later reports for the same request supersede
/// earlier ones, and what counts for a study is the current report of each
/// request linked to it.
const V2: &str = r#"
ALTER TABLE studies ADD COLUMN report_status TEXT
    CHECK (report_status IN ('preliminary', 'final', 'corrected', 'cancelled', 'withdrawn'));

CREATE TABLE hl7_messages (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at         TEXT NOT NULL,
    peer                TEXT NOT NULL,
    sending_application TEXT NOT NULL,
    sending_facility    TEXT NOT NULL,
    control_id          TEXT NOT NULL,
    message_type        TEXT NOT NULL,
    version             TEXT NOT NULL,
    raw                 BLOB NOT NULL,
    raw_truncated       INTEGER NOT NULL DEFAULT 0 CHECK (raw_truncated IN (0, 1)),
    ack_code            TEXT NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR')),
    ack_reason          TEXT NOT NULL
) STRICT;
-- The duplicate key: a message accepted once is acknowledged again, never
-- processed twice. Refused messages (AE/AR) may be corrected and resent.
CREATE UNIQUE INDEX hl7_messages_accepted_key
    ON hl7_messages (sending_application, sending_facility, control_id)
    WHERE ack_code = 'AA' AND control_id <> '';
CREATE INDEX hl7_messages_by_received ON hl7_messages (received_at);

-- Plain indexes: a partial one (`WHERE x IS NOT NULL`) serves `x = ?` only
-- when SQLite looks at the bound value, which the catalog turns off (QPSG).
CREATE TABLE orders (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id          INTEGER REFERENCES hl7_messages (id),
    received_at         TEXT NOT NULL,
    placer_number       TEXT,
    filler_number       TEXT,
    accession_number    TEXT,
    issuer_of_accession TEXT,
    study_uid           TEXT,
    patient_ids         TEXT NOT NULL DEFAULT '[]',
    patient_class       TEXT,
    priority            TEXT,
    procedure           TEXT,
    order_control       TEXT,
    order_status        TEXT
) STRICT;
CREATE INDEX orders_by_placer ON orders (placer_number);
CREATE INDEX orders_by_filler ON orders (filler_number);
CREATE INDEX orders_by_accession ON orders (accession_number);
CREATE INDEX orders_by_study ON orders (study_uid);

CREATE TABLE reports (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    origin              TEXT NOT NULL CHECK (origin IN ('hl7', 'dicom_sr', 'manual', 'import')),
    message_id          INTEGER REFERENCES hl7_messages (id),
    sop_instance_uid    TEXT,
    received_at         TEXT NOT NULL,
    request_key         TEXT NOT NULL,
    superseded_by       INTEGER REFERENCES reports (id),
    status              TEXT NOT NULL
                        CHECK (status IN ('preliminary', 'final', 'corrected', 'cancelled')),
    withdrawn           INTEGER NOT NULL DEFAULT 0 CHECK (withdrawn IN (0, 1)),
    reported_at         TEXT,
    exam_at             TEXT,
    author              TEXT,
    accession_number    TEXT,
    issuer_of_accession TEXT,
    study_uid           TEXT,
    placer_number       TEXT,
    filler_number       TEXT,
    patient_ids         TEXT NOT NULL DEFAULT '[]',
    procedure           TEXT,
    text                TEXT,
    alert_category      TEXT CHECK (alert_category IN
                        ('critical', 'urgent', 'significant_unexpected', 'suspected_cancer')),
    recorded_by         TEXT
) STRICT;
CREATE INDEX reports_by_request ON reports (request_key, id);
CREATE INDEX reports_by_accession ON reports (accession_number);
CREATE INDEX reports_by_placer ON reports (placer_number);
CREATE INDEX reports_by_filler ON reports (filler_number);
CREATE INDEX reports_by_received ON reports (received_at);

-- Every Study Instance UID a report names (an SR may reference several
-- studies besides its own); reports.study_uid is the first of them.
CREATE TABLE report_study_uids (
    study_uid           TEXT NOT NULL,
    report_id           INTEGER NOT NULL REFERENCES reports (id),
    PRIMARY KEY (study_uid, report_id)
) STRICT, WITHOUT ROWID;

-- How each report is tied to each study, and by which rule. A probable link
-- (patient ID and date) counts only once a person confirms it.
CREATE TABLE report_links (
    report_id           INTEGER NOT NULL REFERENCES reports (id),
    study_uid           TEXT NOT NULL REFERENCES studies (study_uid),
    rule                TEXT NOT NULL
                        CHECK (rule IN ('study_uid', 'accession', 'order', 'patient_date')),
    probable            INTEGER NOT NULL DEFAULT 0 CHECK (probable IN (0, 1)),
    confirmation        TEXT CHECK (confirmation IN ('confirmed', 'rejected')),
    confirmed_by        TEXT,
    confirmed_at        TEXT,
    linked_at           TEXT NOT NULL,
    PRIMARY KEY (report_id, study_uid)
) STRICT;
CREATE INDEX report_links_by_study ON report_links (study_uid);
"#;

/// Version 3: the watchdog — each study's rule and deadline, the DICOM
/// attributes rules match on, alarms with their escalation state, and the
/// notification outbox.
///
/// `studies.deadline_stale` marks a study whose rule and deadline must be
/// (re)computed: set when the study is created or changes in a way a rule can
/// see, and when an order for it arrives; the watchdog clears it.
const V3: &str = r#"
ALTER TABLE studies ADD COLUMN rule TEXT;
ALTER TABLE studies ADD COLUMN no_report_needed INTEGER NOT NULL DEFAULT 0
    CHECK (no_report_needed IN (0, 1));
ALTER TABLE studies ADD COLUMN deadline_stale INTEGER NOT NULL DEFAULT 1
    CHECK (deadline_stale IN (0, 1));
CREATE INDEX studies_stale ON studies (study_uid) WHERE deadline_stale = 1;
-- Set while the study has a live overdue_report alarm, so that finding the
-- studies that fall due reads only those that have not alarmed yet.
ALTER TABLE studies ADD COLUMN alarmed INTEGER NOT NULL DEFAULT 0 CHECK (alarmed IN (0, 1));
CREATE INDEX studies_due ON studies (deadline)
    WHERE reported_at IS NULL AND no_report_needed = 0 AND alarmed = 0;
CREATE TRIGGER studies_stale_on_change
AFTER UPDATE OF modalities, accession_number, study_date, study_time, source ON studies
WHEN NEW.deadline_stale = 0 AND (OLD.modalities IS NOT NEW.modalities
    OR OLD.accession_number IS NOT NEW.accession_number OR OLD.study_date IS NOT NEW.study_date
    OR OLD.study_time IS NOT NEW.study_time OR OLD.source IS NOT NEW.source)
BEGIN
    UPDATE studies SET deadline_stale = 1 WHERE study_uid = NEW.study_uid;
END;
CREATE TRIGGER studies_stale_on_order AFTER INSERT ON orders
BEGIN
    UPDATE studies SET deadline_stale = 1
    WHERE deadline_stale = 0
      AND (study_uid = NEW.study_uid OR accession_number = NEW.accession_number);
END;

-- DICOM attributes that watchdog rules match on, from the first instance
-- that carried each.
CREATE TABLE study_attributes (
    study_uid           TEXT NOT NULL REFERENCES studies (study_uid),
    keyword             TEXT NOT NULL,
    value               TEXT NOT NULL,
    PRIMARY KEY (study_uid, keyword)
) STRICT, WITHOUT ROWID;

CREATE TABLE alarms (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT NOT NULL CHECK (kind IN ('overdue_report', 'failsafe_unacknowledged',
                            'unmatched_report', 'feed_silent', 'integrity', 'storage_low')),
    -- What the alarm is about (a study UID, a report id, ...): at most one
    -- live alarm per kind and subject.
    subject             TEXT NOT NULL,
    study_uid           TEXT,
    report_id           INTEGER,
    rule                TEXT,
    state               TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    raised_at           TEXT NOT NULL,
    due_at              TEXT NOT NULL,
    detail              TEXT NOT NULL,
    next_step           INTEGER NOT NULL DEFAULT 0 CHECK (next_step >= 0),
    next_action_at      TEXT,
    acknowledged_by     TEXT,
    acknowledged_at     TEXT,
    acknowledged_until  TEXT,
    ack_reason          TEXT,
    resolved_at         TEXT,
    resolved_reason     TEXT,
    recheck             INTEGER NOT NULL DEFAULT 0 CHECK (recheck IN (0, 1))
) STRICT;
CREATE UNIQUE INDEX alarms_one_live ON alarms (kind, subject) WHERE state <> 'resolved';
CREATE INDEX alarms_by_report ON alarms (report_id);
-- "Has this ever alarmed?" (any state), per kind and subject.
CREATE INDEX alarms_by_kind_subject ON alarms (kind, subject);
-- Set when what an alarm depends on changes (its study reported, its report
-- linked, replaced, withdrawn or acknowledged): the watchdog looks at exactly
-- these instead of re-checking every live alarm.
CREATE INDEX alarms_recheck ON alarms (id) WHERE recheck = 1;
CREATE INDEX alarms_next_action ON alarms (next_action_at) WHERE state = 'open';
CREATE INDEX alarms_ack_until ON alarms (acknowledged_until) WHERE state = 'acknowledged';
CREATE INDEX alarms_by_study ON alarms (study_uid);
CREATE INDEX alarms_by_state ON alarms (state, id);

-- Notifications to deliver, at least once, with their attempts.
CREATE TABLE outbox (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at          TEXT NOT NULL,
    alarm_id            INTEGER REFERENCES alarms (id),
    channel             TEXT NOT NULL,
    event               TEXT NOT NULL
                        CHECK (event IN ('trigger', 'repeat', 'resolve', 'digest', 'test')),
    step                INTEGER,
    payload             TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     TEXT NOT NULL,
    last_error          TEXT,
    sent_at             TEXT
) STRICT;
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_by_alarm ON outbox (alarm_id);

-- The referrer's side acknowledging a report's fail-safe alert.
ALTER TABLE reports ADD COLUMN alert_acknowledged_by TEXT;
ALTER TABLE reports ADD COLUMN alert_acknowledged_at TEXT;
-- Set once a link counts (not probable, or confirmed): unmatched reports
-- are then found through a small partial index.
ALTER TABLE reports ADD COLUMN linked INTEGER NOT NULL DEFAULT 0 CHECK (linked IN (0, 1));
UPDATE reports SET linked = 1 WHERE EXISTS (SELECT 1 FROM report_links l
    WHERE l.report_id = reports.id
    AND (l.confirmation = 'confirmed' OR (l.probable = 0 AND l.confirmation IS NULL)));
CREATE INDEX reports_unlinked ON reports (received_at) WHERE linked = 0 AND superseded_by IS NULL;
CREATE INDEX reports_alert_pending ON reports (received_at)
    WHERE alert_category IS NOT NULL AND alert_acknowledged_at IS NULL
      AND superseded_by IS NULL AND withdrawn = 0;

CREATE TRIGGER alarms_recheck_on_study
AFTER UPDATE OF reported_at, no_report_needed, deadline ON studies
BEGIN
    UPDATE alarms SET recheck = 1
    WHERE kind = 'overdue_report' AND subject = NEW.study_uid AND state <> 'resolved';
END;
CREATE TRIGGER alarms_recheck_on_report
AFTER UPDATE OF superseded_by, withdrawn, linked, alert_acknowledged_at ON reports
BEGIN
    UPDATE alarms SET recheck = 1 WHERE report_id = NEW.id AND state <> 'resolved';
END;

-- Linking reads a report's study UIDs by report (v2 indexed them by study only).
CREATE INDEX report_study_uids_by_report ON report_study_uids (report_id);
"#;

/// Version 4: the worklist index of the HTTP API and the dashboard
/// (`Store::studies_page`, `Store::backlog_stats` in `views.rs`).
///
/// A partial index of the studies still waiting for a report, in the
/// worklist's order (deadline, first receipt, UID), carrying the source and
/// modalities that pages filter on and the backlog counts by. With a million
/// studies in the catalog it holds only the few thousand unreported ones, so
/// a page or the backlog's figures read it alone and never the table. Its
/// WHERE is the literal condition the queries repeat (with QPSG on, SQLite
/// uses a partial index only for a query whose WHERE implies it literally).
/// The WHERE's own columns end the key too: SQLite counts an index as
/// covering only when it holds every column the query names, those of a
/// partial index's WHERE included.
const V4: &str = r#"
CREATE INDEX studies_worklist
    ON studies (deadline, first_received_at, study_uid, source, modalities,
                reported_at, no_report_needed)
    WHERE reported_at IS NULL AND no_report_needed = 0;
"#;

/// Version 5: the dashboard's indexes (`catalog/dashboard.rs`).
///
/// - `studies_by_reported`: studies by the time their formal report came,
///   carrying their first receipt, for the backlog's history (how many
///   waited at the end of each of the last 30 days needs the studies
///   reported since then) and for figures of reports since a time. Partial:
///   studies still waiting (the ones receiving instances) are not in it, so
///   ingest does not maintain it.
/// - `outbox_failed`: notifications given up on, which the dashboard shows
///   until someone looks, among the many sent.
const V5: &str = r#"
CREATE INDEX studies_by_reported
    ON studies (reported_at, first_received_at, no_report_needed)
    WHERE reported_at IS NOT NULL;
CREATE INDEX outbox_failed ON outbox (id) WHERE state = 'failed';
"#;

/// Version 6: `GET /api/studies?state=no_report_needed` (`views.rs`).
///
/// The studies a rule says need no report, in the worklist's order, like
/// `studies_worklist` for those waiting. They are a minority that a page
/// would otherwise have to find by scanning the deadline index past every
/// reported study (0.3–1.9 s for a page on a catalog of a million studies);
/// with this index a page reads only that set.
const V6: &str = r#"
CREATE INDEX studies_no_report
    ON studies (deadline, first_received_at, study_uid, source, modalities,
                reported_at, no_report_needed)
    WHERE reported_at IS NULL AND no_report_needed = 1;
"#;

/// Version 7: the forward queue (`catalog/forward.rs`).
///
/// One row per destination and instance, written in the transaction that
/// records the instance; the primary key is what keeps a resend from
/// queueing an instance twice. `forward_due` is partial: sent rows, which
/// become the great majority, are not in it, so the sender's "what is due
/// for this destination" and the metrics' pending counts read only the
/// rows still to send.
const V7: &str = r#"
CREATE TABLE forward_queue (
    destination      TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    study_uid        TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_attempt_at  TEXT,
    last_error       TEXT,
    last_status      INTEGER,
    enqueued_at      TEXT NOT NULL,
    sent_at          TEXT,
    PRIMARY KEY (destination, sop_instance_uid)
) STRICT, WITHOUT ROWID;
CREATE INDEX forward_due
    ON forward_queue (destination, next_attempt_at, enqueued_at)
    WHERE state = 'pending';
CREATE INDEX forward_by_study ON forward_queue (study_uid);
"#;

/// Version 8: alarm kinds are no longer a closed list in the schema, and
/// failed forward rows have an index of their own.
///
/// Version 3 listed the six kinds it knew in a CHECK, so every new kind
/// (`forward_stalled`, `incomplete_transfer`, ...) would need a table rebuild
/// of its own. The kinds are an enum in the code (`watchdog::tick`); the
/// table now only checks a kind's shape. SQLite cannot change a CHECK in
/// place, so this is its documented rebuild: a new table, the rows copied
/// with their ids (the outbox refers to them), the old one dropped, the new
/// one renamed, then its indexes and the triggers that name it recreated.
/// Foreign keys are off while a step runs and checked before it commits
/// ([`migrate_to`]), so the outbox's references to the copied ids hold.
const V8: &str = r#"
DROP TRIGGER alarms_recheck_on_study;
DROP TRIGGER alarms_recheck_on_report;
CREATE TABLE alarms_v8 (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT NOT NULL CHECK (kind <> '' AND kind NOT GLOB '*[^a-z_]*'),
    subject             TEXT NOT NULL,
    study_uid           TEXT,
    report_id           INTEGER,
    rule                TEXT,
    state               TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    raised_at           TEXT NOT NULL,
    due_at              TEXT NOT NULL,
    detail              TEXT NOT NULL,
    next_step           INTEGER NOT NULL DEFAULT 0 CHECK (next_step >= 0),
    next_action_at      TEXT,
    acknowledged_by     TEXT,
    acknowledged_at     TEXT,
    acknowledged_until  TEXT,
    ack_reason          TEXT,
    resolved_at         TEXT,
    resolved_reason     TEXT,
    recheck             INTEGER NOT NULL DEFAULT 0 CHECK (recheck IN (0, 1))
) STRICT;
INSERT INTO alarms_v8 SELECT id, kind, subject, study_uid, report_id, rule, state, raised_at,
    due_at, detail, next_step, next_action_at, acknowledged_by, acknowledged_at,
    acknowledged_until, ack_reason, resolved_at, resolved_reason, recheck FROM alarms;
DROP TABLE alarms;
ALTER TABLE alarms_v8 RENAME TO alarms;
CREATE UNIQUE INDEX alarms_one_live ON alarms (kind, subject) WHERE state <> 'resolved';
CREATE INDEX alarms_by_report ON alarms (report_id);
CREATE INDEX alarms_by_kind_subject ON alarms (kind, subject);
CREATE INDEX alarms_recheck ON alarms (id) WHERE recheck = 1;
CREATE INDEX alarms_next_action ON alarms (next_action_at) WHERE state = 'open';
CREATE INDEX alarms_ack_until ON alarms (acknowledged_until) WHERE state = 'acknowledged';
CREATE INDEX alarms_by_study ON alarms (study_uid);
CREATE INDEX alarms_by_state ON alarms (state, id);
CREATE TRIGGER alarms_recheck_on_study
AFTER UPDATE OF reported_at, no_report_needed, deadline ON studies
BEGIN
    UPDATE alarms SET recheck = 1
    WHERE kind = 'overdue_report' AND subject = NEW.study_uid AND state <> 'resolved';
END;
CREATE TRIGGER alarms_recheck_on_report
AFTER UPDATE OF superseded_by, withdrawn, linked, alert_acknowledged_at ON reports
BEGIN
    UPDATE alarms SET recheck = 1 WHERE report_id = NEW.id AND state <> 'resolved';
END;

-- Queue rows given up on (refused by the destination, file unreadable),
-- which the watchdog alarms on, among the many sent.
CREATE INDEX forward_failed ON forward_queue (destination) WHERE state = 'failed';
"#;

/// Version 9: stable studies, completeness, storage commitment both ways,
/// and local pruning (`catalog/commit.rs`, `catalog/stability.rs`,
/// `catalog/retention.rs`).
///
/// - `studies.stable_at`: set once no instance has arrived for the study's
///   `stable_after`; cleared by a late instance. `studies_unstable` holds
///   only the studies still receiving.
/// - `studies.completeness` and its figures: what the sender said it holds
///   (C-FIND, or a storage commitment request it sent us) against what we
///   received.
/// - `forward_queue.commit_*`: for destinations with storage commitment,
///   each sent row waits (`awaiting`) until its study is stable and fully
///   sent, is `requested` under a Transaction UID, then `committed` or
///   `failed` as the destination's N-EVENT-REPORT says.
/// - `commit_requests` and `commit_request_items`: commitment requests
///   peers sent us, kept until their N-EVENT-REPORT is delivered.
/// - `instances.pruned_at`: the local file was removed once every
///   destination had it (and committed it where it commits).
const V9: &str = r#"
ALTER TABLE studies ADD COLUMN stable_at TEXT;
UPDATE studies SET stable_at = last_received_at;
CREATE INDEX studies_unstable ON studies (last_received_at) WHERE stable_at IS NULL;
-- 'checking': stable, from a peer that answers C-FIND, to be queried.
ALTER TABLE studies ADD COLUMN completeness TEXT
    CHECK (completeness IN ('checking', 'complete', 'incomplete', 'unknown'));
ALTER TABLE studies ADD COLUMN expected_instances INTEGER;
ALTER TABLE studies ADD COLUMN completeness_at TEXT;
ALTER TABLE studies ADD COLUMN completeness_detail TEXT;
CREATE INDEX studies_to_check ON studies (stable_at) WHERE completeness = 'checking';
CREATE INDEX studies_incomplete ON studies (study_uid) WHERE completeness = 'incomplete';
CREATE TRIGGER alarms_recheck_on_completeness AFTER UPDATE OF completeness ON studies
BEGIN
    UPDATE alarms SET recheck = 1
    WHERE kind = 'incomplete_transfer' AND subject = NEW.study_uid AND state <> 'resolved';
END;

ALTER TABLE forward_queue ADD COLUMN commit_state TEXT
    CHECK (commit_state IN ('awaiting', 'requested', 'committed', 'failed'));
ALTER TABLE forward_queue ADD COLUMN commit_transaction TEXT;
ALTER TABLE forward_queue ADD COLUMN commit_requested_at TEXT;
ALTER TABLE forward_queue ADD COLUMN committed_at TEXT;
ALTER TABLE forward_queue ADD COLUMN commit_failure TEXT;
CREATE INDEX forward_commit_open ON forward_queue (destination, study_uid)
    WHERE commit_state IN ('awaiting', 'requested');
CREATE INDEX forward_by_transaction ON forward_queue (commit_transaction)
    WHERE commit_transaction IS NOT NULL;
CREATE INDEX forward_commit_failed ON forward_queue (destination) WHERE commit_state = 'failed';
-- Retention asks, per instance, whether every destination has it.
CREATE INDEX forward_by_instance ON forward_queue (sop_instance_uid);

CREATE TABLE commit_requests (
    transaction_uid  TEXT PRIMARY KEY NOT NULL,
    calling_ae       TEXT NOT NULL,
    received_at      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'reported')),
    event_type       INTEGER,
    committed_count  INTEGER,
    failed_count     INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_error       TEXT,
    reported_at      TEXT
) STRICT;
CREATE INDEX commit_requests_due ON commit_requests (next_attempt_at) WHERE state = 'pending';
CREATE TABLE commit_request_items (
    transaction_uid  TEXT NOT NULL REFERENCES commit_requests (transaction_uid),
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid    TEXT NOT NULL,
    PRIMARY KEY (transaction_uid, sop_instance_uid)
) STRICT, WITHOUT ROWID;

-- `forwarded`: some destination takes it (it has forward rows). Only those
-- can ever be pruned, so only those are in the pruner's index, and a
-- gateway that forwards nothing pays nothing for it at ingest.
ALTER TABLE instances ADD COLUMN pruned_at TEXT;
ALTER TABLE instances ADD COLUMN forwarded INTEGER NOT NULL DEFAULT 0
    CHECK (forwarded IN (0, 1));
UPDATE instances SET forwarded = 1
    WHERE sop_instance_uid IN (SELECT sop_instance_uid FROM forward_queue);
CREATE INDEX instances_unpruned ON instances (received_at, sop_instance_uid)
    WHERE pruned_at IS NULL AND forwarded = 1;
"#;

/// Version 10: the latest reading of each sender's clock
/// (`catalog/clock.rs`), for the watchdog's `clock_skew` alarm.
///
/// One row per sender: `via` says how it reached us (`hl7`: `sender` is
/// MSH-3^MSH-4; `dicom`: the calling AE). `sender_time` is the time its
/// message or instance said (MSH-7; Instance Creation or Acquisition
/// Date/Time), `received_at` our clock when it arrived, and `ahead_ms` the
/// first minus the second. The row is written in the transaction that
/// records the message or instance. The step stands alone: it creates one
/// table that refers to none and that nothing else refers to, so it can
/// move to a later version number unchanged if another step lands first.
const CLOCK_OBSERVATIONS: &str = r#"
CREATE TABLE clock_observations (
    via              TEXT NOT NULL CHECK (via IN ('hl7', 'dicom')),
    sender           TEXT NOT NULL,
    received_at      TEXT NOT NULL,
    sender_time      TEXT NOT NULL,
    ahead_ms         INTEGER NOT NULL,
    PRIMARY KEY (via, sender)
) STRICT, WITHOUT ROWID;
"#;

/// Version 11: the Issuer of Patient ID (0010,0021) of a study's images.
///
/// A patient ID is unique only within its issuer, so linking compares the
/// issuer too when both the study and the report name one. Studies
/// catalogued before this step have none, and match as before.
const ISSUER_OF_PATIENT_ID: &str = r#"
ALTER TABLE studies ADD COLUMN issuer_of_patient_id TEXT;
"#;

/// Version 12: HL7 orders whose examination the RIS reported complete
/// (ORC-5 `CM`) wait for their images (`catalog/orders.rs`).
///
/// `images_due` is set by a trigger on such an order (one that names an
/// accession or a study UID) and cleared once the watchdog has looked at it
/// after `[watchdog] order_without_images_after`: then it either found the
/// study or raised `order_without_images`. Orders stored before this step
/// are not looked at.
const ORDERS_AWAITING_IMAGES: &str = r#"
ALTER TABLE orders ADD COLUMN images_due INTEGER NOT NULL DEFAULT 0
    CHECK (images_due IN (0, 1));
CREATE INDEX orders_images_due ON orders (received_at) WHERE images_due = 1;
CREATE TRIGGER orders_images_due_on_completion AFTER INSERT ON orders
WHEN NEW.order_status = 'CM'
  AND (NEW.accession_number IS NOT NULL OR NEW.study_uid IS NOT NULL)
BEGIN
    UPDATE orders SET images_due = 1 WHERE id = NEW.id;
END;
"#;

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per step, or
/// refuses it if it is newer than this binary.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), Error> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database up to `target` (at most [`SCHEMA_VERSION`]); tests use
/// it to build a catalog as an older release left it.
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), Error> {
    // A step may rebuild a table that others refer to (SQLite's documented
    // procedure for changes ALTER TABLE cannot make): with foreign keys on,
    // dropping the old table would count the referring rows as violations
    // that no rename resolves. So keys are off while steps run (the pragma
    // is a no-op inside a transaction) and each step is checked with
    // `foreign_key_check` before it commits.
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = apply_steps(conn, target);
    conn.pragma_update(None, "foreign_keys", enforced)?;
    result
}

fn apply_steps(conn: &mut Connection, target: i64) -> Result<(), Error> {
    // A catalog already at the target (every open but the first after an
    // upgrade) is only read: a CLI command then never takes the write lock,
    // so it neither waits behind the server's commits nor delays them.
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current == target {
        return Ok(());
    }
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
        let Some(step) = usize::try_from(found)
            .ok()
            .filter(|_| found < target)
            .and_then(|i| MIGRATIONS.get(i))
        else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        let problems: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if problems > 0 {
            return Err(Error::MigrationBroken {
                version: found + 1,
                problems,
            });
        }
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
        tracing::info!(version = found + 1, "catalog schema migrated");
    }
}
