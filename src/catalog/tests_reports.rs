//! Unit tests of reports, orders and linking in the catalog.

use jiff::Timestamp;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("catalog.sqlite"), false).expect("open");
    (dir, store)
}

/// An instance of `study` (one series per study) with an accession and a
/// patient ID.
fn image(study: &str, sop: &str, accession: &str, patient: &str, at: &str) -> NewInstance {
    NewInstance {
        study_uid: study.into(),
        series_uid: format!("{study}.1"),
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        patient_id: Some(patient.into()),
        issuer_of_patient_id: None,
        accession_number: Some(accession.into()).filter(|a: &String| !a.is_empty()),
        issuer_of_accession: None,
        modality: Some("CT".into()),
        study_date: Some("20261120".into()),
        study_time: Some("101500".into()),
        study_description: None,
        referring_physician: None,
        institution_name: None,
        series_number: Some(1),
        series_description: None,
        size_bytes: 10,
        sha256: "ab".repeat(32),
        rel_path: format!("{study}/{sop}.dcm"),
        received_at: ts(at),
        calling_ae: "CT1".into(),
        source: "ct".into(),
        report: None,
        attributes: vec![],
        forward_to: vec![],
        clock: None,
    }
}

fn report(status: ReportStatus, at: &str) -> NewReport {
    NewReport {
        origin: ReportOrigin::Hl7,
        received_at: ts(at),
        status,
        withdrawn: false,
        reported_at: Some(ts(at)),
        exam_at: None,
        author: Some("Dr Reporter".into()),
        accession_number: None,
        issuer_of_accession: None,
        study_uids: vec![],
        placer_number: None,
        filler_number: None,
        patient_ids: vec![PatientId {
            id: "H1".into(),
            authority: Some("RXX".into()),
            kind: Some("MR".into()),
        }],
        procedure: None,
        text: Some("No acute abnormality.".into()),
        alert_category: None,
        sop_instance_uid: None,
        recorded_by: None,
    }
}

fn message(control_id: &str, at: &str) -> NewHl7Message {
    NewHl7Message {
        received_at: ts(at),
        peer: "127.0.0.1:5000".into(),
        sending_application: "RIS".into(),
        sending_facility: "HOSP".into(),
        control_id: control_id.into(),
        message_type: "ORU^R01".into(),
        version: "2.4".into(),
        raw: b"MSH|^~\\&|RIS|HOSP".to_vec(),
        raw_truncated: false,
        ack_code: "AA".into(),
        ack_reason: "stored".into(),
        clock: None,
    }
}

fn study(store: &Store, uid: &str) -> StudyRow {
    store.study(uid).expect("study").expect("exists").study
}

fn actions(store: &Store, uid: &str) -> Vec<String> {
    store
        .audit(Some(uid), None)
        .expect("audit")
        .into_iter()
        .map(|a| a.action)
        .collect()
}

#[test]
fn a_report_before_its_images_links_when_they_arrive() {
    let (_dir, mut store) = open();
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.study_uids = vec!["1.2.3".into()];
    let (id, links) = store.record_report(&r).expect("record");
    assert!(links.is_empty());
    assert_eq!(store.unmatched_reports(None).expect("unmatched")[0].id, id);

    store
        .record_instance(&image(
            "1.2.3",
            "1.2.3.1.1",
            "",
            "H1",
            "2026-11-20T13:00:00Z",
        ))
        .expect("image");
    let s = study(&store, "1.2.3");
    assert_eq!(s.reported_at, Some(ts("2026-11-20T12:00:00Z")));
    assert_eq!(s.report_status.as_deref(), Some("final"));
    assert!(store.unmatched_reports(None).expect("unmatched").is_empty());
    let detail = store.study("1.2.3").expect("detail").expect("exists");
    assert_eq!(detail.reports.len(), 1);
    assert_eq!(detail.reports[0].links[0].rule, LinkRule::StudyUid);
    assert!(actions(&store, "1.2.3").contains(&"study_reported".to_owned()));
}

#[test]
fn one_accession_links_every_study_that_carries_it() {
    let (_dir, mut store) = open();
    for (uid, sop) in [("1.2.10", "1.2.10.1.1"), ("1.2.11", "1.2.11.1.1")] {
        store
            .record_instance(&image(uid, sop, "ACC7", "H1", "2026-11-20T10:00:00Z"))
            .expect("image");
    }
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.accession_number = Some("ACC7".into());
    let (_, links) = store.record_report(&r).expect("record");
    let mut linked: Vec<_> = links.iter().map(|l| l.study_uid.as_str()).collect();
    linked.sort_unstable();
    assert_eq!(linked, ["1.2.10", "1.2.11"]);
    assert!(links.iter().all(|l| l.rule == LinkRule::Accession));
    assert!(study(&store, "1.2.11").reported_at.is_some());
}

#[test]
fn a_different_patient_id_refuses_the_link_and_says_so() {
    let (_dir, mut store) = open();
    store
        .record_instance(&image(
            "1.2.20",
            "1.2.20.1.1",
            "ACC1",
            "OTHER",
            "2026-11-20T10:00:00Z",
        ))
        .expect("image");
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.accession_number = Some("ACC1".into());
    let (_, links) = store.record_report(&r).expect("record");
    assert!(links.is_empty());
    assert!(study(&store, "1.2.20").reported_at.is_none());
    assert!(actions(&store, "1.2.20").contains(&"report_link_refused".to_owned()));
    assert_eq!(store.unmatched_reports(None).expect("unmatched").len(), 1);
}

#[test]
fn a_patient_id_from_another_issuer_is_another_patient() {
    let (_dir, mut store) = open();
    // The report's patient is H1 issued by RXX (see `report`).
    for (uid, issuer) in [
        ("1.2.21", Some("RXX")),
        ("1.2.22", Some("RXY")),
        ("1.2.23", None),
    ] {
        let mut i = image(
            uid,
            &format!("{uid}.1.1"),
            "ACC21",
            "H1",
            "2026-11-20T10:00:00Z",
        );
        i.issuer_of_patient_id = issuer.map(str::to_owned);
        store.record_instance(&i).expect("image");
    }
    assert_eq!(
        study(&store, "1.2.22").issuer_of_patient_id.as_deref(),
        Some("RXY")
    );
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.accession_number = Some("ACC21".into());
    let (_, links) = store.record_report(&r).expect("record");
    let mut linked: Vec<&str> = links.iter().map(|l| l.study_uid.as_str()).collect();
    linked.sort_unstable();
    assert_eq!(
        linked,
        ["1.2.21", "1.2.23"],
        "a side without an issuer matches any"
    );
    assert!(study(&store, "1.2.22").reported_at.is_none());
    assert!(actions(&store, "1.2.22").contains(&"report_link_refused".to_owned()));

    // A probable link (patient ID and date) compares issuers too.
    store.set_link_policy(LinkPolicy {
        probable: true,
        ..LinkPolicy::default()
    });
    let mut i = image("1.2.24", "1.2.24.1.1", "", "H1", "2026-11-20T10:00:00Z");
    i.issuer_of_patient_id = Some("RXY".into());
    store.record_instance(&i).expect("image");
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.exam_at = Some(ts("2026-11-20T09:00:00Z"));
    let (_, links) = store.record_report(&r).expect("record");
    let linked: Vec<&str> = links.iter().map(|l| l.study_uid.as_str()).collect();
    assert!(!linked.contains(&"1.2.24"), "{linked:?}");
    r.patient_ids[0].authority = Some("RXY".into());
    let (_, links) = store.record_report(&r).expect("record");
    assert!(
        links.iter().any(|l| l.study_uid == "1.2.24" && l.probable),
        "{links:?}"
    );
}

#[test]
fn an_order_bridges_a_report_that_has_only_order_numbers() {
    let (_dir, mut store) = open();
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.placer_number = Some("PL1".into());
    let (id, _) = store.record_report(&r).expect("report");
    store
        .record_instance(&image(
            "1.2.30",
            "1.2.30.1.1",
            "ACC30",
            "H1",
            "2026-11-20T10:00:00Z",
        ))
        .expect("image");
    assert!(study(&store, "1.2.30").reported_at.is_none());

    let order = NewOrder {
        placer_number: Some("PL1".into()),
        filler_number: Some("FL1".into()),
        accession_number: Some("ACC30".into()),
        patient_class: Some("I".into()),
        priority: Some("S".into()),
        ..NewOrder::default()
    };
    let mut msg = message("ORM1", "2026-11-20T12:30:00Z");
    msg.message_type = "ORM^O01".into();
    let out = store
        .record_hl7(&msg, &Hl7Content::Orders(vec![order]))
        .expect("order");
    assert_eq!(out.links.len(), 1);
    assert_eq!(out.links[0].report_id, id);
    assert_eq!(out.links[0].rule, LinkRule::Order);
    assert!(study(&store, "1.2.30").reported_at.is_some());
}

#[test]
fn later_reports_supersede_earlier_ones_of_the_same_request() {
    let (_dir, mut store) = open();
    store
        .record_instance(&image(
            "1.2.40",
            "1.2.40.1.1",
            "ACC40",
            "H1",
            "2026-11-20T10:00:00Z",
        ))
        .expect("image");
    let with_acc = |status, at| {
        let mut r = report(status, at);
        r.accession_number = Some("ACC40".into());
        r
    };
    store
        .record_report(&with_acc(ReportStatus::Preliminary, "2026-11-20T11:00:00Z"))
        .expect("prelim");
    let s = study(&store, "1.2.40");
    assert_eq!(
        (s.reported_at, s.report_status.as_deref()),
        (None, Some("preliminary"))
    );

    store
        .record_report(&with_acc(ReportStatus::Final, "2026-11-20T12:00:00Z"))
        .expect("final");
    store
        .record_report(&with_acc(ReportStatus::Corrected, "2026-11-20T15:00:00Z"))
        .expect("corrected");
    let s = study(&store, "1.2.40");
    // The clock stopped at the first final report; the correction keeps it stopped.
    assert_eq!(s.reported_at, Some(ts("2026-11-20T12:00:00Z")));
    assert_eq!(s.report_status.as_deref(), Some("corrected"));

    let mut withdrawn = with_acc(ReportStatus::Final, "2026-11-20T16:00:00Z");
    withdrawn.withdrawn = true;
    store.record_report(&withdrawn).expect("withdrawn");
    let s = study(&store, "1.2.40");
    assert_eq!(
        (s.reported_at, s.report_status.as_deref()),
        (None, Some("withdrawn"))
    );
    let audit = actions(&store, "1.2.40");
    assert!(audit.contains(&"study_reopened".to_owned()), "{audit:?}");

    let reports = store.reports_of_study("1.2.40").expect("reports");
    assert_eq!(reports.len(), 4);
    assert_eq!(
        reports.iter().filter(|r| r.superseded_by.is_none()).count(),
        1
    );
}

#[test]
fn a_cancelled_order_on_a_study_with_images_is_left_for_a_person() {
    let (_dir, mut store) = open();
    store
        .record_instance(&image(
            "1.2.50",
            "1.2.50.1.1",
            "ACC50",
            "H1",
            "2026-11-20T10:00:00Z",
        ))
        .expect("image");
    let mut r = report(ReportStatus::Cancelled, "2026-11-20T11:00:00Z");
    r.accession_number = Some("ACC50".into());
    store.record_report(&r).expect("cancel");
    let s = study(&store, "1.2.50");
    assert_eq!(
        (s.reported_at, s.report_status.as_deref()),
        (None, Some("cancelled"))
    );
    assert_eq!(s.state(ts("2026-11-20T12:00:00Z")), StudyState::Unreported);
    assert!(actions(&store, "1.2.50").contains(&"order_cancelled".to_owned()));
}

#[test]
fn probable_links_are_made_only_when_enabled_and_count_only_when_confirmed() {
    let (_dir, mut store) = open();
    store
        .record_instance(&image(
            "1.2.60",
            "1.2.60.1.1",
            "",
            "H1",
            "2026-11-20T10:00:00Z",
        ))
        .expect("image");
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.exam_at = Some(ts("2026-11-20T09:00:00Z"));
    let (_, links) = store.record_report(&r).expect("no policy");
    assert!(links.is_empty());

    store.set_link_policy(LinkPolicy {
        probable: true,
        ..LinkPolicy::default()
    });
    let (id, links) = store.record_report(&r).expect("with policy");
    assert_eq!(links.len(), 1);
    assert!(links[0].probable);
    assert_eq!(links[0].rule, LinkRule::PatientDate);
    assert!(study(&store, "1.2.60").reported_at.is_none());
    // Still listed as unmatched, with its probable link, until a person decides.
    let unmatched = store.unmatched_reports(None).expect("unmatched");
    assert!(unmatched.iter().any(|u| u.id == id && u.links.len() == 1));

    assert!(
        store
            .decide_link(id, "1.2.60", true, "alice", ts("2026-11-20T13:00:00Z"))
            .expect("confirm")
    );
    assert!(study(&store, "1.2.60").reported_at.is_some());
    assert!(
        !store
            .unmatched_reports(None)
            .expect("unmatched")
            .iter()
            .any(|u| u.id == id)
    );
    let audit = store.audit(Some("1.2.60"), None).expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "link_confirmed" && a.actor == "alice")
    );
}

#[test]
fn an_accepted_hl7_message_is_processed_once() {
    let (_dir, mut store) = open();
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.accession_number = Some("ACC70".into());
    let msg = message("MSG70", "2026-11-20T12:00:00Z");
    let first = store
        .record_hl7(&msg, &Hl7Content::Reports(vec![r.clone()]))
        .expect("first");
    assert!(!first.duplicate);
    assert_eq!(first.report_ids.len(), 1);
    let again = store
        .record_hl7(&msg, &Hl7Content::Reports(vec![r.clone()]))
        .expect("again");
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    assert!(again.report_ids.is_empty());
    assert_eq!(store.unmatched_reports(None).expect("unmatched").len(), 1);

    // A refused message with the same key does not block a corrected resend
    // with a new key, and is itself kept.
    let mut refused = message("MSG71", "2026-11-20T12:01:00Z");
    refused.ack_code = "AE".into();
    for _ in 0..2 {
        let out = store
            .record_hl7(&refused, &Hl7Content::Nothing)
            .expect("refused");
        assert!(!out.duplicate);
    }
}

#[test]
fn grouped_writes_share_a_transaction_and_fail_alone() {
    let (_dir, mut store) = open();
    store.conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
    let mut r = report(ReportStatus::Final, "2026-11-20T12:00:00Z");
    r.accession_number = Some("ACC80".into());
    store.record_report(&r).expect("inside the group");
    let bad = store.write(|conn| {
        conn.execute("INSERT INTO audit (at) VALUES ('x')", [])?;
        Ok(())
    });
    assert!(bad.is_err());
    store.conn.execute_batch("COMMIT").expect("commit");
    assert_eq!(store.unmatched_reports(None).expect("unmatched").len(), 1);
}

#[test]
fn a_version_1_catalog_is_migrated_with_its_studies_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("catalog.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("open v1");
        conn.execute_batch(super::schema::V1).expect("v1 schema");
        conn.execute_batch(
            "INSERT INTO studies (study_uid, accession_number, source, calling_ae, \
             first_received_at, last_received_at) VALUES ('1.2.90', 'ACC90', 'ct', 'CT1', \
             '2026-11-20T10:00:00.000000Z', '2026-11-20T10:00:00.000000Z'); \
             PRAGMA user_version = 1;",
        )
        .expect("v1 data");
    }
    let mut store = Store::open(&path, false).expect("migrate");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let s = study(&store, "1.2.90");
    assert_eq!((s.reported_at, s.report_status), (None, None));
    // A report links to a study that was received before the upgrade.
    let mut r = report(ReportStatus::Final, "2026-11-21T09:00:00Z");
    r.accession_number = Some("ACC90".into());
    r.patient_ids.clear();
    let (_, links) = store.record_report(&r).expect("report");
    assert_eq!(links.len(), 1);
}

#[test]
fn grouped_calls_land_together_and_a_failing_one_fails_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("catalog.sqlite");
    let catalog = Catalog::open(&path, true).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results: Vec<Result<Hl7Recorded, Error>> = rt.block_on(async {
        let calls = (0..40).map(|i| {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                catalog
                    .call_grouped(move |store| {
                        if i == 7 {
                            // Writes, then fails: its write must be undone alone.
                            store.record_hl7(
                                &message("BAD", "2026-11-20T12:00:00Z"),
                                &Hl7Content::Nothing,
                            )?;
                            return Err(Error::GroupAborted);
                        }
                        store.record_hl7(
                            &message(&format!("M{i}"), "2026-11-20T12:00:00Z"),
                            &Hl7Content::Nothing,
                        )
                    })
                    .await
            })
        });
        let mut out = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            out.push(call.await.expect("join"));
        }
        out
    });
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    catalog.shutdown();
    let store = Store::open(&path, true).expect("reopen");
    let n: i64 = store
        .conn
        .query_row("SELECT count(*) FROM hl7_messages", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 39);
    let bad: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM hl7_messages WHERE control_id = 'BAD'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(bad, 0);
}

#[test]
fn an_hl7_message_records_its_senders_clock_but_a_duplicate_does_not() {
    let (_dir, mut store) = open();
    let reading = |at: &str, ahead: i64| ClockReading {
        via: "hl7",
        sender: "RIS^HOSP".into(),
        sender_time: ts(at) + jiff::SignedDuration::from_secs(ahead),
        received_at: ts(at),
        threshold: std::time::Duration::from_secs(300),
    };
    let msg = NewHl7Message {
        clock: Some(reading("2026-11-22T10:00:00Z", 7200)),
        ..message("C1", "2026-11-22T10:00:00Z")
    };
    store
        .record_hl7(&msg, &Hl7Content::Nothing)
        .expect("record");
    let rows = store.clock_readings().expect("readings");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].via.as_str(), rows[0].sender.as_str()),
        ("hl7", "RIS^HOSP")
    );
    assert_eq!(rows[0].ahead_ms, 7_200_000);

    // The same message again (same key): acknowledged, not processed, and its
    // MSH-7 is not a new reading.
    let again = NewHl7Message {
        clock: Some(reading("2026-11-22T11:00:00Z", 0)),
        ..message("C1", "2026-11-22T11:00:00Z")
    };
    assert!(
        store
            .record_hl7(&again, &Hl7Content::Nothing)
            .expect("record")
            .duplicate
    );
    assert_eq!(
        store.clock_readings().expect("readings")[0].ahead_ms,
        7_200_000
    );

    // A new message in line replaces it.
    let next = NewHl7Message {
        clock: Some(reading("2026-11-22T11:00:00Z", -3)),
        ..message("C2", "2026-11-22T11:00:00Z")
    };
    store
        .record_hl7(&next, &Hl7Content::Nothing)
        .expect("record");
    assert_eq!(store.clock_readings().expect("readings")[0].ahead_ms, -3000);
}
