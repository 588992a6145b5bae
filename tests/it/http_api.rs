//! The JSON API under `/api/`, driven through the router with no socket:
//! every endpoint, its errors (always JSON naming what is wrong), keyset
//! pagination over the worklist, and writes refused without a signed-in
//! actor or made under the actor's name.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::Digest;
use studywatch::catalog::{
    AlarmUpdate, DeadlineUpdate, LinkPolicy, NewAlarm, NewInstance, NewReport, PatientId,
    ReportOrigin, ReportStatus, Store,
};

use crate::web::{Answer, WebApp};

/// The API token of the test's only token holder.
const TOKEN: &str = "api-test-token-4f1c9e0b7d2a";
const HOLDER: &str = "ris.bridge";

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

/// The clock every request sees (WebApp pins it).
const NOW: &str = "2026-11-23T10:00:00Z";

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

/// The dashboard user of the session tests, and their password.
const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

/// An Argon2id hash with the smallest parameters, so that signing in costs
/// little in a debug build.
fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"api test salt 16").expect("salt");
    argon
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

/// A web app whose tokens file names [`HOLDER`] with [`TOKEN`], and whose
/// users file names [`USER`].
struct Api {
    app: WebApp,
    _secrets: tempfile::TempDir,
}

impl Api {
    fn new() -> Api {
        let secrets = tempfile::tempdir().expect("temp dir");
        let tokens = secrets.path().join("tokens");
        let digest = hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()));
        std::fs::write(&tokens, format!("{HOLDER}:{digest}\n")).expect("tokens file");
        let users = secrets.path().join("users");
        std::fs::write(&users, format!("{USER}:{}\n", cheap_hash(PASSWORD))).expect("users file");
        let app = WebApp::new(
            &format!(
                "tokens_file = \"{}\"\nusers_file = \"{}\"",
                tokens.display(),
                users.display()
            ),
            "",
        );
        assert_eq!(app.now(), ts(NOW));
        Api {
            app,
            _secrets: secrets,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.app.get(path, &[]).await
    }

    /// A POST with the bearer token.
    async fn post(&self, path: &str, body: &Value) -> Answer {
        let auth = bearer();
        self.app
            .post_json(path, body, &[("authorization", auth.as_str())])
            .await
    }

    fn store(&self) -> Store {
        self.app.store()
    }
}

/// Asserts an error answer: the status, a JSON body with that status, and a
/// message containing `mentions`.
fn assert_error(answer: &Answer, status: StatusCode, mentions: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(
        answer
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "an error is JSON: {:?} {}",
        answer.header("content-type"),
        answer.body
    );
    let body = answer.json();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.contains(mentions),
        "the message should mention {mentions:?}: {message}"
    );
}

/// One study's single instance.
struct Seed<'a> {
    n: u32,
    modality: &'a str,
    source: &'a str,
    accession: Option<&'a str>,
    patient_id: Option<&'a str>,
    received_at: Timestamp,
}

fn uid(n: u32) -> String {
    format!("1.2.826.0.1.3680043.10.77.{n}")
}

impl Seed<'_> {
    fn instance(&self) -> NewInstance {
        let study = uid(self.n);
        NewInstance {
            study_uid: study.clone(),
            series_uid: format!("{study}.1"),
            sop_instance_uid: format!("{study}.1.1"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            patient_id: self.patient_id.map(str::to_owned),
            issuer_of_patient_id: None,
            accession_number: self.accession.map(str::to_owned),
            issuer_of_accession: None,
            modality: Some(self.modality.into()),
            study_date: Some("20261123".into()),
            study_time: None,
            study_description: None,
            referring_physician: None,
            institution_name: None,
            series_number: Some(1),
            series_description: None,
            size_bytes: 1024,
            sha256: "ab".repeat(32),
            rel_path: format!("{study}/1/1.dcm"),
            received_at: self.received_at,
            calling_ae: "CT1".into(),
            source: self.source.into(),
            report: None,
            attributes: vec![],
            forward_to: vec![],
            clock: None,
        }
    }
}

fn record(store: &mut Store, seed: Seed<'_>) -> String {
    store.record_instance(&seed.instance()).expect("record");
    uid(seed.n)
}

fn set_deadline(store: &mut Store, study: &str, deadline: Option<Timestamp>, no_report: bool) {
    store
        .set_deadlines(&[DeadlineUpdate {
            study_uid: study.to_owned(),
            rule: Some("test rule".into()),
            no_report_needed: no_report,
            deadline,
        }])
        .expect("deadline");
}

fn report(accession: Option<&str>, status: ReportStatus) -> NewReport {
    NewReport {
        origin: ReportOrigin::Hl7,
        received_at: ts(NOW) - hours(1),
        status,
        withdrawn: false,
        reported_at: Some(ts(NOW) - hours(1)),
        exam_at: None,
        author: Some("Dr Reporter".into()),
        accession_number: accession.map(str::to_owned),
        issuer_of_accession: None,
        study_uids: vec![],
        placer_number: None,
        filler_number: None,
        patient_ids: vec![],
        procedure: None,
        text: None,
        alert_category: None,
        sop_instance_uid: None,
        recorded_by: None,
    }
}

fn overdue_alarm(store: &mut Store, study: &str, raised: Timestamp) -> i64 {
    store
        .raise_alarm(
            &NewAlarm {
                kind: "overdue_report".into(),
                subject: study.to_owned(),
                study_uid: Some(study.to_owned()),
                report_id: None,
                rule: Some("test rule".into()),
                due_at: raised - hours(1),
                detail: format!("study {study} is overdue"),
                next_action_at: Some(raised + hours(1)),
            },
            raised,
        )
        .expect("raise")
        .expect("a new alarm")
}

fn resolve(store: &mut Store, id: i64) {
    store
        .update_alarm(
            &AlarmUpdate {
                id,
                state: "resolved".into(),
                next_step: 0,
                next_action_at: None,
                acknowledged_until: None,
                resolved_reason: Some("reported".into()),
                audit: vec![],
                notifications: vec![],
            },
            ts(NOW) - hours(1),
        )
        .expect("resolve");
}

fn uids(page: &Value) -> Vec<String> {
    page["studies"]
        .as_array()
        .expect("studies array")
        .iter()
        .map(|s| s["study_uid"].as_str().expect("uid").to_owned())
        .collect()
}

/// Walks `/api/studies` with `query` page by page, returning every UID in
/// the order received and the number of pages.
async fn walk(api: &Api, query: &str) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for page_no in 1..=200 {
        let path = match &cursor {
            Some(c) => format!("/api/studies?{query}&cursor={c}"),
            None => format!("/api/studies?{query}"),
        };
        let answer = api.get(&path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        let page = answer.json();
        all.extend(uids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(page["next_cursor"].is_null());
                return (all, page_no);
            }
        }
    }
    panic!("pagination of {query} did not end");
}

/// 23 unreported studies: deadlines with ties (same deadline, different
/// receipt; same deadline and receipt, told apart by UID only), some
/// overdue, some without a deadline; plus a reported and a
/// no-report-needed study.
/// Returns the expected worklist order of the unreported ones, computed
/// from the seeded values.
fn seed_worklist(store: &mut Store) -> Vec<String> {
    let now = ts(NOW);
    let mut expected: Vec<(bool, Option<Timestamp>, Timestamp, String)> = Vec::new();
    for n in 0..23u32 {
        // Pairs (2k, 2k + 1) share a receipt time, except where n % 6 == 5.
        let received = now - hours(48)
            + hours(i64::from((n / 2) % 3))
            + if n % 6 == 5 { hours(1) } else { hours(0) };
        let modality = if n % 3 == 0 { "MR" } else { "CT" };
        let source = if n % 4 == 0 { "other-trust" } else { "ed" };
        let study = record(
            store,
            Seed {
                n,
                modality,
                source,
                accession: None,
                patient_id: None,
                received_at: received,
            },
        );
        // Every fifth has no deadline yet; the others fall due from 10 h
        // ago onwards, in pairs, counting down so that deadline order is
        // not receipt order.
        let deadline = (n % 5 != 0).then(|| now - hours(10) + hours(i64::from((23 - n) / 2)));
        set_deadline(store, &study, deadline, false);
        expected.push((deadline.is_none(), deadline, received, study));
    }
    let full_ties = expected
        .iter()
        .filter(|a| {
            expected
                .iter()
                .any(|b| a.1.is_some() && a.1 == b.1 && a.2 == b.2 && a.3 != b.3)
        })
        .count();
    assert!(
        full_ties >= 4,
        "the seed has studies tied on deadline and receipt"
    );
    let reported = record(
        store,
        Seed {
            n: 100,
            modality: "CT",
            source: "ed",
            accession: Some("ACC-REPORTED"),
            patient_id: None,
            received_at: now - hours(30),
        },
    );
    set_deadline(store, &reported, Some(now - hours(20)), false);
    store
        .record_report(&report(Some("ACC-REPORTED"), ReportStatus::Final))
        .expect("report");
    let dose = record(
        store,
        Seed {
            n: 101,
            modality: "SR",
            source: "ed",
            accession: None,
            patient_id: None,
            received_at: now - hours(30),
        },
    );
    set_deadline(store, &dose, None, true);
    expected.sort();
    expected.into_iter().map(|e| e.3).collect()
}

#[tokio::test]
async fn studies_pages_walk_the_worklist_once_in_deadline_order() {
    let api = Api::new();
    let expected = seed_worklist(&mut api.store());

    let (got, pages) = walk(&api, "state=unreported&limit=4").await;
    assert_eq!(
        got, expected,
        "every unreported study once, in deadline order"
    );
    assert_eq!(pages, 6, "23 studies in pages of 4");

    // A page exactly as long as what is left has no next page.
    let (got, pages) = walk(&api, "state=unreported&limit=23").await;
    assert_eq!((got.len(), pages), (23, 1));

    // The default page holds everything here; the whole catalog sorts the
    // same way, with the reported and no-report-needed studies among them.
    let all = api.get("/api/studies").await.json();
    assert_eq!(uids(&all).len(), 25);
    assert!(all["next_cursor"].is_null());
    let (walked, _) = walk(&api, "limit=3").await;
    assert_eq!(walked, uids(&all));
    let unique: BTreeSet<&String> = walked.iter().collect();
    assert_eq!(unique.len(), 25);

    // The last studies are those without a deadline.
    let first_null = expected
        .iter()
        .position(|u| {
            let n: u32 = u.rsplit('.').next().unwrap().parse().unwrap();
            n % 5 == 0
        })
        .expect("some without a deadline");
    assert_eq!(first_null, 23 - 5);
}

#[tokio::test]
async fn studies_filter_by_state_modality_and_source() {
    let api = Api::new();
    seed_worklist(&mut api.store());
    let now = ts(NOW);

    let page = api
        .get("/api/studies?state=overdue&limit=1000")
        .await
        .json();
    let overdue = page["studies"].as_array().unwrap();
    assert!(!overdue.is_empty());
    for s in overdue {
        assert_eq!(s["state"], "overdue");
        let deadline: Timestamp = s["deadline"].as_str().unwrap().parse().unwrap();
        assert!(deadline < now);
    }
    // Deadlines from now - 10h in 1 h steps of (23 - n) / 2, for n not a
    // multiple of 5: overdue while (23 - n) / 2 < 10, i.e. n >= 4.
    let expected_overdue = (0..23u32)
        .filter(|n| n % 5 != 0 && (23 - n) / 2 < 10)
        .count();
    assert_eq!(overdue.len(), expected_overdue);

    let reported = api.get("/api/studies?state=reported").await.json();
    assert_eq!(uids(&reported), [uid(100)]);
    assert_eq!(reported["studies"][0]["state"], "reported");
    let none = api.get("/api/studies?state=no_report_needed").await.json();
    assert_eq!(uids(&none), [uid(101)]);

    let mr = api
        .get("/api/studies?state=unreported&modality=mr")
        .await
        .json();
    let expected_mr: BTreeSet<String> = (0..23).filter(|n| n % 3 == 0).map(uid).collect();
    assert_eq!(uids(&mr).into_iter().collect::<BTreeSet<_>>(), expected_mr);

    let (other, _) = walk(&api, "source=other-trust&modality=CT&limit=2").await;
    let expected_other: BTreeSet<String> = (0..23)
        .filter(|n| n % 4 == 0 && n % 3 != 0)
        .map(uid)
        .collect();
    assert_eq!(
        other.iter().cloned().collect::<BTreeSet<_>>(),
        expected_other
    );
    assert_eq!(other.len(), expected_other.len());

    // Empty values (an unset form field) filter nothing.
    let unfiltered = api
        .get("/api/studies?state=&modality=&source=")
        .await
        .json();
    assert_eq!(uids(&unfiltered).len(), 25);
    // A modality nobody sent: an empty page, not an error.
    let xa = api.get("/api/studies?modality=XA").await.json();
    assert_eq!(xa, json!({"studies": [], "next_cursor": null}));
}

#[tokio::test]
async fn studies_refuse_bad_parameters_naming_them() {
    let api = Api::new();
    seed_worklist(&mut api.store());
    for (query, status, mentions) in [
        ("state=late", StatusCode::UNPROCESSABLE_ENTITY, "state"),
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("limit=1001", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("limit=ten", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("limit=-1", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("cursor=nothex", StatusCode::UNPROCESSABLE_ENTITY, "cursor"),
        ("cursor=00ff", StatusCode::UNPROCESSABLE_ENTITY, "cursor"),
        (
            "modality=C%3BT",
            StatusCode::UNPROCESSABLE_ENTITY,
            "modality",
        ),
        ("stat=overdue", StatusCode::BAD_REQUEST, "stat"),
        (
            "state=overdue&state=reported",
            StatusCode::BAD_REQUEST,
            "state",
        ),
    ] {
        let answer = api.get(&format!("/api/studies?{query}")).await;
        assert_error(&answer, status, mentions);
    }
    // The largest page is allowed.
    assert_eq!(
        api.get("/api/studies?limit=1000").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn study_detail_has_instances_reports_audit_and_alarms() {
    let api = Api::new();
    let mut store = api.store();
    let now = ts(NOW);
    let study = record(
        &mut store,
        Seed {
            n: 1,
            modality: "CT",
            source: "ed",
            accession: Some("ACC-1"),
            patient_id: Some("H1"),
            received_at: now - hours(30),
        },
    );
    set_deadline(&mut store, &study, Some(now - hours(6)), false);
    let alarm = overdue_alarm(&mut store, &study, now - hours(5));
    store
        .record_report(&report(Some("ACC-1"), ReportStatus::Preliminary))
        .expect("report");

    let answer = api.get(&format!("/api/studies/{study}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let d = answer.json();
    assert_eq!(d["study_uid"], study.as_str());
    assert_eq!(d["state"], "overdue", "a preliminary report does not count");
    assert_eq!(d["accession_number"], "ACC-1");
    assert_eq!(d["instances"].as_array().unwrap().len(), 1);
    assert_eq!(d["instances"][0]["sha256"], "ab".repeat(32));
    assert_eq!(d["series"][0]["modality"], "CT");
    assert_eq!(d["reports"][0]["status"], "preliminary");
    assert_eq!(d["reports"][0]["links"][0]["rule"], "accession");
    assert_eq!(d["reports"][0]["links"][0]["counts"], true);
    let alarms = d["alarms"].as_array().expect("alarms");
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0]["id"], alarm);
    assert_eq!(alarms[0]["state"], "open");
    assert_eq!(alarms[0]["kind"], "overdue_report");
    let actions: Vec<&str> = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"study_received"), "{actions:?}");
    assert!(actions.contains(&"alarm_raised"), "{actions:?}");
    // Nothing of where files live.
    assert!(!answer.body.contains("rel_path") && !answer.body.contains(".dcm"));
}

#[tokio::test]
async fn study_detail_checks_the_uid_before_any_lookup() {
    let api = Api::new();
    for bad in ["1.02.3", "abc", "1..2", "1.2.", &"1.2".repeat(40)] {
        let answer = api.get(&format!("/api/studies/{bad}")).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "not valid");
    }
    // Percent-encoded separators decode into the segment and are refused.
    let answer = api.get("/api/studies/..%2F..%2Fetc").await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "not valid");
    let answer = api.get("/api/studies/1.2.3.4").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "1.2.3.4");
}

#[tokio::test]
async fn alarms_list_by_state_newest_first() {
    let api = Api::new();
    let mut store = api.store();
    let now = ts(NOW);
    let mut ids = Vec::new();
    for n in 0..4 {
        let study = record(
            &mut store,
            Seed {
                n,
                modality: "CT",
                source: "ed",
                accession: None,
                patient_id: None,
                received_at: now - hours(40),
            },
        );
        ids.push(overdue_alarm(
            &mut store,
            &study,
            now - hours(4 - i64::from(n)),
        ));
    }
    store
        .acknowledge_alarm(ids[1], "someone", "on it", None, now - hours(1))
        .expect("ack")
        .expect("live");
    resolve(&mut store, ids[2]);

    let all = api.get("/api/alarms").await.json();
    let listed: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    for (state, expected) in [
        ("open", vec![ids[3], ids[0]]),
        ("acknowledged", vec![ids[1]]),
        ("resolved", vec![ids[2]]),
    ] {
        let page = api.get(&format!("/api/alarms?state={state}")).await.json();
        let got: Vec<i64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, expected, "{state}");
        assert!(page.as_array().unwrap().iter().all(|a| a["state"] == state));
    }
    let one = api.get("/api/alarms?limit=1").await.json();
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["id"], ids[3]);
    assert_eq!(one[0]["study_uid"], uid(3).as_str());

    assert_error(
        &api.get("/api/alarms?state=closed").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "state",
    );
    assert_error(
        &api.get("/api/alarms?limit=5000").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit",
    );
    assert_error(
        &api.get("/api/alarms?open=true").await,
        StatusCode::BAD_REQUEST,
        "open",
    );
}

/// Seeds one study with an open overdue alarm; returns the alarm's id.
fn one_open_alarm(api: &Api) -> (String, i64) {
    let mut store = api.store();
    let now = ts(NOW);
    let study = record(
        &mut store,
        Seed {
            n: 7,
            modality: "CT",
            source: "ed",
            accession: Some("ACC-7"),
            patient_id: None,
            received_at: now - hours(40),
        },
    );
    set_deadline(&mut store, &study, Some(now - hours(16)), false);
    let id = overdue_alarm(&mut store, &study, now - hours(15));
    (study, id)
}

#[tokio::test]
async fn writes_without_a_signed_in_actor_are_refused() {
    let api = Api::new();
    let (study, alarm) = one_open_alarm(&api);
    let writes = [
        (
            format!("/api/alarms/{alarm}/ack"),
            json!({"reason": "on it"}),
        ),
        (
            "/api/reports".to_owned(),
            json!({"accession_number": "ACC-7", "status": "final"}),
        ),
        (
            "/api/reports/1/confirm".to_owned(),
            json!({"study_uid": study, "accept": true}),
        ),
        (
            "/api/reports/1/acknowledge".to_owned(),
            json!({"note": "seen"}),
        ),
    ];
    for (path, body) in &writes {
        let anonymous = api.app.post_json(path, body, &[]).await;
        assert_error(&anonymous, StatusCode::UNAUTHORIZED, "");
        let wrong = api
            .app
            .post_json(path, body, &[("authorization", "Bearer not-a-token")])
            .await;
        assert_error(&wrong, StatusCode::UNAUTHORIZED, "");
        // Auth comes first: a malformed body without it is still 401.
        let malformed = api
            .app
            .post(path, "application/json", "{".into(), &[])
            .await;
        assert_error(&malformed, StatusCode::UNAUTHORIZED, "");
    }
    // Nothing changed.
    let store = api.store();
    assert_eq!(store.alarm(alarm).unwrap().unwrap().state, "open");
    assert!(store.recent_reports(None).unwrap().is_empty());
}

#[tokio::test]
async fn ack_by_token_acknowledges_for_a_while_and_audits_the_holder() {
    let api = Api::new();
    let (study, alarm) = one_open_alarm(&api);
    let answer = api
        .post(
            &format!("/api/alarms/{alarm}/ack"),
            &json!({"reason": "  radiologist called, reporting now ", "for": "4h"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let a = answer.json();
    assert_eq!(a["id"], alarm);
    assert_eq!(a["state"], "acknowledged");
    assert_eq!(a["acknowledged_by"], HOLDER);
    assert_eq!(a["ack_reason"], "radiologist called, reporting now");
    let until = ts(NOW) + hours(4);
    assert_eq!(a["acknowledged_until"], until.to_string());
    assert_eq!(a["acknowledged_at"], NOW);

    let store = api.store();
    let audit = store.audit(Some(&study), None).unwrap();
    let ack = audit
        .iter()
        .find(|r| r.action == "alarm_acknowledged")
        .expect("audited");
    assert_eq!(ack.actor, HOLDER);
    assert!(ack.detail.contains("radiologist called"), "{}", ack.detail);

    // Acknowledged again, until it resolves ("for": null).
    let again = api
        .post(
            &format!("/api/alarms/{alarm}/ack"),
            &json!({"reason": "still on it", "for": null}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(again.json()["acknowledged_until"].is_null());
    // The listing shows it too.
    let listed = api.get("/api/alarms?state=acknowledged").await.json();
    assert_eq!(listed[0]["id"], alarm);
}

#[tokio::test]
async fn ack_refuses_bad_input_unknown_and_resolved_alarms() {
    let api = Api::new();
    let (_study, alarm) = one_open_alarm(&api);
    let path = format!("/api/alarms/{alarm}/ack");
    let auth = bearer();
    let headers = [("authorization", auth.as_str())];

    assert_error(
        &api.post(&path, &json!({"reason": "   "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "reason",
    );
    assert_error(
        &api.post(&path, &json!({"reason": "x", "for": "4 weeks"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "for",
    );
    assert_error(
        &api.post(&path, &json!({"reason": "x", "for": "0h"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "for",
    );
    assert_error(
        &api.post(&path, &json!({"for": "4h"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "reason",
    );
    assert_error(
        &api.post(&path, &json!({"reason": 5})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "reason",
    );
    assert_error(
        &api.post(&path, &json!({"reason": "x", "until": "4h"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "until",
    );
    let malformed = api
        .app
        .post(&path, "application/json", "{\"reason\": ".into(), &headers)
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "JSON");
    let not_json = api
        .app
        .post(&path, "text/plain", "reason=x".into(), &headers)
        .await;
    assert_error(
        &not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    );
    // Nothing of that changed the alarm.
    assert_eq!(api.store().alarm(alarm).unwrap().unwrap().state, "open");

    assert_error(
        &api.post("/api/alarms/999999/ack", &json!({"reason": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "999999",
    );
    assert_error(
        &api.post("/api/alarms/seven/ack", &json!({"reason": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "seven",
    );
    resolve(&mut api.store(), alarm);
    assert_error(
        &api.post(&path, &json!({"reason": "x"})).await,
        StatusCode::CONFLICT,
        "resolved",
    );
}

#[tokio::test]
async fn report_link_records_a_manual_report_under_the_holders_name() {
    let api = Api::new();
    let mut store = api.store();
    let now = ts(NOW);
    let study = record(
        &mut store,
        Seed {
            n: 3,
            modality: "CR",
            source: "ed",
            accession: Some("ACC-3"),
            patient_id: None,
            received_at: now - hours(30),
        },
    );
    set_deadline(&mut store, &study, Some(now - hours(6)), false);

    let answer = api
        .post(
            "/api/reports",
            &json!({"accession_number": "ACC-3", "status": "final", "author": "Dr Reporter",
                    "time": "2026-11-23T09:30:00Z"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let r = answer.json();
    let id = r["id"].as_i64().expect("id");
    assert_eq!(
        answer.header("location"),
        Some(format!("/api/reports/{id}").as_str())
    );
    assert_eq!(r["origin"], "manual");
    assert_eq!(r["status"], "final");
    assert_eq!(r["recorded_by"], HOLDER);
    assert_eq!(r["author"], "Dr Reporter");
    assert_eq!(r["reported_at"], "2026-11-23T09:30:00Z");
    assert_eq!(r["links"][0]["study_uid"], study.as_str());
    assert_eq!(r["links"][0]["rule"], "accession");

    // The study is reported as of that time, and the audit names the holder.
    let d = api.get(&format!("/api/studies/{study}")).await.json();
    assert_eq!(d["state"], "reported");
    assert_eq!(d["reported_at"], "2026-11-23T09:30:00Z");
    let stored = api.store().report(id).unwrap().expect("stored");
    assert_eq!(stored.recorded_by.as_deref(), Some(HOLDER));
    // GET /api/reports/{id} answers the same report.
    let one = api.get(&format!("/api/reports/{id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json(), r);

    // By study UID, for a study not received yet: recorded, linked to
    // nothing, listed as unmatched.
    let waiting = api
        .post(
            "/api/reports",
            &json!({"study_uid": "1.2.826.0.1.3680043.10.77.555", "status": "preliminary"}),
        )
        .await;
    assert_eq!(waiting.status, StatusCode::CREATED, "{}", waiting.body);
    let w = waiting.json();
    assert_eq!(w["links"], json!([]));
    assert_eq!(w["study_uid"], "1.2.826.0.1.3680043.10.77.555");
    let unmatched = api.get("/api/reports?unmatched=true").await.json();
    let ids: Vec<i64> = unmatched
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [w["id"].as_i64().unwrap()]);
}

#[tokio::test]
async fn report_link_refuses_bad_input_naming_the_field() {
    let api = Api::new();
    for (body, mentions) in [
        (
            json!({"status": "final"}),
            "accession number or a study UID",
        ),
        (json!({"accession_number": "A", "status": "done"}), "status"),
        (json!({"study_uid": "1.02", "status": "final"}), "study UID"),
        (
            json!({"accession_number": "A", "status": "final", "time": "yesterday"}),
            "time",
        ),
        (
            json!({"accession_number": "A", "status": "final", "time": "2099-01-01T00:00:00Z"}),
            "future",
        ),
        (json!({"accession_number": "A"}), "status"),
        (
            json!({"accession_number": "A", "status": "final", "by": "me"}),
            "by",
        ),
        (
            json!({"accession_number": 12, "status": "final"}),
            "accession_number",
        ),
    ] {
        let answer = api.post("/api/reports", &body).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, mentions);
    }
    let auth = bearer();
    let malformed = api
        .app
        .post(
            "/api/reports",
            "application/json",
            "{\"accession_number\": \"A\", \"status\": \"fin".into(),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "JSON");
    assert!(api.store().recent_reports(None).unwrap().is_empty());
}

#[tokio::test]
async fn reports_list_latest_or_unmatched() {
    let api = Api::new();
    let mut store = api.store();
    record(
        &mut store,
        Seed {
            n: 1,
            modality: "CT",
            source: "ed",
            accession: Some("ACC-1"),
            patient_id: None,
            received_at: ts(NOW) - hours(5),
        },
    );
    let (linked, _) = store
        .record_report(&report(Some("ACC-1"), ReportStatus::Final))
        .unwrap();
    let (lonely, _) = store
        .record_report(&report(Some("ACC-NOWHERE"), ReportStatus::Final))
        .unwrap();
    let ids = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&api.get("/api/reports").await.json()), [lonely, linked]);
    assert_eq!(
        ids(&api.get("/api/reports?unmatched=false").await.json()),
        [lonely, linked]
    );
    assert_eq!(ids(&api.get("/api/reports?limit=1").await.json()), [lonely]);
    let unmatched = api.get("/api/reports?unmatched=true").await.json();
    assert_eq!(ids(&unmatched), [lonely]);
    assert_eq!(unmatched[0]["accession_number"], "ACC-NOWHERE");
    assert_eq!(unmatched[0]["links"], json!([]));

    assert_error(
        &api.get("/api/reports?unmatched=yes").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unmatched",
    );
    assert_error(
        &api.get("/api/reports?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit",
    );
    assert_error(
        &api.get("/api/reports/999").await,
        StatusCode::NOT_FOUND,
        "999",
    );
}

#[tokio::test]
async fn confirm_decides_a_probable_link() {
    let api = Api::new();
    let mut store = api.store();
    store.set_link_policy(LinkPolicy {
        probable: true,
        ..LinkPolicy::default()
    });
    let now = ts(NOW);
    let study = record(
        &mut store,
        Seed {
            n: 9,
            modality: "DX",
            source: "ed",
            accession: None,
            patient_id: Some("H9"),
            received_at: now - hours(8),
        },
    );
    set_deadline(&mut store, &study, Some(now + hours(16)), false);
    let mut probable = report(None, ReportStatus::Final);
    probable.placer_number = Some("PL-9".into());
    probable.exam_at = Some(now - hours(8));
    probable.patient_ids = vec![PatientId {
        id: "H9".into(),
        authority: None,
        kind: None,
    }];
    let (id, links) = store.record_report(&probable).expect("report");
    assert!(links.iter().any(|l| l.probable), "{links:?}");
    // A probable link does not count: the report is unmatched.
    let unmatched = api.get("/api/reports?unmatched=true").await.json();
    assert_eq!(unmatched[0]["id"], id);
    assert_eq!(unmatched[0]["links"][0]["probable"], true);
    assert_eq!(unmatched[0]["links"][0]["counts"], false);

    let path = format!("/api/reports/{id}/confirm");
    assert_error(
        &api.post(&path, &json!({"study_uid": "1.2.x", "accept": true}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "study_uid",
    );
    assert_error(
        &api.post(&path, &json!({"study_uid": study, "accept": "yes"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "accept",
    );
    assert_error(
        &api.post(&path, &json!({"study_uid": "1.2.3.4", "accept": true}))
            .await,
        StatusCode::CONFLICT,
        "no probable link",
    );
    assert_error(
        &api.post(
            "/api/reports/424242/confirm",
            &json!({"study_uid": study, "accept": true}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "424242",
    );

    let answer = api
        .post(&path, &json!({"study_uid": study, "accept": true}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let r = answer.json();
    assert_eq!(r["links"][0]["confirmation"], "confirmed");
    assert_eq!(r["links"][0]["confirmed_by"], HOLDER);
    assert_eq!(r["links"][0]["counts"], true);
    let d = api.get(&format!("/api/studies/{study}")).await.json();
    assert_eq!(d["state"], "reported");
    let audit = api.store().audit(Some(&study), None).unwrap();
    let confirmed = audit
        .iter()
        .find(|a| a.action == "link_confirmed")
        .expect("audited");
    assert_eq!(confirmed.actor, HOLDER);
    assert_eq!(
        api.get("/api/reports?unmatched=true").await.json(),
        json!([])
    );
}

#[tokio::test]
async fn acknowledge_records_the_referrers_acknowledgement_of_an_alert() {
    let api = Api::new();
    let mut store = api.store();
    let mut critical = report(Some("ACC-C"), ReportStatus::Final);
    critical.alert_category = Some("critical".into());
    let (alerted, _) = store.record_report(&critical).expect("report");
    let (plain, _) = store
        .record_report(&report(Some("ACC-P"), ReportStatus::Final))
        .expect("report");

    let path = format!("/api/reports/{alerted}/acknowledge");
    assert_error(
        &api.post(&path, &json!({"note": " "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "note",
    );
    assert_error(
        &api.post(&path, &json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "note",
    );
    assert_error(
        &api.post(
            &format!("/api/reports/{plain}/acknowledge"),
            &json!({"note": "seen"}),
        )
        .await,
        StatusCode::CONFLICT,
        "no unacknowledged fail-safe alert",
    );
    assert_error(
        &api.post("/api/reports/31337/acknowledge", &json!({"note": "seen"}))
            .await,
        StatusCode::NOT_FOUND,
        "31337",
    );

    let answer = api
        .post(&path, &json!({"note": "patient recalled, seen in ED"}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let r = answer.json();
    assert_eq!(r["alert_category"], "critical");
    assert_eq!(r["alert_acknowledged_by"], HOLDER);
    assert_eq!(r["alert_acknowledged_at"], NOW);
    let audit = api.store().audit(None, None).unwrap();
    let ack = audit
        .iter()
        .find(|a| a.action == "alert_acknowledged")
        .expect("audited");
    assert_eq!(ack.actor, HOLDER);
    assert!(ack.detail.contains("patient recalled"));
    // Once is enough: a second acknowledgement has nothing to acknowledge.
    assert_error(
        &api.post(&path, &json!({"note": "again"})).await,
        StatusCode::CONFLICT,
        "no unacknowledged",
    );
}

#[tokio::test]
async fn backlog_counts_waiting_studies_by_age_modality_source_and_overdue() {
    let api = Api::new();
    let mut store = api.store();
    let now = ts(NOW);
    // Ages: 2 h, 30 h, 3 d, 10 d, 40 d (and exactly 24 h: the older bucket).
    let plan: [(i64, &str, &str, Option<i64>); 6] = [
        (2, "CT", "ed", Some(22)),
        (24, "CT", "ed", Some(-1)),
        (30, "MR", "ed", Some(-6)),
        (72, "CT", "other-trust", None),
        (240, "US", "ed", Some(-200)),
        (960, "CT", "other-trust", Some(-900)),
    ];
    for (n, (age, modality, source, due_in)) in (0u32..).zip(plan) {
        let study = record(
            &mut store,
            Seed {
                n,
                modality,
                source,
                accession: None,
                patient_id: None,
                received_at: now - hours(age),
            },
        );
        set_deadline(&mut store, &study, due_in.map(|h| now + hours(h)), false);
    }
    // Reported and no-report-needed studies are not in the backlog.
    seed_extra_closed(&mut store);

    let answer = api.get("/api/stats/backlog").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let b = answer.json();
    assert_eq!(
        b,
        json!({
            "at": NOW,
            "unreported": 6,
            "overdue": 4,
            "no_deadline": 1,
            "by_age": [
                {"bucket": "<24h", "count": 1},
                {"bucket": "24h-7d", "count": 3},
                {"bucket": "7d-28d", "count": 1},
                {"bucket": ">28d", "count": 1},
            ],
            "by_modality": [
                {"modality": "CT", "count": 4},
                {"modality": "MR", "count": 1},
                {"modality": "US", "count": 1},
            ],
            "by_source": [
                {"source": "ed", "count": 4},
                {"source": "other-trust", "count": 2},
            ],
        })
    );
    assert_error(
        &api.get("/api/stats/backlog?modality=CT").await,
        StatusCode::BAD_REQUEST,
        "modality",
    );
}

fn seed_extra_closed(store: &mut Store) {
    let now = ts(NOW);
    let reported = record(
        store,
        Seed {
            n: 50,
            modality: "CT",
            source: "ed",
            accession: Some("ACC-50"),
            patient_id: None,
            received_at: now - hours(3),
        },
    );
    set_deadline(store, &reported, Some(now - hours(1)), false);
    store
        .record_report(&report(Some("ACC-50"), ReportStatus::Final))
        .unwrap();
    let dose = record(
        store,
        Seed {
            n: 51,
            modality: "SR",
            source: "ed",
            accession: None,
            patient_id: None,
            received_at: now - hours(3),
        },
    );
    set_deadline(store, &dose, None, true);
}

#[tokio::test]
async fn unknown_endpoints_and_methods_answer_json() {
    let api = Api::new();
    assert_error(
        &api.get("/api/nothing-here").await,
        StatusCode::NOT_FOUND,
        "no such API endpoint",
    );
    let wrong_method = api.post("/api/studies", &json!({})).await;
    assert_error(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method");
    let get_a_write = api.get("/api/alarms/1/ack").await;
    assert_error(&get_a_write, StatusCode::METHOD_NOT_ALLOWED, "method");
}

#[tokio::test]
async fn the_cli_study_json_and_the_api_print_one_shape() {
    let api = Api::new();
    let (study, _alarm) = one_open_alarm(&api);
    let from_api = api.get(&format!("/api/studies/{study}")).await.json();
    assert_eq!(from_api["alarms"].as_array().unwrap().len(), 1);
    // The CLI on the same catalog. Its clock is the wall clock, not the
    // pinned one: the study is overdue by either.
    let config = api.app.dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[storage]\npath = \"{}\"\n[catalog]\npath = \"{}\"\n",
            api.app.config.storage.path.display(),
            api.app.config.catalog.path.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .arg("--config")
        .arg(&config)
        .args(["study", &study, "--json"])
        .output()
        .expect("run studywatch");
    assert!(out.status.success(), "{}", crate::harness::show(&out));
    let from_cli: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
    assert_eq!(from_cli, from_api);
}

/// Signs [`USER`] in on the dashboard: the session cookie to send back, and
/// the session's CSRF token (from the sign-in page's sign-out form).
async fn session(api: &Api) -> (String, String) {
    let answer = api
        .app
        .post_form(
            "/login",
            &[("user", USER), ("password", PASSWORD), ("next", "/")],
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer
        .header("set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let page = api.app.get("/login", &[("cookie", &cookie)]).await;
    let marker = "name=\"csrf\" value=\"";
    let start = page.body.find(marker).expect("a CSRF token on the page") + marker.len();
    let len = page.body[start..].find('"').expect("end of the token");
    (cookie, page.body[start..start + len].to_owned())
}

#[tokio::test]
async fn a_session_write_needs_its_csrf_token_and_is_made_by_the_user() {
    let api = Api::new();
    let (_study, alarm) = one_open_alarm(&api);
    let (cookie, token) = session(&api).await;
    let path = format!("/api/alarms/{alarm}/ack");
    let body = json!({"reason": "looking now"});

    let without = api
        .app
        .post_json(&path, &body, &[("cookie", &cookie)])
        .await;
    assert_error(&without, StatusCode::FORBIDDEN, "CSRF");
    let wrong = api
        .app
        .post_json(
            &path,
            &body,
            &[
                ("cookie", &cookie),
                ("x-csrf-token", &"0".repeat(token.len())),
            ],
        )
        .await;
    assert_error(&wrong, StatusCode::FORBIDDEN, "CSRF");
    let cross_site = api
        .app
        .post_json(
            &path,
            &body,
            &[
                ("cookie", &cookie),
                ("x-csrf-token", &token),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_error(&cross_site, StatusCode::FORBIDDEN, "another site");
    assert_eq!(api.store().alarm(alarm).unwrap().unwrap().state, "open");

    let answer = api
        .app
        .post_json(
            &path,
            &body,
            &[("cookie", &cookie), ("x-csrf-token", &token)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["acknowledged_by"], USER);
    let audit = api.store().audit(None, None).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "alarm_acknowledged" && a.actor == USER),
        "{audit:?}"
    );

    // A report entered through the session is recorded by the user too.
    let created = api
        .app
        .post_json(
            "/api/reports",
            &json!({"accession_number": "ACC-7", "status": "final"}),
            &[("cookie", &cookie), ("x-csrf-token", &token)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.json()["recorded_by"], USER);
}

#[tokio::test]
async fn readyz_fails_while_the_watchdog_scheduler_does_not_run() {
    // The app alone, without the server's scheduler: as a process whose
    // scheduler task has stopped.
    let api = Api::new();
    let watchdog = |answer: &Answer| {
        answer.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "watchdog")
            .cloned()
            .unwrap_or_else(|| panic!("no watchdog check: {}", answer.body))
    };
    let answer = api.get("/readyz").await;
    assert_eq!(watchdog(&answer)["ok"], true, "{}", answer.body);

    api.app.set_now(ts(NOW) + SignedDuration::from_secs(90));
    let answer = api.get("/readyz").await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    let check = watchdog(&answer);
    assert_eq!(check["ok"], false, "{}", answer.body);
    assert_eq!(
        check["detail"], "the watchdog scheduler has not run for 90 s",
        "{}",
        answer.body
    );
}
