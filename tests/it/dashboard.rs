//! The dashboard's HTML pages, driven through the router with no socket:
//! each page renders what the catalog holds, escapes what senders wrote,
//! filters and pages the worklist, colours and names each study's state,
//! draws the backlog chart as well-formed SVG, and takes its forms only
//! from someone it can name in the audit log.

use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use sha2::Digest;
use studywatch::catalog::{
    AlarmUpdate, DeadlineUpdate, LinkPolicy, NewAlarm, NewConflict, NewFailure, NewInstance,
    NewNotification, NewReport, PatientId, ReportOrigin, ReportStatus, Store,
};

use crate::web::{Answer, WebApp};

/// The API token of the test's token holder.
const TOKEN: &str = "dashboard-test-token-8d3e61";
const HOLDER: &str = "ward.clerk";
/// The clock every request sees (WebApp pins it): a Monday, GMT.
const NOW: &str = "2026-11-23T10:00:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

fn now() -> Timestamp {
    ts(NOW)
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

fn mins(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

fn uid(n: u32) -> String {
    format!("1.2.826.0.1.3680043.10.88.{n}")
}

/// A web app whose tokens file names [`HOLDER`] with [`TOKEN`]; `http`
/// adds to `[http]`.
struct Dash {
    app: WebApp,
    _secrets: tempfile::TempDir,
}

impl Dash {
    fn new() -> Dash {
        Dash::with("", None)
    }

    /// With `users` (a users file's text) written where `{secrets}/users`
    /// in `http` points.
    fn with(http: &str, users: Option<&str>) -> Dash {
        let secrets = tempfile::tempdir().expect("temp dir");
        if let Some(users) = users {
            std::fs::write(secrets.path().join("users"), users).expect("users file");
        }
        let tokens = secrets.path().join("tokens");
        let digest = hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()));
        std::fs::write(&tokens, format!("{HOLDER}:{digest}\n")).expect("tokens file");
        let http = format!(
            "tokens_file = \"{}\"\n{}",
            tokens.display(),
            http.replace("{secrets}", &secrets.path().display().to_string())
        );
        let app = WebApp::new(&http, "");
        assert_eq!(app.now(), now());
        Dash {
            app,
            _secrets: secrets,
        }
    }

    fn store(&self) -> Store {
        self.app.store()
    }

    async fn page(&self, path: &str) -> Answer {
        let answer = self.app.get(path, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        assert_eq!(
            answer.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        answer
    }

    /// A form post with the bearer token (which needs no CSRF token).
    async fn post_as_holder(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let auth = format!("Bearer {TOKEN}");
        self.app
            .post_form(path, fields, &[("authorization", auth.as_str())])
            .await
    }
}

/// One study of one instance.
struct Seed<'a> {
    n: u32,
    modality: &'a str,
    source: &'a str,
    accession: &'a str,
    patient_id: &'a str,
    description: &'a str,
    received_at: Timestamp,
}

impl Default for Seed<'_> {
    fn default() -> Self {
        Seed {
            n: 0,
            modality: "CT",
            source: "ed",
            accession: "",
            patient_id: "",
            description: "",
            received_at: now() - hours(3),
        }
    }
}

fn instance(s: &Seed<'_>) -> NewInstance {
    let study = uid(s.n);
    let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    NewInstance {
        study_uid: study.clone(),
        series_uid: format!("{study}.1"),
        sop_instance_uid: format!("{study}.1.1"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        patient_id: some(s.patient_id),
        issuer_of_patient_id: None,
        accession_number: some(s.accession),
        issuer_of_accession: None,
        modality: Some(s.modality.into()),
        // Examined the day it arrived (UTC and London agree in November).
        study_date: Some(s.received_at.strftime("%Y%m%d").to_string()),
        study_time: None,
        study_description: some(s.description),
        referring_physician: None,
        institution_name: None,
        series_number: Some(1),
        series_description: Some("Axial".into()),
        size_bytes: 2048,
        sha256: "cd".repeat(32),
        rel_path: format!("{study}/1/1.dcm"),
        received_at: s.received_at,
        calling_ae: "CT_ED".into(),
        source: s.source.into(),
        report: None,
        attributes: vec![],
        forward_to: vec![],
        clock: None,
    }
}

/// Records the study and gives it a deadline; returns its UID.
fn study(store: &mut Store, seed: Seed<'_>, deadline: Option<Timestamp>) -> String {
    store.record_instance(&instance(&seed)).expect("record");
    let study = uid(seed.n);
    store
        .set_deadlines(&[DeadlineUpdate {
            study_uid: study.clone(),
            rule: Some("CT from ED within 4 h".into()),
            no_report_needed: false,
            deadline,
        }])
        .expect("deadline");
    study
}

/// Raises an open overdue alarm for `study`, with `steps` escalation steps
/// already sent; returns its id.
fn overdue_alarm(store: &mut Store, study: &str, steps: usize) -> i64 {
    let raised = now() - hours(2);
    let id = store
        .raise_alarm(
            &NewAlarm {
                kind: "overdue_report".into(),
                subject: study.to_owned(),
                study_uid: Some(study.to_owned()),
                report_id: None,
                rule: Some("CT from ED within 4 h".into()),
                due_at: raised,
                detail: format!("study {study} has no report"),
                next_action_at: Some(raised),
            },
            raised,
        )
        .expect("raise")
        .expect("a new alarm");
    if steps > 0 {
        store
            .update_alarm(
                &AlarmUpdate {
                    id,
                    state: "open".into(),
                    next_step: steps,
                    next_action_at: Some(now() + hours(1)),
                    acknowledged_until: None,
                    resolved_reason: None,
                    audit: vec![("alarm_escalated".into(), format!("step {steps} sent"))],
                    notifications: vec![],
                },
                raised + mins(30),
            )
            .expect("escalate");
    }
    id
}

fn report(accession: &str, status: ReportStatus, reported_at: Timestamp) -> NewReport {
    NewReport {
        origin: ReportOrigin::Hl7,
        received_at: reported_at,
        status,
        withdrawn: false,
        reported_at: Some(reported_at),
        exam_at: None,
        author: Some("Dr Reporter".into()),
        accession_number: Some(accession.to_owned()),
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

/// The `<tr>` of a study on the worklist, as text.
fn row<'a>(body: &'a str, study: &str) -> &'a str {
    let at = body
        .find(&format!("data-study-uid=\"{study}\""))
        .unwrap_or_else(|| panic!("no row for {study}"));
    let start = body[..at].rfind("<tr").expect("row start");
    let end = at + body[at..].find("</tr>").expect("row end");
    &body[start..end]
}

/// The worklist's rows, in order, as study UIDs.
fn listed(body: &str) -> Vec<String> {
    body.match_indices("data-study-uid=\"")
        .map(|(i, m)| {
            let rest = &body[i + m.len()..];
            rest[..rest.find('"').expect("quote")].to_owned()
        })
        .collect()
}

/// The value of the first `name="csrf"` field on a page.
fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[at..at + body[at..].find('"').expect("quote")].to_owned()
}

/// Four waiting studies, one in each state, and one reported; returns
/// `(escalated, overdue, due soon, waiting)`.
fn seed_states(store: &mut Store) -> (String, String, String, String) {
    let t = now();
    let escalated = study(
        store,
        Seed {
            n: 1,
            accession: "ACC-ESC",
            patient_id: "P1",
            description: "CT head",
            received_at: t - hours(9),
            ..Seed::default()
        },
        Some(t - hours(5)),
    );
    overdue_alarm(store, &escalated, 2);
    let overdue = study(
        store,
        Seed {
            n: 2,
            accession: "ACC-OVER",
            patient_id: "P2",
            modality: "MR",
            received_at: t - hours(7),
            ..Seed::default()
        },
        Some(t - hours(3)),
    );
    // Its alarm has sent only its first step: overdue, not escalated.
    overdue_alarm(store, &overdue, 1);
    let due_soon = study(
        store,
        Seed {
            n: 3,
            accession: "ACC-SOON",
            patient_id: "P3",
            source: "other-trust",
            received_at: t - hours(3),
            ..Seed::default()
        },
        Some(t + mins(40)),
    );
    let waiting = study(
        store,
        Seed {
            n: 4,
            accession: "ACC-WAIT",
            patient_id: "P4",
            modality: "MR",
            received_at: t - hours(1),
            ..Seed::default()
        },
        Some(t + hours(10)),
    );
    let reported = study(
        store,
        Seed {
            n: 5,
            accession: "ACC-DONE",
            received_at: t - hours(20),
            ..Seed::default()
        },
        Some(t - hours(16)),
    );
    store
        .record_report(&report("ACC-DONE", ReportStatus::Final, t - hours(18)))
        .expect("report");
    assert!(
        store
            .study_row(&reported)
            .unwrap()
            .unwrap()
            .reported_at
            .is_some()
    );
    (escalated, overdue, due_soon, waiting)
}

#[tokio::test]
async fn worklist_orders_by_deadline_and_names_each_state_in_words_and_colour() {
    let dash = Dash::new();
    let (escalated, overdue, due_soon, waiting) = seed_states(&mut dash.store());
    let page = dash.page("/").await;
    let body = &page.body;
    assert!(body.contains("id=\"worklist\""), "{body}");
    // Nearest (longest past) deadline first; the reported study is absent.
    assert_eq!(
        listed(body),
        [
            escalated.clone(),
            overdue.clone(),
            due_soon.clone(),
            waiting.clone()
        ],
        "worklist order"
    );
    for (study, class, words, deadline) in [
        (&escalated, "escalated", "Escalated", "overdue 5 h"),
        (&overdue, "overdue", "Overdue", "overdue 3 h"),
        (&due_soon, "due-soon", "Due soon", "due in 40 min"),
        (&waiting, "waiting", "Waiting", "due in 10 h"),
    ] {
        let tr = row(body, study);
        assert!(tr.contains(&format!("class=\"row {class}\"")), "{tr}");
        assert!(
            tr.contains(&format!("class=\"state {class}\"")) && tr.contains(words),
            "{class} must be written out: {tr}"
        );
        assert!(tr.contains(deadline), "{tr}");
        assert!(
            tr.contains(&format!("href=\"/studies/{study}\"")),
            "each row links to its study: {tr}"
        );
    }
    // The figures at the top: four waiting, two overdue, none older than a day.
    for (id, value) in [
        ("count-waiting", "4"),
        ("count-overdue", "2"),
        ("age-24h", "0"),
    ] {
        let at = body.find(&format!("id=\"{id}\"")).expect(id);
        let figure = &body[at..at + body[at..].find("</li>").expect("figure end")];
        assert!(
            figure.contains(&format!("<span class=\"value\">{value}</span>")),
            "{id}: {figure}"
        );
    }
    // No JavaScript is needed: the page refreshes itself without it.
    assert!(body.contains("<noscript><meta http-equiv=\"refresh\" content=\"60\">"));
    assert!(body.contains("data-refresh=\"60\""));
    assert!(body.contains("<script src=\"/static/app.js\" defer></script>"));
}

#[tokio::test]
async fn hostile_values_are_escaped_everywhere_they_are_shown() {
    let dash = Dash::new();
    let mut store = dash.store();
    let hostile = study(
        &mut store,
        Seed {
            n: 9,
            accession: "A\"><img src=x onerror=alert(2)>",
            patient_id: "P&<b>9</b>",
            description: "<script>alert(1)</script>",
            source: "<i>src</i>",
            ..Seed::default()
        },
        Some(now() - hours(1)),
    );
    let alarm = overdue_alarm(&mut store, &hostile, 0);
    store
        .acknowledge_alarm(
            alarm,
            "<b>eve</b>",
            "<script>alert(3)</script>",
            None,
            now(),
        )
        .expect("ack")
        .expect("live alarm");
    for path in ["/", &format!("/studies/{hostile}"), "/alarms"] {
        let page = dash.page(path).await;
        let body = &page.body;
        for raw in [
            "<script>alert(1)",
            "<script>alert(3)",
            "<img src=x",
            "<b>9</b>",
            "<b>eve</b>",
            "<i>src</i>",
        ] {
            assert!(!body.contains(raw), "{path} shows {raw:?} unescaped");
        }
        assert!(
            !body.contains("<script>"),
            "{path}: no inline script at all"
        );
    }
    let worklist = dash.page("/").await.body;
    assert!(worklist.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(worklist.contains("P&amp;&lt;b&gt;9&lt;/b&gt;"));
    let alarms = dash.page("/alarms").await.body;
    assert!(alarms.contains("&lt;script&gt;alert(3)&lt;/script&gt;"));
    let study_page = dash.page(&format!("/studies/{hostile}")).await.body;
    assert!(study_page.contains("A&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
}

#[tokio::test]
async fn filters_narrow_the_worklist() {
    let dash = Dash::new();
    let (escalated, overdue, due_soon, waiting) = seed_states(&mut dash.store());
    let mr = dash.page("/?modality=MR").await;
    assert_eq!(listed(&mr.body), [overdue.clone(), waiting]);
    assert!(
        mr.body.contains("<option value=\"MR\" selected>"),
        "{}",
        mr.body
    );
    let other = dash.page("/?source=other-trust").await;
    assert_eq!(listed(&other.body), [due_soon]);
    let overdue_only = dash.page("/?state=overdue").await;
    assert_eq!(listed(&overdue_only.body), [escalated, overdue.clone()]);
    let both = dash.page("/?modality=MR&source=ed&state=overdue").await;
    assert_eq!(listed(&both.body), [overdue]);
    // An empty choice means any; an unknown one matches nothing.
    assert_eq!(
        listed(&dash.page("/?modality=&source=").await.body).len(),
        4
    );
    let none = dash.page("/?modality=PT").await;
    assert!(listed(&none.body).is_empty());
    assert!(none.body.contains("id=\"worklist-empty\""));
}

#[tokio::test]
async fn worklist_pages_through_a_long_backlog_with_a_cursor() {
    let dash = Dash::new();
    let mut store = dash.store();
    let mut expected = Vec::new();
    for n in 0..130u32 {
        expected.push(study(
            &mut store,
            Seed {
                n: 100 + n,
                received_at: now() - hours(30),
                ..Seed::default()
            },
            Some(now() + mins(i64::from(n) + 1)),
        ));
    }
    let first = dash.page("/?modality=CT").await.body;
    let page1 = listed(&first);
    assert_eq!(page1.len(), 100);
    let needle = "id=\"show-more\" href=\"";
    let at = first.find(needle).expect("a next page link") + needle.len();
    let next = first[at..at + first[at..].find('"').unwrap()].replace("&amp;", "&");
    assert!(next.starts_with("/?modality=CT&after="), "{next}");
    let second = dash.page(&next).await.body;
    let page2 = listed(&second);
    assert_eq!(page2.len(), 30);
    assert!(!second.contains("id=\"show-more\""));
    assert!(second.contains("id=\"back-to-top\" href=\"/?modality=CT\""));
    let all: Vec<String> = page1.into_iter().chain(page2).collect();
    assert_eq!(all, expected);
    // A cursor that is not one of ours shows the first page.
    assert_eq!(listed(&dash.page("/?after=zz").await.body).len(), 100);
}

/// Studies waiting at `end` by the chart's definition, computed from the
/// seeded values: `(first received, reported at, needs a report)`.
fn waiting_at(seeded: &[(Timestamp, Option<Timestamp>, bool)], end: Timestamp) -> u64 {
    seeded
        .iter()
        .filter(|(first, reported, needs)| {
            *needs && *first <= end && reported.is_none_or(|r| r > end)
        })
        .count() as u64
}

#[tokio::test]
async fn backlog_chart_is_well_formed_svg_with_thirty_daily_points() {
    let dash = Dash::new();
    let mut store = dash.store();
    let t = now();
    // (received, reported, needs a report)
    let seeded = [
        (ts("2026-11-13T12:00:00Z"), None, true),
        (
            ts("2026-11-18T12:00:00Z"),
            Some(ts("2026-11-20T12:00:00Z")),
            true,
        ),
        (
            ts("2026-10-01T09:00:00Z"),
            Some(ts("2026-11-02T12:00:00Z")),
            true,
        ),
        (
            ts("2026-10-01T10:00:00Z"),
            Some(ts("2026-10-10T12:00:00Z")),
            true,
        ),
        (ts("2026-11-01T08:00:00Z"), None, false),
        (t - hours(2), None, true),
    ];
    for (i, (first, reported, needs)) in seeded.iter().enumerate() {
        let n = 300 + i as u32;
        let accession = format!("CH-{n}");
        store
            .record_instance(&instance(&Seed {
                n,
                accession: &accession,
                received_at: *first,
                ..Seed::default()
            }))
            .expect("record");
        store
            .set_deadlines(&[DeadlineUpdate {
                study_uid: uid(n),
                rule: None,
                no_report_needed: !needs,
                deadline: Some(*first + hours(24)),
            }])
            .expect("deadline");
        if let Some(r) = reported {
            store
                .record_report(&report(&accession, ReportStatus::Final, *r))
                .expect("report");
        }
    }
    let answer = dash.app.get("/backlog.svg", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("image/svg+xml; charset=utf-8")
    );
    let doc = roxmltree::Document::parse(&answer.body)
        .unwrap_or_else(|e| panic!("not well-formed XML ({e}): {}", answer.body));
    let svg = doc.root_element();
    assert_eq!(svg.tag_name().name(), "svg");
    assert_eq!(
        svg.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    assert_eq!(svg.attribute("role"), Some("img"));
    let text_of = |name: &str| {
        svg.children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .unwrap_or_else(|| panic!("no <{name}>"))
            .to_owned()
    };
    assert!(text_of("title").contains("last 30 days"));
    assert!(text_of("desc").contains("waiting now"));
    let points: Vec<u64> = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("class") == Some("point"))
        .map(|n| {
            n.attribute("data-count")
                .expect("count")
                .parse()
                .expect("number")
        })
        .collect();
    assert_eq!(points.len(), 30);
    // The ends of the 29 days before today (London is on GMT), then now.
    let today = ts("2026-11-23T00:00:00Z");
    let ends: Vec<Timestamp> = (0..29)
        .map(|k| today - hours(24 * (28 - k)))
        .chain([t])
        .collect();
    let expected: Vec<u64> = ends.iter().map(|e| waiting_at(&seeded, *e)).collect();
    assert_eq!(points, expected);
    // Spelled out: at the end of 2 November the third study still waited;
    // now, the first and the last wait.
    assert_eq!(points[7], 1);
    assert_eq!(points[8], 0);
    assert_eq!(points[29], 2);
    // Axis labels and a point's tooltip.
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("text") && n.text() == Some("now"))
    );
    assert!(
        doc.descendants().any(|n| n.has_tag_name("title")
            && n.text().is_some_and(|t| t.starts_with("Now: 2 waiting")))
    );

    // The same chart is inline on the worklist, with its figures as a table.
    let page = dash.page("/").await.body;
    let start = page.find("<svg").expect("an inline chart");
    let end = page.find("</svg>").expect("chart end") + 6;
    let inline = roxmltree::Document::parse(&page[start..end]).expect("inline SVG is XML too");
    assert_eq!(
        inline
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count(),
        30
    );
    assert!(page.contains("id=\"backlog-table\""));
}

#[tokio::test]
async fn study_page_tells_the_studys_story() {
    let dash = Dash::new();
    let mut store = dash.store();
    let t = now();
    let s = study(
        &mut store,
        Seed {
            n: 20,
            accession: "ACC-20",
            patient_id: "P20",
            description: "CT chest",
            received_at: t - hours(8),
            ..Seed::default()
        },
        Some(t - hours(4)),
    );
    let alarm = overdue_alarm(&mut store, &s, 1);
    store
        .acknowledge_alarm(
            alarm,
            "dr.lead",
            "reporting list booked",
            Some(t + hours(4)),
            t - hours(1),
        )
        .expect("ack")
        .expect("live");
    store
        .record_report(&report("ACC-20", ReportStatus::Preliminary, t - mins(30)))
        .expect("report");
    store
        .record_failure(&NewFailure {
            at: t - hours(7),
            calling_ae: "CT_ED".into(),
            source: "ed".into(),
            sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.2".into()),
            sop_instance_uid: Some(format!("{s}.1.9")),
            study_uid: Some(s.clone()),
            status: 0xA900,
            reason: "SOP Instance UID in the data set differs from the command".into(),
        })
        .expect("failure");
    let body = dash.page(&format!("/studies/{s}")).await.body;
    for expected in [
        "Study ACC-20",
        "CT chest",
        "P20",
        "CT from ED within 4 h",
        "overdue 4 h",
        // Its row state: overdue, the alarm acknowledged by a person.
        "class=\"state overdue\"",
        "acknowledged by dr.lead",
        // The timeline, from the audit log.
        "First instance received",
        "Alarm raised",
        "Alarm escalated",
        "Alarm acknowledged",
        "reporting list booked",
        "Report linked",
        "Instance refused",
        // The report and how it was linked.
        "preliminary",
        "by accession number",
        // Instances by series, and integrity.
        "id=\"series\"",
        "Axial",
        "2.0 kB",
        "0xA900",
    ] {
        assert!(body.contains(expected), "the study page lacks {expected:?}");
    }
    // The acknowledgement is credited to the person on the timeline.
    let at = body.find("Alarm acknowledged").expect("ack entry");
    let entry = &body[at..at + body[at..].find("</li>").expect("entry end")];
    assert!(
        entry.contains("<strong class=\"who\">dr.lead</strong>"),
        "{entry}"
    );
}

#[tokio::test]
async fn study_page_is_a_404_page_for_a_bad_or_unknown_uid() {
    let dash = Dash::new();
    for path in ["/studies/1.2.abc", "/studies/1.02.3", "/studies/1.2.3.404"] {
        let answer = dash.app.get(path, &[]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            answer.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}: errors on pages are pages"
        );
        assert!(answer.body.contains("404 Not Found"), "{}", answer.body);
    }
}

/// A report carrying a fail-safe alert; returns its id.
fn alert_report(store: &mut Store, accession: &str) -> i64 {
    let mut r = report(accession, ReportStatus::Final, now() - hours(2));
    r.alert_category = Some("critical".into());
    store.record_report(&r).expect("report").0
}

#[tokio::test]
async fn alarms_page_offers_an_acknowledge_form_per_alarm_and_lists_alerts() {
    let dash = Dash::new();
    let mut store = dash.store();
    let (escalated, overdue, ..) = seed_states(&mut store);
    let old = study(
        &mut store,
        Seed {
            n: 30,
            accession: "ACC-30",
            received_at: now() - hours(30),
            ..Seed::default()
        },
        Some(now() - hours(26)),
    );
    let acked = overdue_alarm(&mut store, &old, 1);
    store
        .acknowledge_alarm(acked, "dr.lead", "list booked", None, now())
        .expect("ack")
        .expect("live");
    let report = alert_report(&mut store, "ACC-ALERT");
    let body = dash.page("/alarms").await.body;
    let open = &body
        [body.find("id=\"open-alarms\"").unwrap()..body.find("id=\"failsafe-alerts\"").unwrap()];
    for study in [&escalated, &overdue] {
        assert!(open.contains(&format!("/studies/{study}")), "{open}");
    }
    assert_eq!(open.matches("<form class=\"ack\"").count(), 2, "{open}");
    for field in [
        "name=\"reason\"",
        "<select",
        "name=\"for\"",
        "<option value=\"\">Until resolved</option>",
        "type=\"hidden\" name=\"csrf\"",
    ] {
        assert!(open.contains(field), "{field}: {open}");
    }
    // Nobody is signed in: the page says how to, once.
    assert_eq!(body.matches("class=\"signin-note\"").count(), 1);
    assert!(body.contains("<a href=\"/login?next=/alarms\">Sign in</a> to acknowledge"));
    let alerts = &body[body.find("id=\"failsafe-alerts\"").unwrap()
        ..body.find("id=\"acknowledged-alarms\"").unwrap()];
    assert!(
        alerts.contains(&format!("action=\"/reports/{report}/acknowledge\"")),
        "{alerts}"
    );
    assert!(alerts.contains("Critical: act immediately"));
    let acknowledged = &body[body.find("id=\"acknowledged-alarms\"").unwrap()..];
    assert!(acknowledged.contains(&format!("id=\"alarm-{acked}\"")));
    assert!(acknowledged.contains("dr.lead") && acknowledged.contains("until resolved"));
    // Forms are typed into here: no refresh that would lose what is typed.
    assert!(!body.contains("http-equiv=\"refresh\""));
}

#[tokio::test]
async fn a_form_post_without_sign_in_goes_to_login_and_changes_nothing() {
    let dash = Dash::new();
    let mut store = dash.store();
    let (escalated, ..) = seed_states(&mut store);
    let alarm = store
        .study_alarms(std::slice::from_ref(&escalated))
        .unwrap()[0]
        .alarm_id;
    let report = alert_report(&mut store, "ACC-ALERT");
    for (path, back) in [
        (format!("/alarms/{alarm}/ack"), "/alarms"),
        (format!("/reports/{report}/acknowledge"), "/alarms"),
        ("/reports/1/confirm".to_owned(), "/reports"),
        ("/reports".to_owned(), "/reports"),
    ] {
        let answer = dash
            .app
            .post_form(
                &path,
                &[("reason", "seen"), ("note", "told"), ("csrf", "")],
                &[],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            answer.header("location"),
            Some(format!("/login?next={back}").as_str()),
            "{path}"
        );
    }
    let store = dash.store();
    assert_eq!(store.alarm(alarm).unwrap().unwrap().state, "open");
    assert!(
        store
            .report(report)
            .unwrap()
            .unwrap()
            .alert_acknowledged_at
            .is_none()
    );
}

#[tokio::test]
async fn ack_by_bearer_token_acknowledges_and_the_audit_names_the_holder() {
    let dash = Dash::new();
    let mut store = dash.store();
    let (escalated, ..) = seed_states(&mut store);
    let alarm = store
        .study_alarms(std::slice::from_ref(&escalated))
        .unwrap()[0]
        .alarm_id;
    let answer = dash
        .post_as_holder(
            &format!("/alarms/{alarm}/ack"),
            &[
                ("reason", " radiologist called "),
                ("for", "4h"),
                ("csrf", ""),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let back = format!("/alarms?acked={alarm}#alarm-{alarm}");
    assert_eq!(answer.header("location"), Some(back.as_str()));
    let a = dash.store().alarm(alarm).unwrap().unwrap();
    assert_eq!(a.state, "acknowledged");
    assert_eq!(a.acknowledged_by.as_deref(), Some(HOLDER));
    assert_eq!(a.ack_reason.as_deref(), Some("radiologist called"));
    assert_eq!(a.acknowledged_until, Some(now() + hours(4)));
    let audit = dash.store().audit(Some(&escalated), None).unwrap();
    let row = audit
        .iter()
        .find(|r| r.action == "alarm_acknowledged")
        .expect("audited");
    assert_eq!(row.actor, HOLDER);
    // The page it returns to says what happened, once.
    let page = dash.page(&format!("/alarms?acked={alarm}")).await.body;
    assert!(
        page.contains(&format!(
            "Alarm {alarm} (Overdue report) acknowledged by {HOLDER}"
        )),
        "{page}"
    );
    assert!(page.contains("data-clear=\"acked alert_acked\""));
    // The worklist shows it as acknowledged, by whom.
    let worklist = dash.page("/").await.body;
    assert!(row_text(&worklist, &escalated).contains(&format!("acknowledged by {HOLDER}")));
}

fn row_text(body: &str, study: &str) -> String {
    row(body, study).to_owned()
}

#[tokio::test]
async fn form_mistakes_are_answered_with_html_pages() {
    let dash = Dash::new();
    let mut store = dash.store();
    let (escalated, ..) = seed_states(&mut store);
    let alarm = store
        .study_alarms(std::slice::from_ref(&escalated))
        .unwrap()[0]
        .alarm_id;
    // (path, fields, status, what the page mentions)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, StatusCode, &'a str);
    let cases: [Case; 6] = [
        (
            format!("/alarms/{alarm}/ack"),
            vec![("reason", "  "), ("for", "4h")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason",
        ),
        (
            format!("/alarms/{alarm}/ack"),
            vec![("reason", "ok"), ("for", "soon")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "not valid",
        ),
        (
            "/alarms/999999/ack".to_owned(),
            vec![("reason", "ok"), ("for", "")],
            StatusCode::CONFLICT,
            "999999",
        ),
        (
            "/alarms/abc/ack".to_owned(),
            vec![("reason", "ok")],
            StatusCode::NOT_FOUND,
            "abc",
        ),
        (
            "/reports".to_owned(),
            vec![("status", "final")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "accession number or a study UID",
        ),
        (
            "/reports/1/confirm".to_owned(),
            vec![("study_uid", "1.2.x"), ("decision", "confirm")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "not valid",
        ),
    ];
    for (path, fields, status, mentions) in &cases {
        let answer = dash.post_as_holder(path, fields).await;
        assert_eq!(answer.status, *status, "{path}: {}", answer.body);
        assert_eq!(
            answer.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(
            answer.body.contains(mentions),
            "{path} should mention {mentions:?}: {}",
            answer.body
        );
    }
    // A query string that cannot be read is a page too.
    let answer = dash.app.get("/?modality=CT&modality=MR", &[]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(dash.store().alarm(alarm).unwrap().unwrap().state, "open");
}

#[tokio::test]
async fn alerts_probable_links_and_manual_reports_are_handled_by_form() {
    let dash = Dash::new();
    let mut store = dash.store();
    let alert = alert_report(&mut store, "ACC-ALERT");
    // A probable link: the report names only a patient ID and a date.
    let s = study(
        &mut store,
        Seed {
            n: 40,
            patient_id: "PX40",
            accession: "ACC-40",
            ..Seed::default()
        },
        Some(now() + hours(1)),
    );
    store.set_link_policy(LinkPolicy {
        probable: true,
        ..LinkPolicy::default()
    });
    let mut guess = report("", ReportStatus::Final, now() - hours(1));
    guess.accession_number = None;
    guess.patient_ids = vec![PatientId {
        id: "PX40".into(),
        authority: None,
        kind: None,
    }];
    let (guessed, links) = store.record_report(&guess).expect("report");
    assert!(
        links.iter().any(|l| l.probable && l.study_uid == s),
        "{links:?}"
    );
    // And one that matches nothing.
    let (lost, _) = store
        .record_report(&report(
            "ACC-NOWHERE",
            ReportStatus::Final,
            now() - hours(5),
        ))
        .expect("report");

    let page = dash.page("/reports").await.body;
    let probable = &page[page.find("id=\"probable-links\"").unwrap()
        ..page.find("id=\"unmatched-reports\"").unwrap()];
    assert!(
        probable.contains(&format!("action=\"/reports/{guessed}/confirm\"")),
        "{probable}"
    );
    assert!(probable.contains(&format!("name=\"study_uid\" value=\"{s}\"")));
    assert!(probable.contains("value=\"confirm\"") && probable.contains("value=\"reject\""));
    let unmatched = &page
        [page.find("id=\"unmatched-reports\"").unwrap()..page.find("id=\"manual-link\"").unwrap()];
    assert!(
        unmatched.contains(&format!("id=\"report-{lost}\"")),
        "{unmatched}"
    );
    assert!(unmatched.contains("ACC-NOWHERE"));
    assert!(page.contains("id=\"manual-link-form\""));

    let answer = dash
        .post_as_holder(
            &format!("/reports/{alert}/acknowledge"),
            &[("note", "told the ward sister")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(
        answer.header("location"),
        Some(format!("/alarms?alert_acked={alert}").as_str())
    );
    let r = dash.store().report(alert).unwrap().unwrap();
    assert_eq!(r.alert_acknowledged_by.as_deref(), Some(HOLDER));

    let answer = dash
        .post_as_holder(
            &format!("/reports/{guessed}/confirm"),
            &[("study_uid", &s), ("decision", "confirm")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(
        answer.header("location"),
        Some(format!("/reports?confirmed={guessed}").as_str())
    );
    let row = dash.store().study_row(&s).unwrap().unwrap();
    assert!(row.reported_at.is_some(), "a confirmed final report counts");
    let audit = dash.store().audit(Some(&s), None).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "link_confirmed" && a.actor == HOLDER)
    );
    // A link that is not a probable one has nothing to decide.
    let other = dash
        .post_as_holder(
            &format!("/reports/{lost}/confirm"),
            &[("study_uid", &s), ("decision", "reject")],
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{}", other.body);

    let waiting = study(
        &mut dash.store(),
        Seed {
            n: 41,
            accession: "ACC-41",
            ..Seed::default()
        },
        Some(now() + hours(2)),
    );
    let answer = dash
        .post_as_holder(
            "/reports",
            &[
                ("accession", "ACC-41"),
                ("status", "final"),
                ("author", "Dr Hand"),
                ("time", "2026-11-23T09:30"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.header("location").expect("location").to_owned();
    let id: i64 = location
        .strip_prefix("/reports?linked=")
        .expect("back to reports")
        .parse()
        .unwrap();
    let r = dash.store().report(id).unwrap().unwrap();
    assert_eq!(r.origin, ReportOrigin::Manual);
    assert_eq!(r.recorded_by.as_deref(), Some(HOLDER));
    assert_eq!(r.reported_at, Some(ts("2026-11-23T09:30:00Z")));
    assert!(
        dash.store()
            .study_row(&waiting)
            .unwrap()
            .unwrap()
            .reported_at
            .is_some()
    );
    let flash = dash.page(&location).await.body;
    assert!(
        flash.contains(&format!("Report {id} recorded and linked to")),
        "{flash}"
    );
}

#[tokio::test]
async fn health_page_shows_ingest_refusals_storage_peers_and_notifications() {
    let dash = Dash::new();
    let mut store = dash.store();
    let s = study(
        &mut store,
        Seed {
            n: 50,
            accession: "ACC-50",
            received_at: now() - hours(1),
            ..Seed::default()
        },
        None,
    );
    // A second instance today, and one yesterday in another study.
    let mut second = instance(&Seed {
        n: 50,
        received_at: now() - mins(30),
        ..Seed::default()
    });
    second.sop_instance_uid = format!("{s}.1.2");
    store.record_instance(&second).expect("second");
    study(
        &mut store,
        Seed {
            n: 51,
            received_at: now() - hours(30),
            ..Seed::default()
        },
        None,
    );
    for status in [0xA900u16, 0xA900, 0xC000] {
        store
            .record_failure(&NewFailure {
                at: now() - hours(2),
                calling_ae: "MR_OLD".into(),
                source: "radiology".into(),
                sop_class_uid: None,
                sop_instance_uid: Some("1.2.3".into()),
                study_uid: None,
                status,
                reason: format!("reason {status:04X}"),
            })
            .expect("failure");
    }
    store
        .record_conflict(&NewConflict {
            at: now() - hours(3),
            sop_instance_uid: format!("{s}.1.1"),
            study_uid: Some(s.clone()),
            calling_ae: "CT_ED".into(),
            existing_sha256: "cd".repeat(32),
            new_sha256: "ef".repeat(32),
            quarantine_path: "quarantine/x.dcm".into(),
        })
        .expect("conflict");
    let queued = store
        .queue_notification(
            &NewNotification {
                alarm_id: None,
                channel: "email-ward".into(),
                event: "digest".into(),
                step: None,
                payload: "{}".into(),
            },
            now() - hours(2),
        )
        .expect("queue");
    store
        .record_attempt(
            queued,
            Err("550 mailbox unavailable"),
            None,
            now() - hours(1),
        )
        .expect("attempt");
    store
        .queue_notification(
            &NewNotification {
                alarm_id: None,
                channel: "webhook-pager".into(),
                event: "digest".into(),
                step: None,
                payload: "{}".into(),
            },
            now() - mins(10),
        )
        .expect("queue");
    let body = dash.page("/health").await.body;
    let figure = |id: &str| -> String {
        let at = body
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no {id}"));
        body[at..at + body[at..].find("</li>").unwrap()].to_owned()
    };
    assert!(
        figure("instances-today").contains(">2<"),
        "{}",
        figure("instances-today")
    );
    assert!(figure("rejected-today").contains(">3<"));
    assert!(figure("storage").contains("free for storage"));
    let rejections =
        &body[body.find("id=\"rejections\"").unwrap()..body.find("id=\"conflicts\"").unwrap()];
    assert!(
        rejections.contains("0xA900") && rejections.contains("0xC000"),
        "{rejections}"
    );
    assert!(rejections.contains("MR_OLD"));
    let conflicts =
        &body[body.find("id=\"conflicts\"").unwrap()..body.find("id=\"peers\"").unwrap()];
    assert!(conflicts.contains(&format!("{s}.1.1")));
    let peers = &body[body.find("id=\"peers\"").unwrap()..body.find("id=\"hl7\"").unwrap()];
    assert!(peers.contains("data-calling-ae=\"CT_ED\""), "{peers}");
    assert!(body.contains("none received yet"));
    let outbox = &body[body.find("id=\"outbox\"").unwrap()..];
    assert!(outbox.contains("id=\"outbox-pending\">1<"), "{outbox}");
    assert!(outbox.contains("550 mailbox unavailable"));
    assert!(outbox.contains("email-ward"));
}

#[tokio::test]
async fn pages_show_who_is_signed_in_and_forms_carry_the_session_csrf_token() {
    let password = "correct horse battery staple";
    let hash = studywatch::http::auth::files::hash_password(password).expect("hash");
    let dash = Dash::with(
        "users_file = \"{secrets}/users\"",
        Some(&format!("dr.lead:{hash}\n")),
    );
    let mut store = dash.store();
    let (escalated, ..) = seed_states(&mut store);
    let alarm = store
        .study_alarms(std::slice::from_ref(&escalated))
        .unwrap()[0]
        .alarm_id;

    let anonymous = dash.page("/alarms").await.body;
    assert!(
        anonymous.contains("href=\"/login?next=/alarms\""),
        "a sign-in link back here"
    );

    let signed = dash
        .app
        .post_form(
            "/login",
            &[
                ("user", "dr.lead"),
                ("password", password),
                ("next", "/alarms"),
            ],
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let cookie = signed
        .header("set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = dash.app.get("/alarms", &[("cookie", &cookie)]).await.body;
    assert!(
        page.contains("Signed in as <strong>dr.lead</strong>"),
        "{page}"
    );
    assert!(page.contains("<form class=\"signout\" method=\"post\" action=\"/logout\">"));
    let csrf = csrf_of(&page);
    assert!(!csrf.is_empty());

    let path = format!("/alarms/{alarm}/ack");
    let headers = [
        ("cookie", cookie.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let forged = dash
        .app
        .post_form(
            &path,
            &[("reason", "x"), ("for", ""), ("csrf", "not-the-token")],
            &headers,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert_eq!(
        forged.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(dash.store().alarm(alarm).unwrap().unwrap().state, "open");

    let cross = dash
        .app
        .post_form(
            &path,
            &[("reason", "x"), ("for", ""), ("csrf", &csrf)],
            &[
                ("cookie", cookie.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.body);

    let ok = dash
        .app
        .post_form(
            &path,
            &[("reason", "on the list"), ("for", ""), ("csrf", &csrf)],
            &headers,
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let a = dash.store().alarm(alarm).unwrap().unwrap();
    assert_eq!(a.state, "acknowledged");
    assert_eq!(a.acknowledged_by.as_deref(), Some("dr.lead"));
    assert_eq!(a.acknowledged_until, None, "until resolved");
    let audit = dash.store().audit(Some(&escalated), None).unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.action == "alarm_acknowledged" && r.actor == "dr.lead")
    );
}

#[tokio::test]
async fn static_assets_are_typed_and_cached_and_pages_are_not() {
    let dash = Dash::new();
    for (path, kind) in [
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/app.js", "text/javascript; charset=utf-8"),
    ] {
        let answer = dash.app.get(path, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.header("content-type"), Some(kind), "{path}");
        assert_eq!(
            answer.header("cache-control"),
            Some("public, max-age=86400"),
            "{path}"
        );
        assert!(!answer.body.is_empty());
    }
    for path in ["/", "/alarms", "/reports", "/health"] {
        let answer = dash.page(path).await;
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
        assert!(
            answer
                .body
                .contains("<link rel=\"stylesheet\" href=\"/static/style.css\">")
        );
        assert!(
            answer.body.contains("name=\"viewport\""),
            "{path}: readable on a phone"
        );
        assert!(
            answer
                .body
                .contains("id=\"rendered-at\">Mon 23 Nov 2026 10:00:00 GMT<"),
            "{path}"
        );
        assert!(answer.body.contains("aria-current=\"page\""), "{path}");
    }
}

#[tokio::test]
async fn an_unknown_page_is_an_html_404_for_a_browser_and_json_for_a_client() {
    let d = Dash::new();
    let page = d
        .app
        .get(
            "/no/such/page",
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    assert!(
        page.body.contains("There is no such page."),
        "{}",
        page.body
    );
    let json = d.app.get("/no/such/page", &[]).await;
    assert_eq!(json.status, StatusCode::NOT_FOUND);
    assert_eq!(json.json()["status"], 404);
}
