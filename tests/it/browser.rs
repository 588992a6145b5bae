//! The dashboard in a real browser: Debian's headless Chromium, driven by
//! tests/peers/browser.py through chromium-driver. A gateway with a study
//! past its deadline (so an overdue alarm is open) and a user added with the
//! CLI; the browser reads the worklist, signs in, acknowledges the alarm
//! through its form and opens the study page. The test then checks what the
//! pages showed, and that the catalog and the audit log recorded the
//! acknowledgement by that user. Screenshots land in
//! target/screenshots/ for a person to look at.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use studywatch::catalog::AlarmFilter;

use crate::harness::{Options, TestGateway, bin, python, repo, show, wait_for};
use crate::reports::{PATIENT, send_study};

const PASSWORD: &str = "correct horse battery staple";

/// A users file holding `lead`, written by `studywatch user add` as an
/// administrator would.
fn users_file(dir: &std::path::Path) -> std::path::PathBuf {
    let users = dir.join("users");
    let config = dir.join("users.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[catalog]\npath = \"{}\"\n[http]\nusers_file = \"{}\"\n",
            dir.join("admin.sqlite3").display(),
            users.display()
        ),
    )
    .unwrap();
    std::fs::write(&users, "").unwrap();
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["user", "add", "lead"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run studywatch user add");
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    users
}

#[test]
fn a_lead_signs_in_and_acknowledges_an_alarm_in_chromium() {
    let admin = tempfile::tempdir().unwrap();
    let users = users_file(admin.path());
    let gw = TestGateway::with(Options {
        http_extra: format!("users_file = \"{}\"", users.display()),
        tail: "[[watchdog.rules]]\nname = \"fast lane\"\nreport_within = \"1s\"\n".to_owned(),
        ..Options::default()
    });
    let study = "1.2.826.0.1.3680043.10.1234.88.1";
    send_study(&gw, study, "ACCWEB1", PATIENT);
    let mut alarm_id = 0;
    wait_for("the overdue alarm to open", Duration::from_secs(20), || {
        let alarms = gw
            .catalog()
            .alarms(&AlarmFilter {
                study_uid: Some(study.to_owned()),
                live: true,
                ..AlarmFilter::default()
            })
            .unwrap();
        match alarms.iter().find(|a| a.kind == "overdue_report") {
            Some(a) => {
                alarm_id = a.id;
                true
            }
            None => false,
        }
    });

    let shots = repo().join("target/screenshots");
    let base = format!("http://127.0.0.1:{}", gw.http_port);
    let out = python(
        "tests/peers/browser.py",
        &[
            &base,
            "lead",
            PASSWORD,
            &alarm_id.to_string(),
            study,
            shots.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let seen: Value = serde_json::from_slice(&out.stdout).expect("browser.py prints JSON");
    let text = |key: &str| seen[key].as_str().unwrap_or_default().to_owned();

    // The worklist showed the study as overdue, and the backlog chart.
    let rows = seen["worklist_rows"].as_array().expect("worklist rows");
    let row = rows
        .iter()
        .find(|r| r["text"].as_str().unwrap_or("").contains("ACCWEB1"))
        .unwrap_or_else(|| panic!("ACCWEB1 not on the worklist: {rows:?}"));
    assert!(
        row["class"].as_str().unwrap().contains("overdue")
            || row["class"].as_str().unwrap().contains("escalated"),
        "{row:?}"
    );
    assert!(
        row["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("overdue"),
        "{row:?}"
    );
    assert_eq!(seen["chart_present"], true);

    // Signed in, the page names the user; after the form, the alarm shows
    // as acknowledged by them with their reason.
    assert!(
        text("signed_in_text").contains("lead"),
        "{}",
        text("signed_in_text")
    );
    let flash = text("flash");
    assert!(flash.contains("acknowledged by lead"), "{flash}");
    let after = text("after_ack_text");
    assert!(after.contains("lead"), "{after}");
    assert!(after.contains("outsourced for reporting"), "{after}");
    assert!(after.to_lowercase().contains("acknowledged"), "{after}");

    // The catalog and the audit log recorded it, by that user.
    let store = gw.catalog();
    let alarm = store.alarm(alarm_id).unwrap().expect("alarm row");
    assert_eq!(alarm.state, "acknowledged");
    assert_eq!(alarm.acknowledged_by.as_deref(), Some("lead"));
    assert_eq!(
        alarm.ack_reason.as_deref(),
        Some("Reviewed by the reporting lead; outsourced for reporting")
    );
    let until = alarm.acknowledged_until.expect("acknowledged for 4 h");
    let span = until.duration_since(alarm.acknowledged_at.unwrap());
    assert_eq!(span.as_secs(), 4 * 3600);
    let audit = store.audit(None, None).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.actor == "lead" && a.action == "signed_in"),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|a| a.actor == "lead"
            && a.action.contains("ack")
            && a.study_uid.as_deref() == Some(study)),
        "{audit:?}"
    );

    // The study page showed its timeline, acknowledgement included.
    let page = text("study_text");
    assert!(page.contains("ACCWEB1"), "{page}");
    assert!(page.to_lowercase().contains("acknowledged"), "{page}");

    for name in ["worklist.png", "alarms.png", "study.png"] {
        let png = std::fs::read(shots.join(name)).expect("screenshot saved");
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    }
}
