//! The watchdog end to end: a study with no formal report past its deadline
//! raises an alarm that a real SMTP server (python3-aiosmtpd) receives; an
//! acknowledgement and a final report (entered with the CLI) act on it; a
//! relay that is down gets the mail once it is back; and a restart in the
//! middle of an escalation neither repeats nor skips a step.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const ROOT: &str = "1.2.826.0.1.3680043.10.1661.78";
const PATIENT: &str = "RXX2000001";

/// `[watchdog]` and `[notify]` for a rule due `within` after receipt that
/// tells `team` at once and `pager` `pager_after` later.
fn tail(smtp_port: u16, within: &str, pager_after: &str) -> String {
    format!(
        r#"
[watchdog]
calendar = ""

[[watchdog.rules]]
name = "fast lane"
report_within = "{within}"
escalate = [ {{ after = "0s", notify = ["team"] }}, {{ after = "{pager_after}", notify = ["pager"] }} ]
repeat_every = "1h"

[notify]
dashboard_url = "http://127.0.0.1:8080/"
retry_initial = "1s"
retry_max = "2s"
# Long past today: the digest goes out at the first evaluation.
digest_at = "00:00"

[notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "studywatch@example.org"

[[notify.channels]]
name = "team"
kind = "email"
to = ["reporting-team@example.org"]
digest = false

[[notify.channels]]
name = "pager"
kind = "email"
to = ["pager@example.org"]
digest = false

[[notify.channels]]
name = "leads"
kind = "email"
to = ["imaging-leads@example.org"]
"#
    )
}

fn send_study(dir: &Path, port: u16, uid: &str, accession: &str) {
    let file = make_study(
        &dir.join(format!("images-{accession}")),
        &[
            "--study-uid",
            uid,
            "--accession",
            accession,
            "--patient-id",
            PATIENT,
        ],
    );
    let out = dcmtk(
        "storescu",
        &[
            "-aec",
            AE,
            "127.0.0.1",
            &port.to_string(),
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
}

fn alarm_of(config: &Path, uid: &str) -> Option<Value> {
    cli_json_at(config, &["alarms", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["study_uid"] == uid && a["kind"] == "overdue_report")
        .cloned()
}

fn to(mails: &[String], who: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.contains(&format!("X-RcptTo: {who}")))
        .count()
}

/// Distinct notifications (by Message-ID, which every delivery attempt of
/// one outbox row shares) sent to `who`. A kill between the relay accepting
/// a mail and the outbox recording it makes at-least-once delivery send that
/// same notification again; a step sent twice would be two notifications.
fn notifications_to(mails: &[String], who: &str) -> usize {
    let mut ids: Vec<String> = mails
        .iter()
        .filter(|m| m.contains(&format!("X-RcptTo: {who}")))
        .filter_map(|m| {
            m.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .map(|l| l.trim().to_owned())
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids.len()
}

#[test]
fn an_overdue_study_alarms_by_email_until_a_final_report_resolves_it() {
    let smtp_port = free_port();
    let mail = tempfile::tempdir().unwrap();
    let smtp = SmtpPeer::start(smtp_port, &mail.path().join("maildir"));
    let gw = TestGateway::with(Options {
        tail: tail(smtp_port, "2s", "1h"),
        ..Options::default()
    });
    let uid = format!("{ROOT}.1.1");
    send_study(gw.dir.path(), gw.port, &uid, "ACC-W1");

    wait_for("the overdue alarm", Duration::from_secs(15), || {
        alarm_of(&gw.config_path, &uid).is_some()
    });
    let alarm = alarm_of(&gw.config_path, &uid).unwrap();
    assert_eq!(alarm["state"], "open");
    assert_eq!(alarm["rule"], "fast lane");
    // Which rule, and why, as an operator would ask.
    let out = gw.cli(&["rules", "explain", &uid]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("\"fast lane\"") && show(&out).contains("MATCHES"),
        "{}",
        show(&out)
    );
    let out = gw.cli(&["check-config"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains(&format!("{uid} [CT]: rule \"fast lane\"")),
        "{}",
        show(&out)
    );
    let study = cli_json_at(&gw.config_path, &["studies", "--overdue", "--json"]);
    assert_eq!(study[0]["study_uid"], uid.as_str());
    assert_eq!(study[0]["state"], "overdue");

    wait_for("the alarm email", Duration::from_secs(15), || {
        to(&smtp.mails(), "reporting-team@example.org") == 1
    });
    let mails = smtp.mails();
    let first = mails
        .iter()
        .find(|m| m.contains("X-RcptTo: reporting-team@example.org"))
        .unwrap();
    assert!(first.contains("ACC-W1"), "{first}");
    assert!(first.contains(PATIENT), "{first}");
    assert!(first.contains("fast lane"), "{first}");
    // Identifiers only: never the patient's name.
    assert!(!first.contains("REPORTS"), "{first}");

    // An acknowledgement by a person is recorded with their name.
    let id = alarm["id"].as_i64().unwrap().to_string();
    let out = gw.cli(&[
        "ack",
        &id,
        "--by",
        "alice",
        "--reason",
        "reporting now",
        "--for",
        "1h",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let acked = alarm_of(&gw.config_path, &uid).unwrap();
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "alice");

    // A preliminary report does not resolve it...
    let out = gw.cli(&[
        "report",
        "link",
        "--accession",
        "ACC-W1",
        "--status",
        "preliminary",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    std::thread::sleep(Duration::from_secs(2));
    assert_ne!(
        alarm_of(&gw.config_path, &uid).unwrap()["state"],
        "resolved"
    );
    // ...a final one does, and the channel told of it hears so.
    let out = gw.cli(&[
        "report",
        "link",
        "--accession",
        "ACC-W1",
        "--status",
        "final",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let resolved = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        alarm_of(&gw.config_path, &uid).unwrap()["state"] == "resolved"
    });
    assert!(
        resolved,
        "not resolved: {:#}\nstudy: {:#}",
        alarm_of(&gw.config_path, &uid).unwrap(),
        cli_json_at(&gw.config_path, &["study", &uid, "--json"])
    );
    wait_for("the resolution email", Duration::from_secs(10), || {
        to(&smtp.mails(), "reporting-team@example.org") == 2
    });
    let mails = smtp.mails();
    let team: Vec<&String> = mails
        .iter()
        .filter(|m| m.contains("X-RcptTo: reporting-team@example.org"))
        .collect();
    assert!(team[1].contains("Resolved"), "{}", team[1]);
    // The leads get the daily digest (once), with the backlog in figures.
    wait_for("the daily digest", Duration::from_secs(10), || {
        to(&smtp.mails(), "imaging-leads@example.org") == 1
    });
    let digest = smtp
        .mails()
        .into_iter()
        .find(|m| m.contains("X-RcptTo: imaging-leads@example.org"))
        .unwrap();
    assert!(
        digest.contains("Daily digest") && digest.contains("Unreported"),
        "{digest}"
    );

    let audit = cli_json_at(&gw.config_path, &["audit", "--study", &uid, "--json"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for wanted in [
        "alarm_raised",
        "alarm_escalated",
        "notification_sent",
        "alarm_acknowledged",
        "alarm_resolved",
    ] {
        assert!(
            actions.contains(&wanted),
            "{wanted} missing from {actions:?}"
        );
    }
}

#[test]
fn mail_queued_while_the_relay_is_down_is_delivered_once_when_it_returns() {
    let smtp_port = free_port();
    let gw = TestGateway::with(Options {
        tail: tail(smtp_port, "1s", "1h"),
        ..Options::default()
    });
    let uid = format!("{ROOT}.2.1");
    send_study(gw.dir.path(), gw.port, &uid, "ACC-W2");
    wait_for("a failed delivery attempt", Duration::from_secs(20), || {
        cli_json_at(&gw.config_path, &["audit", "--study", &uid, "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "notification_failed")
    });
    let mail = tempfile::tempdir().unwrap();
    let smtp = SmtpPeer::start(smtp_port, &mail.path().join("maildir"));
    wait_for("the delayed email", Duration::from_secs(20), || {
        to(&smtp.mails(), "reporting-team@example.org") == 1
    });
    // At least once, and here exactly once: no duplicate follows.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(to(&smtp.mails(), "reporting-team@example.org"), 1);
}

#[test]
fn a_restart_mid_escalation_neither_repeats_nor_skips_a_step() {
    let smtp_port = free_port();
    let mail = tempfile::tempdir().unwrap();
    let smtp = SmtpPeer::start(smtp_port, &mail.path().join("maildir"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_process_config(
        dir.path(),
        port,
        &Options {
            tail: tail(smtp_port, "1s", "6s"),
            ..Options::default()
        },
    );
    let mut gw = GatewayProcess::start(&config, port, &[]);
    let uid = format!("{ROOT}.3.1");
    let sent_at = std::time::Instant::now();
    send_study(dir.path(), port, &uid, "ACC-W3");
    wait_for("the first step's email", Duration::from_secs(15), || {
        to(&smtp.mails(), "reporting-team@example.org") >= 1
    });
    gw.kill9();
    // Down while the second step (deadline + 6 s) falls due.
    let due = Duration::from_secs(1 + 6 + 1);
    if let Some(rest) = due.checked_sub(sent_at.elapsed()) {
        std::thread::sleep(rest);
    }
    assert_eq!(to(&smtp.mails(), "pager@example.org"), 0);
    let _gw = GatewayProcess::start(&config, port, &[]);
    wait_for("the missed step's email", Duration::from_secs(15), || {
        to(&smtp.mails(), "pager@example.org") >= 1
    });
    std::thread::sleep(Duration::from_secs(2));
    let mails = smtp.mails();
    assert_eq!(
        notifications_to(&mails, "reporting-team@example.org"),
        1,
        "step 1 was sent again"
    );
    assert_eq!(notifications_to(&mails, "pager@example.org"), 1);
}

#[test]
fn a_conflicting_resend_raises_an_integrity_alarm() {
    let gw = TestGateway::start();
    let uid = format!("{ROOT}.4.1");
    send_study(gw.dir.path(), gw.port, &uid, "ACC-I1");
    // The same SOP Instance UID again, with other content: kept aside.
    let file = make_study(
        &gw.dir.path().join("conflict"),
        &[
            "--study-uid",
            &uid,
            "--accession",
            "ACC-I2",
            "--patient-id",
            PATIENT,
        ],
    );
    let _ = dcmtk(
        "storescu",
        &[
            "-aec",
            AE,
            "127.0.0.1",
            &gw.port.to_string(),
            file.to_str().unwrap(),
        ],
    );
    wait_for("the integrity alarm", Duration::from_secs(15), || {
        cli_json_at(&gw.config_path, &["alarms", "--open", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "integrity" && a["study_uid"] == uid.as_str())
    });
}

/// The webhook receiver (tests/peers/webhook_server.py): HTTPS with its own
/// CA, checking the HMAC signature with Python's hmac; stopped on drop.
struct WebhookPeer {
    child: std::process::Child,
    out: PathBuf,
}

impl WebhookPeer {
    fn start(port: u16, dir: &Path, secret: &Path) -> WebhookPeer {
        let out = dir.join("posts");
        let child = Command::new("/usr/bin/python3")
            .arg(repo().join("tests/peers/webhook_server.py"))
            .args(["--port", &port.to_string()])
            .arg("--cert-dir")
            .arg(dir.join("certs"))
            .arg("--out")
            .arg(&out)
            .arg("--secret-file")
            .arg(secret)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the webhook receiver");
        wait_for("the webhook receiver", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && dir.join("certs/ca.pem").exists()
        });
        WebhookPeer { child, out }
    }

    fn posts(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&self.out) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        });
        files
            .iter()
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    }
}

impl Drop for WebhookPeer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn an_alarm_reaches_a_signed_webhook_and_so_does_its_resolution() {
    let peer_dir = tempfile::tempdir().unwrap();
    let secret = peer_dir.path().join("webhook.secret");
    std::fs::write(&secret, "s3cret-shared-with-the-receiver\n").unwrap();
    let port = free_port();
    let hook = WebhookPeer::start(port, peer_dir.path(), &secret);
    let tail = format!(
        r#"
[watchdog]
calendar = ""
[[watchdog.rules]]
name = "hooked"
report_within = "1s"
escalate = [ {{ after = "0s", notify = ["hook"] }} ]
[notify]
retry_initial = "1s"
[[notify.channels]]
name = "hook"
kind = "webhook"
# Not the daily digest: after 08:00 a fresh gateway sends it at once, and
# this test is about an alarm's trigger and resolution.
digest = false
url = "https://127.0.0.1:{port}/studywatch"
format = "generic"
secret_file = "{secret}"
ca_file = "{ca}"
"#,
        secret = secret.display(),
        ca = peer_dir.path().join("certs/ca.pem").display()
    );
    let gw = TestGateway::with(Options {
        tail,
        ..Options::default()
    });
    let uid = format!("{ROOT}.5.1");
    send_study(gw.dir.path(), gw.port, &uid, "ACC-H1");
    wait_for("the webhook", Duration::from_secs(20), || {
        !hook.posts().is_empty()
    });
    let post = hook.posts()[0].clone();
    assert_eq!(post["signature_ok"], true, "{post:#}");
    let body: Value = serde_json::from_str(post["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["event"], "trigger");
    assert_eq!(body["alarm_kind"], "overdue_report");
    assert_eq!(body["fields"]["Accession"], "ACC-H1");
    assert!(
        !post["body"].as_str().unwrap().contains("REPORTS"),
        "{post:#}"
    );

    let out = gw.cli(&["report", "link", "--study-uid", &uid, "--status", "final"]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for("the resolve webhook", Duration::from_secs(20), || {
        hook.posts().iter().any(|p| {
            serde_json::from_str::<Value>(p["body"].as_str().unwrap_or("{}"))
                .is_ok_and(|b| b["event"] == "resolve")
        })
    });
}

/// A bank-holiday calendar file, in the shape of conf/calendars/*.toml,
/// covering `first..=last` with New Year's Day as its only holiday.
fn calendar_file(path: &Path, name: &str, first: i16, last: i16) {
    let mut text = format!(
        "name = \"{name}\"\nsource = \"written by the test\"\n\
         first_year = {first}\nlast_year = {last}\n[holidays]\n"
    );
    for year in first..=last {
        text.push_str(&format!("\"{year}-01-01\" = \"New Year's Day\"\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn calendar_alarm(config: &Path) -> Option<Value> {
    cli_json_at(config, &["alarms", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "calendar_expiring")
        .cloned()
}

#[test]
fn a_calendar_without_data_for_the_next_90_days_raises_calendar_expiring() {
    let dir = tempfile::tempdir().unwrap();
    let calendar = dir.path().join("past-only.toml");
    calendar_file(&calendar, "Past years only", 2020, 2021);
    let port = free_port();
    let config = write_process_config(
        dir.path(),
        port,
        &Options {
            tail: format!("[watchdog]\ncalendar = \"{}\"\n", calendar.display()),
            ..Options::default()
        },
    );
    let mut gw = GatewayProcess::start(&config, port, &[]);

    // The site's today is not covered: the gap starts today.
    let today = jiff::Timestamp::now()
        .in_tz("Europe/London")
        .unwrap()
        .date();
    wait_for("calendar_expiring", Duration::from_secs(20), || {
        calendar_alarm(&config).is_some()
    });
    let alarm = calendar_alarm(&config).unwrap();
    assert_eq!(alarm["state"], "open", "{alarm}");
    let detail = alarm["detail"].as_str().unwrap();
    for part in [
        "\"Past years only\"",
        calendar.to_str().unwrap(),
        &format!("no data from {today}"),
        "it covers 2020 to 2021",
    ] {
        assert!(detail.contains(part), "{part:?} not in {detail:?}");
    }

    // The calendar is read at start: complete it and restart, and the cause
    // check resolves the alarm.
    gw.signal("TERM");
    gw.child.wait().unwrap();
    let year = today.year();
    calendar_file(&calendar, "Past years only", 2020, year + 1);
    let _gw = GatewayProcess::start(&config, port, &[]);
    wait_for(
        "calendar_expiring to resolve",
        Duration::from_secs(20),
        || calendar_alarm(&config).is_some_and(|a| a["state"] == "resolved"),
    );
    let alarm = calendar_alarm(&config).unwrap();
    assert!(
        alarm["resolved_reason"]
            .as_str()
            .unwrap()
            .contains("covers the next 90 days"),
        "{alarm}"
    );
}
