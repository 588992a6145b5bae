//! Controls from the hazard log (docs/clinical-safety/hazards/) that no
//! other module exercised end to end: each test drives the gateway through
//! its interfaces (DICOM from DCMTK, HL7 from python-hl7's mllp_send, a
//! real SMTP server, the CLI, HTTP, its log file) and names, in its doc
//! comment, the hazard whose control it proves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::reports::{fixture, mllp_send, send_study, storescu, subs};

/// UIDs of this file's studies live under this root.
const ROOT: &str = "1.2.826.0.1.3680043.10.1661.79";

fn uid(group: u32, n: u32) -> String {
    format!("{ROOT}.{group}.{n}")
}

/// An HL7 fixture for `accession` whose PID-3 hospital number (the `MR`
/// repeat) is `patient`; the fixture's NHS-number repeat stays as written.
fn report_for(file: &str, control_id: &str, accession: &str, patient: &str) -> Vec<u8> {
    report_at(file, control_id, accession, patient, "20261120143000")
}

fn report_at(
    file: &str,
    control_id: &str,
    accession: &str,
    patient: &str,
    report_time: &str,
) -> Vec<u8> {
    let mut values = subs(control_id, "", accession, "PL-79", "FL-79");
    for (key, value) in values.iter_mut() {
        match *key {
            "PATIENT_ID" => *value = patient,
            "REPORT_TIME" => *value = report_time,
            _ => {}
        }
    }
    fixture(file, &values)
}

fn actions(study: &Value) -> Vec<String> {
    study["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect()
}

/// Alarms of `kind` as the CLI lists them.
fn alarms_of(config: &Path, kind: &str) -> Vec<Value> {
    cli_json_at(config, &["alarms", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

/// One CT instance of a study dated `date` (YYYYMMDD, Study Time 10:15),
/// written by tests/peers/make_study.py; returns its path.
fn study_file(
    dir: &Path,
    uid: &str,
    accession: &str,
    patient: &str,
    date: &str,
    index: u32,
) -> PathBuf {
    make_study(
        &dir.join(format!("images-{accession}-{index}")),
        &[
            "--study-uid",
            uid,
            "--accession",
            accession,
            "--patient-id",
            patient,
            "--study-date",
            date,
            "--index",
            &index.to_string(),
        ],
    )
}

/// DCMTK storescu (verbose: it then prints each response's status) to a
/// gateway on `port`.
fn storescu_to(port: u16, file: &Path) -> std::process::Output {
    dcmtk(
        "storescu",
        &[
            "-v",
            "-aec",
            AE,
            "127.0.0.1",
            &port.to_string(),
            file.to_str().unwrap(),
        ],
    )
}

/// `[watchdog]` and `[notify]` for one rule due `within` after receipt that
/// mails `to` at once and repeats hourly.
fn mail_rule(smtp_port: u16, within: &str, to: &str) -> String {
    format!(
        r#"
[watchdog]
calendar = ""

[[watchdog.rules]]
name = "fast lane"
report_within = "{within}"
escalate = [ {{ after = "0s", notify = ["team"] }} ]
repeat_every = "1h"

[notify]
retry_initial = "1s"
retry_max = "2s"

[notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "studywatch@example.org"

[[notify.channels]]
name = "team"
kind = "email"
to = ["{to}"]
digest = false
"#
    )
}

fn mails_to(mails: &[String], who: &str) -> Vec<String> {
    mails
        .iter()
        .filter(|m| m.contains(&format!("X-RcptTo: {who}")))
        .cloned()
        .collect()
}

/// H-002, H-009: a report links by whichever of its PID-3 identifiers the
/// study carries (hospital number or NHS number), and never to a study of
/// another patient that happens to carry the same accession number (as one
/// from another trust may): that study stays unreported, the refusal is
/// audited, and the report waits on the unmatched list.
#[test]
fn a_report_links_by_either_patient_identifier_and_never_to_another_patient() {
    let gw = TestGateway::start();
    let (hospital, nhs, other) = (uid(1, 1), uid(1, 2), uid(1, 3));
    // The MR repeat of the report's PID-3 is the study's Patient ID.
    send_study(&gw, &hospital, "ACC-P1", "RXX3000001");
    // The modality put the NHS number (the fixture's second PID-3 repeat)
    // in Patient ID.
    send_study(&gw, &nhs, "ACC-P2", "9990000026");
    // Another patient's study under the same accession as the third report.
    send_study(&gw, &other, "ACC-P3", "RYY7000001");
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[
            report_for("oru-accession.hl7", "P1", "ACC-P1", "RXX3000001"),
            report_for("oru-accession.hl7", "P2", "ACC-P2", "RXX3000002"),
            report_for("oru-accession.hl7", "P3", "ACC-P3", "RXX3000001"),
        ],
    );
    for ack in &acks {
        assert_eq!(ack.code, "AA", "{ack:?}");
    }
    for study in [&hospital, &nhs] {
        let s = gw.cli_json(&["study", study, "--json"]);
        assert_eq!(s["state"], "reported", "{s:#}");
        assert_eq!(s["reports"][0]["links"][0]["rule"], "accession", "{s:#}");
    }
    let s = gw.cli_json(&["study", &other, "--json"]);
    assert_eq!(s["state"], "unreported", "{s:#}");
    assert!(s["reports"].as_array().unwrap().is_empty(), "{s:#}");
    assert!(
        actions(&s).iter().any(|a| a == "report_link_refused"),
        "{s:#}"
    );
    let unmatched = gw.cli_json(&["reports", "--unmatched", "--json"]);
    let accessions: Vec<&str> = unmatched
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["accession_number"].as_str().unwrap())
        .collect();
    assert_eq!(accessions, ["ACC-P3"], "{unmatched:#}");
}

/// H-005: deadlines counted in the site's zone. A working day crosses the
/// spring DST change and the Easter bank holidays of the shipped England
/// and Wales calendar; calendar hours are elapsed time across the lost
/// hour; an HL7 report time without an offset is read as British Summer
/// Time.
#[test]
fn deadlines_follow_dst_and_bank_holidays_in_the_site_zone() {
    let calendar = repo().join("conf/calendars/england-and-wales.toml");
    let gw = TestGateway::with(Options {
        tail: format!(
            r#"
[watchdog]
calendar = "{calendar}"

[watchdog.working_hours]
mon-fri = "08:00-18:00"
"sat,sun" = "closed"

[[watchdog.rules]]
name = "saturday, calendar hours"
match = {{ StudyDate = ["20260328"] }}
report_within = "24h"
clock = "study_time"

[[watchdog.rules]]
name = "one working day"
report_within = "1d"
hours = "working"
clock = "study_time"
"#,
            calendar = calendar.display()
        ),
        ..Options::default()
    });
    // Study Time is 10:15 local in each.
    let cases = [
        // Friday before the clocks go forward: Monday 10:15 BST.
        (uid(2, 1), "ACC-D1", "20260327", "2026-03-30T09:15:00Z"),
        // Saturday 10:15 GMT + 24 h: Sunday 10:15 UTC (11:15 BST).
        (uid(2, 2), "ACC-D2", "20260328", "2026-03-29T10:15:00Z"),
        // Thursday before Easter: Good Friday and Easter Monday are bank
        // holidays, so Tuesday 10:15 BST.
        (uid(2, 3), "ACC-D3", "20260402", "2026-04-07T09:15:00Z"),
    ];
    for (study, accession, date, _) in &cases {
        let file = study_file(gw.dir.path(), study, accession, "RXX3000010", date, 1);
        storescu(&gw, &file);
    }
    for (study, _, _, due) in &cases {
        wait_for("the deadline", Duration::from_secs(15), || {
            !gw.cli_json(&["study", study, "--json"])["deadline"].is_null()
        });
        let s = gw.cli_json(&["study", study, "--json"]);
        assert_eq!(s["deadline"], *due, "{study}: {s:#}");
        let out = gw.cli(&["rules", "explain", study]);
        assert!(out.status.success(), "{}", show(&out));
        assert!(
            show(&out).contains(&format!("deadline {due}")),
            "{}",
            show(&out)
        );
    }
    // OBR-22 14:30 on a BST day is 13:30 UTC.
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[report_at(
            "oru-accession.hl7",
            "D1",
            "ACC-D1",
            "RXX3000010",
            "20260330143000",
        )],
    );
    assert_eq!(acks[0].code, "AA", "{:?}", acks[0]);
    let s = gw.cli_json(&["study", &cases[0].0, "--json"]);
    assert_eq!(s["state"], "reported", "{s:#}");
    assert_eq!(s["reported_at"], "2026-03-30T13:30:00Z", "{s:#}");
}

/// H-006: an HL7 feed quiet for longer than `feed_silent_after` of working
/// time raises `feed_silent`, which `studywatch alarms` and `/metrics` show.
#[test]
fn a_silent_hl7_feed_raises_feed_silent() {
    let gw = TestGateway::with(Options {
        tail: r#"
[watchdog]
calendar = ""
feed_silent_after = "2s"

[watchdog.working_hours]
mon-sun = "00:00-24:00"
"#
        .into(),
        ..Options::default()
    });
    // Let the feed stay quiet past the threshold; a stored study then
    // wakes the watchdog (it would look again within a minute anyway).
    std::thread::sleep(Duration::from_secs(3));
    send_study(&gw, &uid(3, 1), "ACC-F1", "RXX3000020");
    wait_for("the feed_silent alarm", Duration::from_secs(75), || {
        alarms_of(&gw.config_path, "feed_silent")
            .iter()
            .any(|a| a["state"] == "open")
    });
    let (status, metrics) = http_get(gw.http_port, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains("studywatch_alarms{kind=\"feed_silent\",state=\"open\"} 1"),
        "{metrics}"
    );
    // A message arrives: the feed is alive again and the alarm resolves on
    // its own, without waiting for its next escalation step.
    let message = report_for("oru-accession.hl7", "MSG-F1", "ACC-F1", "RXX3000020");
    mllp_send(gw.hl7_port, gw.dir.path(), &[message]);
    wait_for("feed_silent to resolve", Duration::from_secs(30), || {
        alarms_of(&gw.config_path, "feed_silent")
            .iter()
            .all(|a| a["state"] == "resolved")
    });
}

/// H-016, H-001: below its free-space floor the gateway refuses C-STOREs
/// with 0xA700 (the sender keeps the images and retries), raises
/// `storage_low` and an `integrity` alarm for the refused sender, and
/// `/readyz` says it is not ready.
#[test]
fn storage_below_its_floor_refuses_stores_alarms_storage_low_and_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let http_port = free_port();
    let config = write_process_config(
        dir.path(),
        port,
        &Options {
            http_port: Some(http_port),
            ..Options::default()
        },
    );
    // A floor of 1 PiB: no test machine has that much free.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("min_free_bytes = 0"), "{text}");
    std::fs::write(
        &config,
        text.replace("min_free_bytes = 0", "min_free_bytes = 1125899906842624"),
    )
    .unwrap();
    let _gw = GatewayProcess::start(&config, port, &[]);

    let file = study_file(
        dir.path(),
        &uid(4, 1),
        "ACC-S1",
        "RXX3000030",
        "20261120",
        1,
    );
    let out = storescu_to(port, &file);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("Refused: OutOfResources"),
        "{}",
        show(&out)
    );
    let studies = cli_json_at(&config, &["studies", "--json"]);
    assert!(studies.as_array().unwrap().is_empty(), "{studies:#}");
    let (_, metrics) = http_get(http_port, "/metrics");
    assert!(
        metrics.contains("studywatch_instances_received_total{status=\"0xa700\""),
        "{metrics}"
    );
    wait_for("the storage_low alarm", Duration::from_secs(15), || {
        alarms_of(&config, "storage_low")
            .iter()
            .any(|a| a["state"] == "open")
    });
    // DCMTK's storescu calls as STORESCU: its refusals are one alarm.
    wait_for(
        "the refused sender's alarm",
        Duration::from_secs(15),
        || {
            alarms_of(&config, "integrity").iter().any(|a| {
                a["state"] == "open"
                    && a["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("calling AE STORESCU refused"))
            })
        },
    );
    let (status, body) = http_get(http_port, "/readyz");
    assert_eq!(status, 503, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    let space = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "storage_space")
        .cloned()
        .unwrap();
    assert_eq!(space["ok"], false, "{body}");
}

/// H-004: a relay that refuses the address for good (SMTP 550) makes the
/// notification `notify_failed` at once, and that shows in the audit log,
/// in `studywatch alarms` and in `/metrics`; the alarm itself stays open.
#[test]
fn a_relay_that_refuses_the_address_gives_the_notification_up_visibly() {
    let smtp_port = free_port();
    let mail = tempfile::tempdir().unwrap();
    let _smtp = SmtpPeer::start(smtp_port, &mail.path().join("maildir"));
    let gw = TestGateway::with(Options {
        tail: mail_rule(smtp_port, "1s", "permfail@example.org"),
        ..Options::default()
    });
    let study = uid(5, 1);
    send_study(&gw, &study, "ACC-N1", "RXX3000040");
    wait_for(
        "the notification to be given up",
        Duration::from_secs(20),
        || {
            gw.cli_json(&["audit", "--study", &study, "--json"])
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["action"] == "notify_failed")
        },
    );
    let out = gw.cli(&["alarms"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("could not be delivered (notify_failed)"),
        "{}",
        show(&out)
    );
    let (_, metrics) = http_get(gw.http_port, "/metrics");
    assert!(metrics.contains("studywatch_outbox_failed 1"), "{metrics}");
    let open = alarms_of(&gw.config_path, "overdue_report");
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["state"], "open");
}

/// H-008: a study has one live alarm however many of its instances arrive,
/// and an acknowledgement given for a while re-arms the alarm when it ends:
/// the current step is sent again and the audit log says why.
#[test]
fn an_acknowledgement_that_runs_out_re_arms_the_alarm_and_a_study_keeps_one_alarm() {
    let smtp_port = free_port();
    let mail = tempfile::tempdir().unwrap();
    let smtp = SmtpPeer::start(smtp_port, &mail.path().join("maildir"));
    let gw = TestGateway::with(Options {
        tail: mail_rule(smtp_port, "1s", "team@example.org"),
        ..Options::default()
    });
    let study = uid(6, 1);
    let first = study_file(gw.dir.path(), &study, "ACC-R1", "RXX3000050", "20261120", 1);
    storescu(&gw, &first);
    wait_for("the first email", Duration::from_secs(20), || {
        mails_to(&smtp.mails(), "team@example.org").len() == 1
    });
    // More of the same study: still one alarm, no second email.
    let second = study_file(gw.dir.path(), &study, "ACC-R1", "RXX3000050", "20261120", 2);
    storescu(&gw, &second);
    let alarms = alarms_of(&gw.config_path, "overdue_report");
    assert_eq!(alarms.len(), 1, "{alarms:#?}");
    let id = alarms[0]["id"].as_i64().unwrap().to_string();

    let out = gw.cli(&[
        "ack",
        &id,
        "--by",
        "alice",
        "--reason",
        "on the list",
        "--for",
        "2s",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        alarms_of(&gw.config_path, "overdue_report")[0]["state"],
        "acknowledged"
    );
    wait_for("the alarm to re-arm", Duration::from_secs(20), || {
        alarms_of(&gw.config_path, "overdue_report")[0]["state"] == "open"
    });
    wait_for("the step to be sent again", Duration::from_secs(20), || {
        mails_to(&smtp.mails(), "team@example.org").len() == 2
    });
    let audit = gw.cli_json(&["audit", "--study", &study, "--json"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "alarm_rearmed"),
        "{audit:#}"
    );
    assert_eq!(alarms_of(&gw.config_path, "overdue_report").len(), 1);
}

/// H-012: with logging at debug, neither the gateway's log nor the mail it
/// sends carries the patient's name, birth date or address, or the report
/// text, although the images and the HL7 reports it handled carried them.
#[test]
fn logs_and_notifications_carry_no_patient_name_and_no_report_text() {
    let smtp_port = free_port();
    let mail = tempfile::tempdir().unwrap();
    let smtp = SmtpPeer::start(smtp_port, &mail.path().join("maildir"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hl7_port = free_port();
    let config = write_process_config(
        dir.path(),
        port,
        &Options {
            hl7_port: Some(hl7_port),
            tail: mail_rule(smtp_port, "1s", "team@example.org"),
            ..Options::default()
        },
    );
    let mut gw = GatewayProcess::start(&config, port, &[]);
    let (overdue, reported) = (uid(7, 1), uid(7, 2));
    for (study, accession) in [(&overdue, "ACC-L1"), (&reported, "ACC-L2")] {
        let file = study_file(dir.path(), study, accession, "RXX3000060", "20261120", 1);
        let out = storescu_to(port, &file);
        assert!(out.status.success(), "{}", show(&out));
    }
    // A preliminary report on the overdue study (it stays overdue) and a
    // final one on the other: both carry PID-5, PID-7, PID-11 and text.
    let acks = mllp_send(
        hl7_port,
        dir.path(),
        &[
            report_for("oru-preliminary.hl7", "L1", "ACC-L1", "RXX3000060"),
            report_for("oru-accession.hl7", "L2", "ACC-L2", "RXX3000060"),
        ],
    );
    assert!(acks.iter().all(|a| a.code == "AA"), "{acks:?}");
    wait_for("the alarm email", Duration::from_secs(20), || {
        !mails_to(&smtp.mails(), "team@example.org").is_empty()
    });
    gw.kill9();

    let log_path = config.with_extension(format!("log.{}", std::process::id()));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("ACC-L1") || log.contains(&overdue),
        "the log is the gateway's: {log}"
    );
    let mails = mails_to(&smtp.mails(), "team@example.org");
    assert!(mails[0].contains("ACC-L1"), "{}", mails[0]);
    for (what, text) in [("log", log.as_str()), ("mail", mails[0].as_str())] {
        for secret in [
            // make_study.py's Patient's Name.
            "TEST^REPORTS",
            // PID-5, PID-7 and PID-11 of the two fixtures.
            "CHAPMAN",
            "HUGHES",
            "19480312",
            "19860121",
            "Orchard Lane",
            "Heol y Nant",
            // Report text of each.
            "posterior horn",
            "Clinical details",
        ] {
            assert!(!text.contains(secret), "{what} carries {secret:?}:\n{text}");
        }
    }
}

/// H-013: `notify test` proves a channel's address from the running server
/// (a person confirms receipt), an unknown channel name is refused, and a
/// rule that escalates to a channel that does not exist is a configuration
/// error naming its key.
#[test]
fn notify_test_reaches_the_configured_address_and_unknown_channels_are_refused() {
    let smtp_port = free_port();
    let mail = tempfile::tempdir().unwrap();
    let smtp = SmtpPeer::start(smtp_port, &mail.path().join("maildir"));
    let gw = TestGateway::with(Options {
        tail: mail_rule(smtp_port, "24h", "reporting-team@example.org"),
        ..Options::default()
    });
    let out = gw.cli(&["notify", "test", "team"]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for("the test email", Duration::from_secs(20), || {
        !mails_to(&smtp.mails(), "reporting-team@example.org").is_empty()
    });
    let mails = mails_to(&smtp.mails(), "reporting-team@example.org");
    assert!(mails[0].contains("Test notification"), "{}", mails[0]);

    let out = gw.cli(&["notify", "test", "teem"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    let bad = gw.dir.path().join("wrong-channel.toml");
    let text = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace("notify = [\"team\"]", "notify = [\"teem\"]");
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&bad)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    assert!(
        show(&out).contains("watchdog.rules[0].escalate[0].notify[0]"),
        "{}",
        show(&out)
    );
}

/// H-021: with `[reports.dicom] pdf_is_final = false`, an Encapsulated PDF
/// (which may be a scanned request form rather than a report) is kept as
/// preliminary and leaves its study waiting for a formal report.
#[test]
fn a_pdf_counts_as_the_report_only_when_config_says_so() {
    let gw = TestGateway::with(Options {
        reports_extra: "[reports.dicom]\npdf_is_final = false\n".into(),
        ..Options::default()
    });
    let study = uid(8, 1);
    send_study(&gw, &study, "ACC-PDF1", "RXX3000070");
    let pdf = gw.dir.path().join("document.dcm");
    let out = python(
        "tests/peers/make_sr.py",
        &[
            "--kind",
            "pdf",
            "--study-uid",
            &study,
            "--patient-id",
            "RXX3000070",
            "--out",
            pdf.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    storescu(&gw, &pdf);
    let s = gw.cli_json(&["study", &study, "--json"]);
    assert_eq!(
        (s["state"].as_str(), s["report_status"].as_str()),
        (Some("unreported"), Some("preliminary")),
        "{s:#}"
    );
}

/// H-002: an accession number reused a year later (the RIS recycled it, or
/// another trust uses the same numbers) must not close the new study with
/// the old final report; a report made around the study's own date still
/// links by the same accession.
#[test]
fn a_reused_accession_does_not_close_a_new_study_with_an_old_report() {
    let gw = TestGateway::start();
    let patient = "RXX3000099";
    let old = {
        let mut values = subs("REUSE-OLD", "", "ACC-REUSED", "PL-R1", "FL-R1");
        for (key, value) in values.iter_mut() {
            match *key {
                "PATIENT_ID" => *value = patient,
                "EXAM_TIME" => *value = "20250110090000",
                "REPORT_TIME" => *value = "20250110120000",
                _ => {}
            }
        }
        fixture("oru-accession.hl7", &values)
    };
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &[old]);
    assert_eq!(acks[0].code, "AA", "{acks:?}");
    // The new study (dated 2026-11-20) arrives under the same accession.
    let study = uid(9, 1);
    send_study(&gw, &study, "ACC-REUSED", patient);
    let s = gw.cli_json(&["study", &study, "--json"]);
    assert_eq!(s["state"], "unreported", "{s:#}");
    assert!(s["reports"].as_array().unwrap().is_empty(), "{s:#}");
    let refused = s["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "report_link_refused")
        .unwrap_or_else(|| panic!("no refusal audited: {s:#}"));
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("the number was reused"),
        "{refused:#}"
    );

    // This study's own report, made the day of the exam, links as usual.
    let own = {
        let mut values = subs("REUSE-NEW", "", "ACC-REUSED", "PL-R2", "FL-R2");
        for (key, value) in values.iter_mut() {
            if *key == "PATIENT_ID" {
                *value = patient;
            }
        }
        fixture("oru-accession.hl7", &values)
    };
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &[own]);
    assert_eq!(acks[0].code, "AA", "{acks:?}");
    let s = gw.cli_json(&["study", &study, "--json"]);
    assert_eq!(s["state"], "reported", "{s:#}");
    assert_eq!(s["reports"].as_array().unwrap().len(), 1, "{s:#}");
}

/// H-017: an examination the RIS reports complete (ORC-5 `CM`) whose images
/// never reach the gateway raises `order_without_images`. The study's
/// arrival, or a later cancellation, resolves it; an order that is only
/// scheduled raises nothing.
#[test]
fn a_completed_order_whose_images_never_arrive_raises_order_without_images() {
    let gw = TestGateway::with(Options {
        tail: "\n[watchdog]\norder_without_images_after = \"2s\"\n".into(),
        ..Options::default()
    });
    let patient = "RXX3000030";
    // The fixture is a new order (ORC-1 NW, ORC-5 SC: scheduled); the RIS
    // sends the same order again as its status changes.
    let order = |control: &str, accession: &str, orc1: &str, orc5: &str| -> Vec<u8> {
        let text = String::from_utf8(report_for("orm-o01.hl7", control, accession, patient))
            .expect("ASCII fixture");
        assert!(text.contains("ORC|NW|") && text.contains("||SC||"));
        text.replace("ORC|NW|", &format!("ORC|{orc1}|"))
            .replace("||SC||", &format!("||{orc5}||"))
            .into_bytes()
    };
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[
            order("ORD-1", "ACC-O1", "NW", "SC"),
            order("ORD-2", "ACC-O1", "SC", "CM"),
            order("ORD-3", "ACC-O2", "SC", "CM"),
            order("ORD-4", "ACC-O3", "NW", "SC"),
        ],
    );
    assert!(acks.iter().all(|a| a.code == "AA"), "{acks:?}");
    let live = |accession: &str| {
        alarms_of(&gw.config_path, "order_without_images")
            .into_iter()
            .filter(|a| a["state"] == "open")
            .filter(|a| a["detail"].as_str().unwrap_or("").contains(accession))
            .count()
    };
    wait_for(
        "order_without_images alarms",
        Duration::from_secs(30),
        || live("ACC-O1") == 1 && live("ACC-O2") == 1,
    );
    let alarm = alarms_of(&gw.config_path, "order_without_images")
        .into_iter()
        .find(|a| a["detail"].as_str().unwrap_or("").contains("ACC-O1"))
        .unwrap();
    assert!(
        alarm["detail"].as_str().unwrap().contains("complete at 20"),
        "{alarm:#}"
    );
    // Only scheduled: nothing is due for it.
    assert_eq!(live("ACC-O3"), 0);

    // The images of ACC-O1 arrive; ACC-O2's order is cancelled.
    send_study(&gw, &uid(11, 1), "ACC-O1", patient);
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[order("ORD-5", "ACC-O2", "CA", "CA")],
    );
    assert_eq!(acks[0].code, "AA", "{acks:?}");
    wait_for("both alarms to resolve", Duration::from_secs(30), || {
        let all = alarms_of(&gw.config_path, "order_without_images");
        all.len() == 2 && all.iter().all(|a| a["state"] == "resolved")
    });
    assert_eq!(live("ACC-O3"), 0);
}
