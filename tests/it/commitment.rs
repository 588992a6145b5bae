//! Storage commitment asked of the gateway by a real SCU (pynetdicom,
//! tests/peers/commit_scu.py): the report on the same association when the
//! requester keeps it open, on a new association (with role selection) to
//! the peer's configured address when it does not.

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::*;

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR: &str = "1.2.840.10008.5.1.4.1.1.4";

fn send(gw: &TestGateway, files: &[PathBuf]) {
    let port = gw.port.to_string();
    let mut args = vec!["-aec", AE, "-aet", "MODALITY", "127.0.0.1", &port];
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = dcmtk("storescu", &args);
    assert!(out.status.success(), "{}", show(&out));
}

/// Runs the SCU; returns its JSON result.
fn commit(args: &[&str]) -> serde_json::Value {
    let out = python("tests/peers/commit_scu.py", args);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
}

#[test]
fn a_complete_set_is_committed_on_the_association_that_asked() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(3, &dir.path().join("series"));
    let gw = TestGateway::with(Options {
        peers: "[[dicom.peers]]\nae_title = \"MODALITY\"\n".into(),
        accept_unknown_callers: Some(false),
        ..Options::default()
    });
    send(&gw, &files);
    let sops: Vec<String> = files.iter().map(|f| sop_of(f)).collect();
    let items: Vec<String> = sops.iter().map(|s| format!("{CT}:{s}")).collect();
    let port = gw.port.to_string();
    let transaction = "1.2.826.0.1.3680043.10.1234.77.1";
    let mut args = vec!["same", "127.0.0.1", &port, AE, "MODALITY", transaction];
    args.extend(items.iter().map(String::as_str));
    let result = commit(&args);

    assert_eq!(result["action_status"], 0, "{result}");
    assert_eq!(result["event_type"], 1, "{result}");
    assert_eq!(result["transaction_uid"], transaction);
    let mut committed: Vec<String> = result["committed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    committed.sort();
    let mut expected = sops.clone();
    expected.sort();
    assert_eq!(committed, expected);
    assert_eq!(result["failed"], serde_json::json!([]));

    // The catalog keeps the request and that its report was delivered.
    wait_for(
        "the report recorded as delivered",
        Duration::from_secs(10),
        || {
            gw.catalog()
                .commit_request_state(transaction)
                .unwrap()
                .is_some_and(|r| r.state == "reported" && r.event_type == Some(1))
        },
    );
    let audit = gw.catalog().audit(None, None).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "commit_reported" && a.actor == "MODALITY"),
        "{audit:?}"
    );
}

#[test]
fn a_missing_instance_is_reported_failed_on_a_new_association() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(3, &dir.path().join("series"));
    let listen = free_port();
    let gw = TestGateway::with(Options {
        peers: format!(
            "[[dicom.peers]]\nae_title = \"MODALITY\"\nhost = \"127.0.0.1\"\nport = {listen}\n"
        ),
        accept_unknown_callers: Some(false),
        ..Options::default()
    });
    send(&gw, &files);
    let sops: Vec<String> = files.iter().map(|f| sop_of(f)).collect();
    let never_sent = "1.2.826.0.1.3680043.10.1234.9.3.999";
    let mut items: Vec<String> = sops.iter().map(|s| format!("{CT}:{s}")).collect();
    items.push(format!("{CT}:{never_sent}"));
    // Held, but not under the SOP class the request names.
    items[0] = format!("{MR}:{}", sops[0]);
    let port = gw.port.to_string();
    let listen_port = listen.to_string();
    let transaction = "1.2.826.0.1.3680043.10.1234.77.2";
    let mut args = vec![
        "new",
        "127.0.0.1",
        &port,
        AE,
        "MODALITY",
        transaction,
        &listen_port,
    ];
    args.extend(items.iter().map(String::as_str));
    let result = commit(&args);

    assert_eq!(result["action_status"], 0, "{result}");
    assert_eq!(result["event_type"], 2, "{result}");
    assert_eq!(result["transaction_uid"], transaction);
    assert_eq!(
        result["calling_ae"], AE,
        "the gateway opened the association"
    );
    let failed = result["failed"].as_array().unwrap();
    assert!(
        failed.contains(&serde_json::json!([never_sent, 0x0112])),
        "the missing instance is failed with 'no such object instance': {result}"
    );
    assert!(
        failed.contains(&serde_json::json!([sops[0], 0x0119])),
        "the wrong class is failed with 'class/instance conflict': {result}"
    );
    assert_eq!(failed.len(), 2, "{result}");
    let committed = result["committed"].as_array().unwrap();
    assert_eq!(committed.len(), 2, "{result}");

    // The modality may stop at our failure report: the study it named is
    // marked incomplete and alarms, so the gap does not stay silent.
    let study = study_of(&files[0]);
    let transfer = |gw: &TestGateway| gw.cli_json(&["study", &study, "--json"])["transfer"].clone();
    wait_for(
        "the study to be incomplete",
        Duration::from_secs(10),
        || transfer(&gw)["completeness"] == "incomplete",
    );
    let t = transfer(&gw);
    assert_eq!(
        t["completeness_detail"],
        format!(
            "storage commitment {transaction} from MODALITY: 2 of 4 requested instance(s) not committed"
        ),
        "{t}"
    );
    let alarm = |gw: &TestGateway, state: &str| {
        has_alarm(&gw.config_path, "incomplete_transfer", &study, state)
    };
    wait_for(
        "an incomplete_transfer alarm",
        Duration::from_secs(30),
        || alarm(&gw, "open"),
    );

    // Asked again for what it holds, under the right class, the gateway
    // commits all of it: the study is complete and the alarm resolves.
    let items: Vec<String> = sops.iter().map(|s| format!("{CT}:{s}")).collect();
    let again = "1.2.826.0.1.3680043.10.1234.77.3";
    let mut args = vec!["same", "127.0.0.1", &port, AE, "MODALITY", again];
    args.extend(items.iter().map(String::as_str));
    let result = commit(&args);
    assert_eq!(result["event_type"], 1, "{result}");
    wait_for("the study to be complete", Duration::from_secs(10), || {
        transfer(&gw)["completeness"] == "complete"
    });
    wait_for("the alarm to resolve", Duration::from_secs(30), || {
        alarm(&gw, "resolved")
    });
}
