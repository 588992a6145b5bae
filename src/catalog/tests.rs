//! Unit tests of the catalog, each on its own temporary database file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::ToSpan;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

const T0: &str = "2026-11-22T10:00:00Z";

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    // A parent that does not exist yet: open must create it.
    let path = dir.path().join("var").join("catalog.sqlite");
    (dir, path)
}

fn instance(study: &str, series: &str, sop: &str, modality: &str, at: Timestamp) -> NewInstance {
    NewInstance {
        study_uid: study.into(),
        series_uid: series.into(),
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        patient_id: None,
        issuer_of_patient_id: None,
        accession_number: None,
        issuer_of_accession: None,
        modality: Some(modality.into()),
        study_date: None,
        study_time: None,
        study_description: None,
        referring_physician: None,
        institution_name: None,
        series_number: None,
        series_description: None,
        size_bytes: 1000,
        sha256: "0123456789abcdef".repeat(4),
        rel_path: format!("{study}/{series}/{sop}.dcm"),
        received_at: at,
        calling_ae: "CT1".into(),
        source: "ed-ct".into(),
        report: None,
        attributes: vec![],
        forward_to: vec![],
        clock: None,
    }
}

fn table_names(store: &Store) -> Vec<String> {
    let mut stmt = store
        .conn()
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn fresh_database_is_migrated_and_reopens_unchanged() {
    let (_dir, path) = temp_db();
    {
        let mut store = Store::open(&path, true).expect("open fresh");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(
            table_names(&store),
            [
                "alarms",
                "audit",
                "clock_observations",
                "commit_request_items",
                "commit_requests",
                "forward_queue",
                "hl7_messages",
                "ingest_failures",
                "instances",
                "integrity_conflicts",
                "orders",
                "outbox",
                "report_links",
                "report_study_uids",
                "reports",
                "series",
                "studies",
                "study_attributes"
            ]
        );
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("synchronous");
        assert_eq!(sync, 2, "durable means synchronous = FULL");
        let fk: i64 = store
            .conn()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("foreign_keys");
        assert_eq!(fk, 1);
        store
            .record_instance(&instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", ts(T0)))
            .expect("record");
    }
    let store = Store::open(&path, false).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let sync: i64 = store
        .conn()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("synchronous");
    assert_eq!(sync, 1, "not durable means synchronous = NORMAL");
    assert_eq!(store.counts().expect("counts").instances, 1);
}

#[test]
fn version_7_alarms_survive_the_kind_check_rebuild() {
    let (_dir, path) = temp_db();
    {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        let mut raw = rusqlite::Connection::open(&path).expect("raw open");
        raw.pragma_update(None, "foreign_keys", true).expect("fk");
        super::schema::migrate_to(&mut raw, 7).expect("migrate to 7");
        raw.execute_batch(
            "INSERT INTO studies (study_uid, source, calling_ae, first_received_at, last_received_at) \
                 VALUES ('1.2.3', 'CT1', 'CT1', '2026-01-01T00:00:00.000000Z', \
                         '2026-01-01T00:00:00.000000Z');
             INSERT INTO alarms (id, kind, subject, study_uid, state, raised_at, due_at, detail) \
                 VALUES (41, 'overdue_report', '1.2.3', '1.2.3', 'open', \
                         '2026-01-02T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z', 'late');
             INSERT INTO outbox (alarm_id, created_at, channel, event, payload, state, next_attempt_at) \
                 VALUES (41, '2026-01-02T00:00:00.000000Z', 'email', 'trigger', '{}', 'pending', \
                         '2026-01-02T00:00:00.000000Z');",
        )
        .expect("v7 rows");
        let refused = raw.execute(
            "INSERT INTO alarms (kind, subject, state, raised_at, due_at, detail) \
             VALUES ('forward_stalled', 'forward:pacs', 'open', 'x', 'x', 'x')",
            [],
        );
        assert!(refused.is_err(), "version 7 refuses new kinds");
    }
    let store = Store::open(&path, true).expect("open migrates");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let conn = store.conn();
    let (kind, detail): (String, String) = conn
        .query_row("SELECT kind, detail FROM alarms WHERE id = 41", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("alarm kept with its id");
    assert_eq!((kind.as_str(), detail.as_str()), ("overdue_report", "late"));
    conn.execute(
        "INSERT INTO alarms (kind, subject, state, raised_at, due_at, detail) \
         VALUES ('forward_stalled', 'forward:pacs', 'open', 'x', 'x', 'x')",
        [],
    )
    .expect("a new kind is taken");
    assert!(
        conn.execute(
            "INSERT INTO alarms (kind, subject, state, raised_at, due_at, detail) \
             VALUES ('Not A Kind', 's', 'open', 'x', 'x', 'x')",
            [],
        )
        .is_err(),
        "a kind is still checked for its shape"
    );
    let fk_problems: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("fk check");
    assert_eq!(fk_problems, 0);
    // The trigger that names the table still fires.
    conn.execute(
        "UPDATE studies SET reported_at = '2026-01-03T00:00:00.000000Z' WHERE study_uid = '1.2.3'",
        [],
    )
    .expect("report the study");
    let recheck: i64 = conn
        .query_row("SELECT recheck FROM alarms WHERE id = 41", [], |r| r.get(0))
        .expect("recheck");
    assert_eq!(recheck, 1);
    let next_id: i64 = conn
        .query_row("SELECT max(id) FROM alarms", [], |r| r.get(0))
        .expect("max id");
    assert!(next_id > 41, "ids keep counting after the copied rows");
}

/// A CLI command opens the catalog while the server writes: with the schema
/// current, opening only reads the version and never waits for the write
/// lock (before, it took it for the migration check and, behind a long
/// write, failed with "database is locked" after the busy timeout).
#[test]
fn opening_a_current_catalog_does_not_take_the_write_lock() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path, true).expect("create"));
    let writer = rusqlite::Connection::open(&path).expect("raw open");
    writer
        .execute_batch("BEGIN IMMEDIATE")
        .expect("hold the write lock");
    let store = Store::open(&path, true).expect("open beside a writer");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    writer.execute_batch("COMMIT").expect("release");
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let (_dir, path) = temp_db();
    {
        let store = Store::open(&path, true).expect("open");
        store
            .conn()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("set version");
    }
    match Store::open(&path, true) {
        Err(Error::SchemaTooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    // The async handle refuses it the same way.
    assert!(matches!(
        Catalog::open(&path, true),
        Err(Error::SchemaTooNew { .. })
    ));
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION + 1);
}

#[test]
fn recorded_instance_can_be_looked_up() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    assert_eq!(store.lookup_instance("1.2.1.1.1").expect("lookup"), None);
    let rec = instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", ts(T0));
    store.record_instance(&rec).expect("record");
    let row = store
        .lookup_instance("1.2.1.1.1")
        .expect("lookup")
        .expect("present");
    assert_eq!(
        row,
        InstanceRow {
            sop_instance_uid: "1.2.1.1.1".into(),
            series_uid: "1.2.1.1".into(),
            study_uid: "1.2.1".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            size_bytes: 1000,
            sha256: "0123456789abcdef".repeat(4),
            rel_path: "1.2.1/1.2.1.1/1.2.1.1.1.dcm".into(),
            received_at: ts(T0),
            calling_ae: "CT1".into(),
            pruned_at: None,
        }
    );
    assert_eq!(store.instances(Some("1.2.1")).expect("instances"), [row]);
}

#[test]
fn stored_times_keep_microseconds_and_sort_as_text() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    // 10:00:00.5 sorts after 10:00:00 only if the text has a fixed width.
    let whole = ts("2026-11-22T10:00:00Z");
    let half = ts("2026-11-22T10:00:00.5Z");
    let nanos = ts("2026-11-22T10:00:00.123456789Z");
    store
        .record_instance(&instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", half))
        .expect("record");
    store
        .record_instance(&instance("1.2.1", "1.2.1.1", "1.2.1.1.2", "CT", whole))
        .expect("record");
    store
        .record_instance(&instance("1.2.1", "1.2.1.1", "1.2.1.1.3", "CT", nanos))
        .expect("record");
    let study = store.study("1.2.1").expect("study").expect("present").study;
    assert_eq!(study.first_received_at, whole);
    assert_eq!(study.last_received_at, half);
    let stored = store
        .lookup_instance("1.2.1.1.3")
        .expect("lookup")
        .expect("present");
    assert_eq!(stored.received_at, ts("2026-11-22T10:00:00.123456Z"));
    let texts: Vec<String> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT received_at FROM instances ORDER BY received_at")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(
        texts,
        [
            "2026-11-22T10:00:00.000000Z",
            "2026-11-22T10:00:00.123456Z",
            "2026-11-22T10:00:00.500000Z"
        ]
    );
}

#[test]
fn study_and_series_are_upserted_across_instances() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t0 = ts(T0);

    let mut first = instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", t0 + 1.minute());
    first.patient_id = Some("H123".into());
    first.study_description = Some("CT head  ".into());
    first.series_number = Some(2);
    first.accession_number = Some("   ".into()); // padding only: absent
    store.record_instance(&first).expect("first");

    let mut second = instance("1.2.1", "1.2.1.1", "1.2.1.1.2", "CT", t0 + 2.minutes());
    second.patient_id = Some("OTHER".into()); // must not overwrite
    second.accession_number = Some("ACC7".into()); // fills the gap
    store.record_instance(&second).expect("second");

    // Received out of order: earlier than the first one.
    let mut sr = instance("1.2.1", "1.2.1.2", "1.2.1.2.1", "SR", t0);
    sr.series_number = Some(1);
    store.record_instance(&sr).expect("sr");

    let mut mr = instance("1.2.1", "1.2.1.3", "1.2.1.3.1", "", t0 + 3.minutes());
    mr.modality = None;
    store.record_instance(&mr).expect("no modality");
    store
        .record_instance(&instance(
            "1.2.1",
            "1.2.1.3",
            "1.2.1.3.2",
            "MR",
            t0 + 4.minutes(),
        ))
        .expect("mr");

    let detail = store.study("1.2.1").expect("study").expect("present");
    let study = &detail.study;
    assert_eq!(study.series_count, 3);
    assert_eq!(study.instance_count, 5);
    assert_eq!(study.modalities, ["CT", "MR", "SR"]);
    assert_eq!(study.patient_id.as_deref(), Some("H123"));
    assert_eq!(study.accession_number.as_deref(), Some("ACC7"));
    assert_eq!(study.study_description.as_deref(), Some("CT head"));
    assert_eq!(study.first_received_at, t0);
    assert_eq!(study.last_received_at, t0 + 4.minutes());
    assert_eq!(study.source, "ed-ct");
    assert_eq!(study.calling_ae, "CT1");
    assert_eq!(study.reported_at, None);

    let series: Vec<(&str, Option<i64>, u64, Option<&str>)> = detail
        .series
        .iter()
        .map(|s| {
            (
                s.series_uid.as_str(),
                s.series_number,
                s.instance_count,
                s.modality.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        series,
        [
            ("1.2.1.2", Some(1), 1, Some("SR")),
            ("1.2.1.1", Some(2), 2, Some("CT")),
            // The second instance filled in the modality the first lacked.
            ("1.2.1.3", None, 2, Some("MR")),
        ]
    );
    assert_eq!(detail.instances.len(), 5);
    let received: Vec<&str> = detail
        .audit
        .iter()
        .filter(|a| a.action == "study_received")
        .map(|a| a.actor.as_str())
        .collect();
    assert_eq!(received, ["system"], "one study_received audit row");
    assert_eq!(
        store.counts().expect("counts"),
        Counts {
            studies: 1,
            instances: 5,
            failures: 0,
            conflicts: 0
        }
    );
}

#[test]
fn duplicate_instance_is_an_error_and_changes_nothing() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let rec = instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", ts(T0));
    store.record_instance(&rec).expect("first");
    let mut again = rec.clone();
    again.received_at = ts(T0) + 1.hour();
    again.modality = Some("SR".into());
    match store.record_instance(&again) {
        Err(Error::DuplicateInstance(uid)) => assert_eq!(uid, "1.2.1.1.1"),
        other => panic!("expected DuplicateInstance, got {other:?}"),
    }
    let study = store.study("1.2.1").expect("study").expect("present").study;
    assert_eq!(study.instance_count, 1);
    assert_eq!(study.modalities, ["CT"]);
    assert_eq!(study.last_received_at, ts(T0));
}

#[test]
fn series_reused_under_another_study_is_refused() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    store
        .record_instance(&instance("1.2.1", "1.2.9", "1.2.9.1", "CT", ts(T0)))
        .expect("first");
    let err = store
        .record_instance(&instance("1.2.2", "1.2.9", "1.2.9.2", "CT", ts(T0)))
        .expect_err("series of another study");
    assert!(matches!(err, Error::SeriesInOtherStudy { .. }), "{err:?}");
    assert_eq!(store.study("1.2.2").expect("study"), None);
    assert_eq!(store.counts().expect("counts").instances, 1);
}

#[test]
fn a_bad_record_in_a_batch_fails_alone() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t = ts(T0);
    let mut bad_hash = instance("1.2.1", "1.2.1.1", "1.2.1.1.3", "CT", t);
    bad_hash.sha256 = "not hex".into();
    let batch = [
        instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", t),
        instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", t), // duplicate within the batch
        bad_hash,
        instance("1.2.2", "1.2.2.1", "1.2.2.1.1", "MR", t),
    ];
    let results = store.record_instances(&batch);
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(Error::DuplicateInstance(_))));
    assert!(
        matches!(results[2], Err(Error::Sqlite(_))),
        "{:?}",
        results[2]
    );
    assert!(results[3].is_ok());
    let counts = store.counts().expect("counts");
    assert_eq!((counts.studies, counts.instances), (2, 2));
    // The failed record left no trace in its study's counts.
    let study = store.study("1.2.1").expect("study").expect("present").study;
    assert_eq!(study.instance_count, 1);
}

#[test]
fn audit_rows_cannot_be_changed_or_deleted() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let id = store
        .append_audit("alice", "report_linked", Some("1.2.1"), "linked by hand")
        .expect("append");
    let update = store
        .conn()
        .execute("UPDATE audit SET detail = 'rewritten' WHERE id = ?1", [id]);
    let err = update.expect_err("UPDATE of an audit row must fail");
    assert!(err.to_string().contains("append-only"), "{err}");
    let delete = store
        .conn()
        .execute("DELETE FROM audit WHERE id = ?1", [id]);
    assert!(
        delete
            .expect_err("DELETE must fail")
            .to_string()
            .contains("append-only")
    );
    let rows = store.audit(Some("1.2.1"), None).expect("audit");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].detail, "linked by hand");
    assert_eq!(rows[0].actor, "alice");
}

#[test]
fn audit_filters_by_study_and_time() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t0 = ts(T0);
    store
        .append_audit_at(t0, "system", "a", Some("1.2.1"), "one")
        .expect("a");
    store
        .append_audit_at(t0 + 1.hour(), "system", "b", Some("1.2.2"), "two")
        .expect("b");
    store
        .append_audit_at(t0 + 2.hours(), "bob", "c", Some("1.2.1"), "three")
        .expect("c");
    store
        .append_audit_at(t0 + 3.hours(), "system", "d", None, "four")
        .expect("d");
    let actions = |rows: Vec<AuditRow>| rows.into_iter().map(|r| r.action).collect::<Vec<_>>();
    assert_eq!(
        actions(store.audit(None, None).expect("all")),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        actions(store.audit(Some("1.2.1"), None).expect("study")),
        ["a", "c"]
    );
    assert_eq!(
        actions(store.audit(None, Some(t0 + 1.hour())).expect("since")),
        ["b", "c", "d"]
    );
    assert_eq!(
        actions(
            store
                .audit(Some("1.2.1"), Some(t0 + 1.hour()))
                .expect("both")
        ),
        ["c"]
    );
}

#[test]
fn failures_and_conflicts_are_recorded_audited_and_shown_with_their_study() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t0 = ts(T0);
    store
        .record_instance(&instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", t0))
        .expect("record");
    let f1 = store
        .record_failure(&NewFailure {
            at: t0 + 1.minute(),
            calling_ae: "CT1".into(),
            source: "ed-ct".into(),
            sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.2".into()),
            sop_instance_uid: Some("1.2.01/../x".into()),
            study_uid: Some("1.2.1".into()),
            status: 0xC000,
            reason: "SOP Instance UID is not a valid UID".into(),
        })
        .expect("failure");
    let f2 = store
        .record_failure(&NewFailure {
            at: t0 + 2.minutes(),
            calling_ae: "OLDCR".into(),
            source: "unknown".into(),
            sop_class_uid: None,
            sop_instance_uid: None,
            study_uid: None,
            status: 0xA900,
            reason: "data set does not match its command".into(),
        })
        .expect("failure");
    let c = store
        .record_conflict(&NewConflict {
            at: t0 + 3.minutes(),
            sop_instance_uid: "1.2.1.1.1".into(),
            study_uid: Some("1.2.1".into()),
            calling_ae: "CT1".into(),
            existing_sha256: "0123456789abcdef".repeat(4),
            new_sha256: "f".repeat(64),
            quarantine_path: "quarantine/1.2.1.1.1.dcm".into(),
        })
        .expect("conflict");

    let failures = store.failures(None).expect("failures");
    assert_eq!(
        failures.iter().map(|f| f.id).collect::<Vec<_>>(),
        [f2, f1],
        "newest first"
    );
    assert_eq!(failures[1].status, 0xC000);
    assert_eq!(failures[1].sop_instance_uid.as_deref(), Some("1.2.01/../x"));
    assert_eq!(store.failures(Some(1)).expect("limited").len(), 1);

    let detail = store.study("1.2.1").expect("study").expect("present");
    assert_eq!(
        detail.failures.iter().map(|f| f.id).collect::<Vec<_>>(),
        [f1]
    );
    assert_eq!(detail.conflicts.len(), 1);
    assert_eq!(detail.conflicts[0].id, c);
    assert_eq!(detail.conflicts[0].new_sha256, "f".repeat(64));
    let actions: Vec<&str> = detail.audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        ["study_received", "ingest_rejected", "integrity_conflict"]
    );
    assert_eq!(
        store.counts().expect("counts"),
        Counts {
            studies: 1,
            instances: 1,
            failures: 2,
            conflicts: 1
        }
    );
    // The failure without a study is audited too.
    let all = store.audit(None, None).expect("audit");
    assert_eq!(
        all.iter().filter(|a| a.action == "ingest_rejected").count(),
        2
    );
}

#[test]
fn studies_are_filtered_by_state_and_sorted_by_deadline() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t0 = ts(T0);
    for (i, study) in ["1.2.1", "1.2.2", "1.2.3", "1.2.4"].iter().enumerate() {
        let at = t0 + (i as i64).minutes();
        store
            .record_instance(&instance(
                study,
                &format!("{study}.1"),
                &format!("{study}.1.1"),
                "CR",
                at,
            ))
            .expect("record");
    }
    // Deadlines and reports are set by later modules; set them directly here.
    let set = |sql: &str, uid: &str, at: Timestamp| {
        store
            .conn()
            .execute(sql, rusqlite::params![super::store::fmt_ts(at), uid])
            .expect("update");
    };
    set(
        "UPDATE studies SET deadline = ?1 WHERE study_uid = ?2",
        "1.2.3",
        t0 + 1.hour(),
    );
    set(
        "UPDATE studies SET deadline = ?1 WHERE study_uid = ?2",
        "1.2.4",
        t0 + 5.hours(),
    );
    set(
        "UPDATE studies SET reported_at = ?1 WHERE study_uid = ?2",
        "1.2.2",
        t0 + 30.minutes(),
    );

    let now = t0 + 2.hours();
    let uids = |state: Option<StudyState>, limit: Option<usize>| {
        store
            .studies_at(&StudyFilter { state, limit }, now)
            .expect("studies")
            .into_iter()
            .map(|s| s.study_uid)
            .collect::<Vec<_>>()
    };
    assert_eq!(uids(None, None), ["1.2.3", "1.2.4", "1.2.1", "1.2.2"]);
    assert_eq!(uids(None, Some(2)), ["1.2.3", "1.2.4"]);
    assert_eq!(uids(Some(StudyState::Overdue), None), ["1.2.3"]);
    assert_eq!(
        uids(Some(StudyState::Unreported), None),
        ["1.2.3", "1.2.4", "1.2.1"]
    );
    assert_eq!(uids(Some(StudyState::Reported), None), ["1.2.2"]);
    assert!(uids(Some(StudyState::NoReportNeeded), None).is_empty());

    let rows = store.studies(&StudyFilter::default()).expect("studies");
    let states: Vec<StudyState> = rows.iter().map(|r| r.state(now)).collect();
    assert_eq!(
        states,
        [
            StudyState::Overdue,
            StudyState::Unreported,
            StudyState::Unreported,
            StudyState::Reported
        ]
    );
    for state in [
        StudyState::Unreported,
        StudyState::Overdue,
        StudyState::Reported,
        StudyState::NoReportNeeded,
    ] {
        assert_eq!(StudyState::parse(state.as_str()), Some(state));
    }
}

/// Occupies the catalog thread until the returned sender is used (or dropped).
async fn hold(
    catalog: &Catalog,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), Error>>,
) {
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (started, is_started) = tokio::sync::oneshot::channel::<()>();
    let held = tokio::spawn({
        let catalog = catalog.clone();
        async move {
            catalog
                .call(move |_| {
                    let _ = started.send(());
                    let _ = gate.recv();
                    Ok(())
                })
                .await
        }
    });
    is_started.await.expect("the catalog thread took the gate");
    (release, held)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Waits for `condition` with a deadline instead of sleeping a fixed time.
async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
    }
}

#[test]
fn concurrent_record_instance_calls_are_group_committed() {
    let (_dir, path) = temp_db();
    let catalog = Catalog::open(&path, true).expect("open");
    runtime().block_on(async {
        // Hold the catalog thread so that all 200 requests queue up behind it;
        // then the batches are exactly 64 + 64 + 64 + 8.
        let (release, held) = hold(&catalog).await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let catalog = catalog.clone();
                let rec = instance(
                    &format!("1.2.{}", i % 10),
                    &format!("1.2.{}.{}", i % 10, i % 3),
                    &format!("1.2.{}.{}.{i}", i % 10, i % 3),
                    if i % 3 == 0 { "SR" } else { "CT" },
                    ts(T0) + (i as i64).seconds(),
                );
                tokio::spawn(async move { catalog.record_instance(rec).await })
            })
            .collect();
        wait_for("200 queued requests", || catalog.queue_depth() == 200).await;
        release.send(()).expect("release");
        held.await.expect("join").expect("gate call");
        for task in tasks {
            task.await.expect("join").expect("record_instance");
        }
        assert_eq!(catalog.group_commits(), 4);
        assert_eq!(catalog.grouped_records(), 200);

        let counts = catalog.call(|store| store.counts()).await.expect("counts");
        assert_eq!((counts.studies, counts.instances), (10, 200));
        let studies = catalog
            .call(|store| store.studies(&StudyFilter::default()))
            .await
            .expect("studies");
        for study in &studies {
            assert_eq!(study.instance_count, 20, "{}", study.study_uid);
            assert_eq!(study.series_count, 3, "{}", study.study_uid);
            assert_eq!(study.modalities, ["CT", "SR"]);
        }
    });
    catalog.shutdown();
}

#[test]
fn unpaced_concurrent_record_instance_calls_all_land() {
    let (_dir, path) = temp_db();
    let catalog = Catalog::open(&path, true).expect("open");
    runtime().block_on(async {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let catalog = catalog.clone();
                let rec = instance("1.2.1", "1.2.1.1", &format!("1.2.1.1.{i}"), "CT", ts(T0));
                tokio::spawn(async move { catalog.record_instance(rec).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("join").expect("record_instance");
        }
        // The same instance again is refused to its caller only.
        let dup = catalog
            .record_instance(instance("1.2.1", "1.2.1.1", "1.2.1.1.7", "CT", ts(T0)))
            .await;
        assert!(matches!(dup, Err(Error::DuplicateInstance(_))), "{dup:?}");
        let study = catalog
            .call(|store| store.study("1.2.1"))
            .await
            .expect("study")
            .expect("present");
        assert_eq!(study.study.instance_count, 200);
        assert_eq!(study.instances.len(), 200);
    });
    catalog.shutdown();
}

#[test]
fn the_cli_store_reads_beside_the_running_catalog() {
    let (_dir, path) = temp_db();
    let catalog = Catalog::open(&path, true).expect("open");
    let cli = Store::open(&path, true).expect("second connection");
    let before = cli.data_version().expect("data_version");
    runtime().block_on(async {
        catalog
            .record_instance(instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", ts(T0)))
            .await
            .expect("record");
    });
    assert_ne!(cli.data_version().expect("data_version"), before);
    assert!(cli.lookup_instance("1.2.1.1.1").expect("lookup").is_some());
    catalog.shutdown();
}

#[test]
fn a_panicking_call_does_not_stop_the_catalog() {
    let (_dir, path) = temp_db();
    let catalog = Catalog::open(&path, true).expect("open");
    runtime().block_on(async {
        let panicked = catalog
            .call(|store| -> Result<(), Error> {
                store.append_audit("system", "before_panic", None, "")?;
                panic!("a bug in a request");
            })
            .await;
        assert!(matches!(panicked, Err(Error::ThreadGone)), "{panicked:?}");
        let rows = catalog
            .call(|store| store.audit(None, None))
            .await
            .expect("still serving");
        assert_eq!(rows.len(), 1);
    });
    catalog.shutdown();
}

#[test]
fn close_drains_queued_requests_then_refuses_new_ones() {
    let (_dir, path) = temp_db();
    let catalog = Catalog::open(&path, true).expect("open");
    let other = catalog.clone();
    runtime().block_on(async {
        let (release, held) = hold(&catalog).await;
        let pending = tokio::spawn({
            let catalog = catalog.clone();
            async move {
                catalog
                    .record_instance(instance("1.2.1", "1.2.1.1", "1.2.1.1.1", "CT", ts(T0)))
                    .await
            }
        });
        wait_for("the record to queue", || catalog.queue_depth() == 1).await;
        let closing = tokio::spawn(catalog.close());
        wait_for("the close to queue", || other.queue_depth() == 2).await;
        release.send(()).expect("release");
        held.await.expect("join").expect("gate call");
        closing.await.expect("close");
        pending
            .await
            .expect("join")
            .expect("queued before close, so done");
        let after = other.call(|store| store.counts()).await;
        assert!(matches!(after, Err(Error::ThreadGone)), "{after:?}");
    });
    // Shutting down an already closed catalog is harmless.
    other.shutdown();
    let store = Store::open(&path, true).expect("reopen");
    assert_eq!(store.counts().expect("counts").instances, 1);
}

// --- The forward queue (catalog/forward.rs) ---------------------------------

fn forwarded(sop: &str, to: &[&str], at: Timestamp) -> NewInstance {
    NewInstance {
        forward_to: to.iter().map(|d| (*d).to_owned()).collect(),
        ..instance("1.2.3", "1.2.3.1", sop, "CT", at)
    }
}

#[test]
fn instances_are_queued_per_destination_in_their_own_transaction_and_once() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t0 = ts(T0);
    let results = store.record_instances(&[
        forwarded("1.2.3.1.1", &["pacs", "archive"], t0),
        forwarded("1.2.3.1.2", &["pacs"], t0),
        // The same SOP Instance UID again fails alone and queues nothing more.
        forwarded("1.2.3.1.1", &["pacs", "archive"], t0),
    ]);
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(matches!(results[2], Err(Error::DuplicateInstance(_))));
    let due = store.forward_due("pacs", t0, 10).expect("due");
    let uids: Vec<&str> = due.iter().map(|i| i.sop_instance_uid.as_str()).collect();
    assert_eq!(uids, ["1.2.3.1.1", "1.2.3.1.2"]);
    assert_eq!(due[0].rel_path, "1.2.3/1.2.3.1/1.2.3.1.1.dcm");
    assert_eq!(due[0].transfer_syntax, "1.2.840.10008.1.2.1");
    assert_eq!(store.forward_due("archive", t0, 10).expect("due").len(), 1);
    assert!(store.forward_due("other", t0, 10).expect("due").is_empty());
    let mut pending = store.forward_pending().expect("pending");
    pending.sort();
    assert_eq!(pending, [("archive".to_owned(), 1), ("pacs".to_owned(), 2)]);
}

#[test]
fn a_failed_instance_record_leaves_no_queue_row() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t0 = ts(T0);
    store
        .record_instance(&forwarded("1.2.3.1.1", &["pacs"], t0))
        .expect("first");
    // Same series under another study: refused, and its queue row with it.
    let mut other = forwarded("1.2.3.1.9", &["pacs"], t0);
    other.study_uid = "9.9.9".into();
    assert!(store.record_instance(&other).is_err());
    assert_eq!(
        store.forward_state("pacs", "1.2.3.1.9").expect("state"),
        None
    );
    assert_eq!(store.forward_due("pacs", t0, 10).expect("due").len(), 1);
}

#[test]
fn outcomes_move_rows_and_retry_makes_them_due() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t0 = ts(T0);
    for sop in ["1.2.3.1.1", "1.2.3.1.2", "1.2.3.1.3"] {
        store
            .record_instance(&forwarded(sop, &["pacs"], t0))
            .expect("record");
    }
    let later = t0 + 60.seconds();
    store
        .record_forward_outcomes(
            "pacs",
            &[
                ForwardOutcome::Sent {
                    sop_instance_uid: "1.2.3.1.1".into(),
                    status: 0,
                },
                ForwardOutcome::Retry {
                    sop_instance_uid: "1.2.3.1.2".into(),
                    status: None,
                    error: "connection refused".into(),
                    next_attempt_at: later,
                },
                ForwardOutcome::Failed {
                    sop_instance_uid: "1.2.3.1.3".into(),
                    status: None,
                    error: "SOP class not accepted".into(),
                },
            ],
            false,
            t0,
        )
        .expect("outcomes");
    assert_eq!(
        store.forward_state("pacs", "1.2.3.1.1").expect("state"),
        Some(("sent".to_owned(), 1))
    );
    assert!(store.forward_due("pacs", t0, 10).expect("due").is_empty());
    assert_eq!(store.forward_next_due("pacs").expect("next"), Some(later));
    let due = store.forward_due("pacs", later, 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);

    let status = store.forward_status(t0).expect("status");
    assert_eq!(status.len(), 1);
    let s = &status[0];
    assert_eq!((s.pending, s.waiting, s.sent, s.failed), (1, 1, 1, 1));
    assert_eq!(s.oldest_pending, Some(t0));
    assert!(s.last_error.is_some());

    // A sent row is final: a late outcome for it changes nothing.
    store
        .record_forward_outcomes(
            "pacs",
            &[ForwardOutcome::Failed {
                sop_instance_uid: "1.2.3.1.1".into(),
                status: Some(0xA700),
                error: "late".into(),
            }],
            false,
            t0,
        )
        .expect("outcomes");
    assert_eq!(
        store.forward_state("pacs", "1.2.3.1.1").expect("state"),
        Some(("sent".to_owned(), 1))
    );

    let changed = store
        .forward_retry(Some("pacs"), "alice", t0)
        .expect("retry");
    assert_eq!(changed, 2);
    assert_eq!(store.forward_due("pacs", t0, 10).expect("due").len(), 2);
    let audit = store.audit(None, None).expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "forward_retry" && a.actor == "alice"),
        "{audit:?}"
    );
}

#[test]
fn a_late_instance_makes_a_stable_study_unstable_and_is_judged_anew() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let t0 = ts(T0);
    store
        .record_instance(&instance("1.2.7", "1.2.7.1", "1.2.7.1.1", "CT", t0))
        .expect("record");
    let later = t0 + 60.seconds();
    let settling = store.settling(later, None, 10).expect("settling");
    assert_eq!(settling.len(), 1);
    assert_eq!(settling[0].last_received_at, t0);
    assert!(store.mark_stable("1.2.7", t0, true, later).expect("stable"));
    assert!(
        store
            .settling(later, None, 10)
            .expect("settling")
            .is_empty()
    );
    assert_eq!(store.completeness_due(10).expect("due").len(), 1);

    // A late instance: unstable again; a judgement made on the old last
    // instance no longer applies.
    let late = t0 + 90.seconds();
    store
        .record_instance(&instance("1.2.7", "1.2.7.1", "1.2.7.1.2", "CT", late))
        .expect("late");
    assert!(
        !store
            .mark_stable("1.2.7", t0, true, late)
            .expect("stale judgement")
    );
    assert_eq!(
        store
            .study("1.2.7")
            .expect("study")
            .expect("row")
            .transfer
            .stable_at,
        None
    );
    let settling = store
        .settling(late + 60.seconds(), None, 10)
        .expect("settling");
    assert_eq!(settling[0].last_received_at, late);
    // Pages walk past the first page.
    store
        .record_instance(&instance("1.2.8", "1.2.8.1", "1.2.8.1.1", "CT", late))
        .expect("another");
    let first = store
        .settling(late + 60.seconds(), None, 1)
        .expect("page 1");
    let second = store
        .settling(late + 60.seconds(), first.last(), 1)
        .expect("page 2");
    assert_eq!(first.len() + second.len(), 2);
    assert_ne!(first[0].study_uid, second[0].study_uid);
}

// --- Senders' clocks (catalog/clock.rs) ---------------------------------------

fn reading(sender: &str, received: &str, ahead_secs: i64) -> ClockReading {
    let received_at = ts(received);
    ClockReading {
        via: "dicom",
        sender: sender.into(),
        sender_time: received_at + jiff::SignedDuration::from_secs(ahead_secs),
        received_at,
        threshold: Duration::from_secs(300),
    }
}

fn timed(sop: &str, clock: ClockReading) -> NewInstance {
    NewInstance {
        received_at: clock.received_at,
        clock: Some(clock),
        ..instance("1.2.9", "1.2.9.1", sop, "CT", ts(T0))
    }
}

#[test]
fn a_clock_ahead_is_recorded_with_its_instance_until_a_later_reading_is_back_in_line() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let five_min = Duration::from_secs(300);
    let day_before = |t: &str| ts(t) - jiff::SignedDuration::from_hours(24);

    // Two hours ahead: recorded, and ahead.
    store
        .record_instance(&timed(
            "1.2.9.1.1",
            reading("CT1", "2026-11-22T10:00:00Z", 7200),
        ))
        .expect("store");
    let ahead = store
        .clocks_ahead(day_before("2026-11-22T10:00:00Z"), five_min)
        .expect("ahead");
    assert_eq!(ahead.len(), 1);
    assert_eq!(
        (ahead[0].sender.as_str(), ahead[0].ahead_ms),
        ("CT1", 7_200_000)
    );
    assert_eq!(ahead[0].sender_time, ts("2026-11-22T12:00:00Z"));
    // Older than the window asked for: not reported.
    assert!(
        store
            .clocks_ahead(ts("2026-11-22T10:00:01Z"), five_min)
            .expect("ahead")
            .is_empty()
    );
    // Under a larger threshold it is not ahead "by more than" it.
    assert!(
        store
            .clocks_ahead(ts(T0), Duration::from_secs(7200))
            .expect("ahead")
            .is_empty()
    );

    // An earlier reading arriving late does not replace the latest.
    store
        .record_instance(&timed(
            "1.2.9.1.2",
            reading("CT1", "2026-11-22T09:00:00Z", -60),
        ))
        .expect("store");
    assert_eq!(
        store.clocks_ahead(ts(T0), five_min).expect("ahead").len(),
        1
    );

    // A later reading within the threshold replaces it: no longer ahead.
    store
        .record_instance(&timed(
            "1.2.9.1.3",
            reading("CT1", "2026-11-22T10:30:00Z", 120),
        ))
        .expect("store");
    assert!(
        store
            .clocks_ahead(ts(T0), five_min)
            .expect("ahead")
            .is_empty()
    );
    let rows = store.clock_readings().expect("readings");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].received_at, rows[0].ahead_ms),
        (ts("2026-11-22T10:30:00Z"), 120_000)
    );

    // In line after in line within the hour: nothing to write, the row stays.
    store
        .record_instance(&timed(
            "1.2.9.1.4",
            reading("CT1", "2026-11-22T10:40:00Z", -5),
        ))
        .expect("store");
    let rows = store.clock_readings().expect("readings");
    assert_eq!(rows[0].received_at, ts("2026-11-22T10:30:00Z"));
    // After an hour it is refreshed.
    store
        .record_instance(&timed(
            "1.2.9.1.5",
            reading("CT1", "2026-11-22T11:31:00Z", -5),
        ))
        .expect("store");
    let rows = store.clock_readings().expect("readings");
    assert_eq!(
        (rows[0].received_at, rows[0].ahead_ms),
        (ts("2026-11-22T11:31:00Z"), -5000)
    );

    // Senders are kept apart, and a refused instance records nothing.
    store
        .record_instance(&timed(
            "1.2.9.1.6",
            reading("MR2", "2026-11-22T11:32:00Z", 900),
        ))
        .expect("store");
    let refused = timed("1.2.9.1.6", reading("US3", "2026-11-22T11:33:00Z", 900));
    assert!(matches!(
        store.record_instance(&refused),
        Err(Error::DuplicateInstance(_))
    ));
    let senders: Vec<String> = store
        .clock_readings()
        .expect("readings")
        .into_iter()
        .map(|r| r.sender)
        .collect();
    assert_eq!(senders, ["CT1", "MR2"]);
}

// --- Rules coverage (catalog/coverage.rs) --------------------------------------

#[test]
fn coverage_counts_studies_by_modality_source_and_recorded_rule() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path, true).expect("open");
    let at = ts(T0);
    let from = |source: &str, rec: NewInstance| NewInstance {
        source: source.into(),
        ..rec
    };
    // A CT+SR study, a CT study, an MR study and one without a modality from
    // "ed"; a CT study from "trust-b"; and an old CT study outside the window.
    for rec in [
        from("ed", instance("1.1", "1.1.1", "1.1.1.1", "CT", at)),
        from("ed", instance("1.1", "1.1.2", "1.1.2.1", "SR", at)),
        from("ed", instance("1.2", "1.2.1", "1.2.1.1", "CT", at)),
        from("ed", instance("1.3", "1.3.1", "1.3.1.1", "MR", at)),
        from(
            "ed",
            NewInstance {
                modality: None,
                ..instance("1.4", "1.4.1", "1.4.1.1", "", at)
            },
        ),
        from("trust-b", instance("1.5", "1.5.1", "1.5.1.1", "CT", at)),
        from(
            "ed",
            instance("1.6", "1.6.1", "1.6.1.1", "CT", ts("2026-01-01T00:00:00Z")),
        ),
    ] {
        store.record_instance(&rec).expect("store");
    }
    let decided = |uid: &str, rule: Option<&str>, no_report_needed: bool| DeadlineUpdate {
        study_uid: uid.into(),
        rule: rule.map(str::to_owned),
        no_report_needed,
        deadline: (!no_report_needed).then_some(at),
    };
    store
        .set_deadlines(&[
            decided("1.1", Some("ED CT"), false),
            decided("1.2", Some("ED CT"), false),
            decided("1.3", None, false),
            decided("1.5", Some("imports"), true),
        ])
        .expect("deadlines");
    let got = store
        .coverage(ts("2026-11-01T00:00:00Z"))
        .expect("coverage");
    let got: Vec<_> = got
        .iter()
        .map(|r| {
            (
                r.modality.as_deref(),
                r.source.as_str(),
                r.rule.as_deref(),
                r.no_report_needed,
                r.evaluated,
                r.studies,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("CT"), "ed", Some("ED CT"), false, true, 2),
            (Some("CT"), "trust-b", Some("imports"), true, true, 1),
            (Some("MR"), "ed", None, false, true, 1),
            (Some("SR"), "ed", Some("ED CT"), false, true, 1),
            (None, "ed", None, false, false, 1),
        ]
    );
}
