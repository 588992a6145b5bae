//! Orthanc (Debian's, started by tests/it/orthanc.rs) as the PACS behind
//! the gateway: forwarding, storage commitment, completeness and
//! retention, each checked through Orthanc's REST API and the gateway's
//! CLI.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::orthanc::{Modality, ORTHANC_AE, Orthanc};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn storescu(port: u16, calling: &str, files: &[PathBuf]) {
    let mut args: Vec<String> = vec![
        "-aec".into(),
        AE.into(),
        "-aet".into(),
        calling.into(),
        "127.0.0.1".into(),
        port.to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dcmtk("storescu", &args);
    assert!(out.status.success(), "{}", show(&out));
}

/// Runs the CLI with `config`.
fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn destination_status(config: &Path, name: &str) -> serde_json::Value {
    cli_json_at(config, &["forward", "status", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} missing from forward status"))
}

/// A gateway process on `port` whose one destination is `orthanc`.
fn gateway_config(dir: &Path, port: u16, orthanc: &Orthanc, extra: &str) -> PathBuf {
    write_process_config(
        dir,
        port,
        &Options {
            dicom_extra: "stable_after = \"1s\"".into(),
            tail: format!(
                "[[forward.destinations]]\nname = \"pacs\"\nae_title = \"{ORTHANC_AE}\"\n\
                 host = \"127.0.0.1\"\nport = {}\n{extra}\n",
                orthanc.dicom_port
            ),
            ..Options::default()
        },
    )
}

#[test]
fn a_study_reaches_orthanc_and_waits_while_it_is_down_then_arrives_once() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let gw_port = free_port();
    let mut orthanc = Orthanc::start(Modality {
        ae: AE,
        host: "127.0.0.1",
        port: gw_port,
    });
    let config = gateway_config(dir.path(), gw_port, &orthanc, "");
    let _gw = GatewayProcess::start(&config, gw_port, &[]);

    let first = make_series(3, &dir.path().join("first"));
    storescu(gw_port, "CT1", &first);
    let study = study_of(&first[0]);
    let sops: BTreeSet<String> = first.iter().map(|p| sop_of(p)).collect();
    wait_for("3 instances in Orthanc", Duration::from_secs(60), || {
        rt.block_on(orthanc.sop_instances(&study)) == sops
    });

    // Orthanc down: what arrives now waits in the queue.
    orthanc.stop();
    let more = make_series(8, &dir.path().join("more"));
    let later: Vec<PathBuf> = more
        .iter()
        .filter(|p| !sops.contains(&sop_of(p)))
        .cloned()
        .collect();
    assert_eq!(later.len(), 5);
    storescu(gw_port, "CT1", &later);
    wait_for(
        "5 pending with failed attempts",
        Duration::from_secs(30),
        || {
            let s = destination_status(&config, "pacs");
            s["pending"] == 5 && s["max_attempts"].as_u64().unwrap_or(0) >= 1
        },
    );

    orthanc.start_again();
    let out = cli(&config, &["forward", "retry", "--destination", "pacs"]);
    assert!(out.status.success(), "{}", show(&out));
    let all: BTreeSet<String> = more.iter().map(|p| sop_of(p)).collect();
    wait_for(
        "all 8 instances in Orthanc",
        Duration::from_secs(60),
        || rt.block_on(orthanc.sop_instances(&study)) == all,
    );
    wait_for("the queue to show 8 sent", Duration::from_secs(30), || {
        let s = destination_status(&config, "pacs");
        s["sent"] == 8 && s["pending"] == 0
    });
    // The catalog holds one row per instance and destination: each was
    // recorded as sent exactly once.
    let s = destination_status(&config, "pacs");
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(rt.block_on(orthanc.instance_count()), 8);
}

/// `study UID --json` through the CLI.
fn study_json(config: &Path, study: &str) -> serde_json::Value {
    cli_json_at(config, &["study", study, "--json"])
}

#[test]
fn orthanc_commits_what_it_received_and_the_local_copies_are_then_pruned() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let gw_port = free_port();
    let orthanc = Orthanc::start(Modality {
        ae: AE,
        host: "127.0.0.1",
        port: gw_port,
    });
    // CT from CT1 goes to Orthanc, which commits; MR from MRI goes to an
    // archive that is down, so its file must stay.
    let archive_port = free_port();
    let http_port = free_port();
    let config = write_process_config(
        dir.path(),
        gw_port,
        &Options {
            http_port: Some(http_port),
            dicom_extra: "stable_after = \"1s\"".into(),
            peers: "[[dicom.peers]]\nae_title = \"CT1\"\nsource = \"ct\"\n\
                    [[dicom.peers]]\nae_title = \"MRI\"\nsource = \"mr\"\n"
                .into(),
            storage_extra: "retain_for = \"1s\"".into(),
            tail: format!(
                "[[forward.destinations]]\nname = \"pacs\"\nae_title = \"{ORTHANC_AE}\"\n\
                 host = \"127.0.0.1\"\nport = {}\nstorage_commitment = true\n\
                 match = {{ source = [\"ct\"] }}\n\
                 [[forward.destinations]]\nname = \"archive\"\nae_title = \"ARCHIVE\"\n\
                 host = \"127.0.0.1\"\nport = {archive_port}\nmatch = {{ source = [\"mr\"] }}\n",
                orthanc.dicom_port
            ),
            ..Options::default()
        },
    );
    let _gw = GatewayProcess::start(&config, gw_port, &[]);

    let ct = make_series(3, &dir.path().join("ct"));
    storescu(gw_port, "CT1", &ct);
    let mr = corpus("valid/mr_j2k_lossless.dcm");
    let port = gw_port.to_string();
    let out = dcmtk(
        "dcmsend",
        &[
            "-aec",
            AE,
            "-aet",
            "MRI",
            "127.0.0.1",
            &port,
            mr.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let study = study_of(&ct[0]);
    let sops: BTreeSet<String> = ct.iter().map(|p| sop_of(p)).collect();
    wait_for("3 instances in Orthanc", Duration::from_secs(60), || {
        rt.block_on(orthanc.sop_instances(&study)) == sops
    });

    // Orthanc's N-EVENT-REPORT (on an association it opens to us) marks
    // each instance committed in PACS.
    wait_for(
        "Orthanc to commit the study",
        Duration::from_secs(60),
        || {
            let s = study_json(&config, &study);
            s["forwarding"][0]["committed"] == 3
        },
    );
    let s = study_json(&config, &study);
    let f = &s["forwarding"][0];
    assert_eq!(f["destination"], "pacs", "{s}");
    assert_eq!(
        (f["sent"].as_u64(), f["commits"].as_bool()),
        (Some(3), Some(true))
    );
    assert!(f["last_committed_at"].is_string(), "{s}");
    assert!(s["transfer"]["stable_at"].is_string(), "{s}");
    for instance in s["instances"].as_array().unwrap() {
        let d = &instance["delivery"][0];
        assert_eq!(d["commit_state"], "committed", "{s}");
        assert!(d["committed_at"].is_string(), "{s}");
    }
    // The study page tells the same story.
    let (code, page) = http_get(http_port, &format!("/studies/{study}"));
    assert_eq!(code, 200, "{page}");
    let row = page
        .split("data-destination=\"pacs\"")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no pacs row on the study page: {page}"));
    assert!(
        row.contains("data-label=\"Forwarded\">3<")
            && row.contains("data-label=\"Committed in PACS\">3<"),
        "3 forwarded and 3 committed: {row}"
    );

    // retain_for = 1s: committed in Orthanc, so the local files go, and
    // verify says so rather than calling them missing.
    let verify = || cli(&config, &["verify"]);
    wait_for(
        "the 3 committed files to be pruned",
        Duration::from_secs(60),
        || {
            String::from_utf8_lossy(&verify().stdout)
                .matches("PRUNED")
                .count()
                == 3
        },
    );
    let out = verify();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 intact, 3 pruned after delivery, 0 missing"),
        "{text}"
    );
    assert!(!text.contains("MISSING"), "{text}");
    let s = study_json(&config, &study);
    for instance in s["instances"].as_array().unwrap() {
        assert!(instance["pruned_at"].is_string(), "{s}");
        assert_eq!(instance["delivery"][0]["commit_state"], "committed");
    }
    // And in words: each instance committed in PACS, its local copy pruned.
    let out = cli(&config, &["study", &study]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("pacs: committed in PACS at ").count(),
        3,
        "{text}"
    );
    assert_eq!(text.matches("pruned locally at ").count(), 3, "{text}");
    assert!(
        text.contains("to pacs: 3 sent, 0 waiting, 0 failed, 3 committed in PACS"),
        "{text}"
    );
    // The MR's only destination is down: its file stays, however old.
    let mr_study = study_of(&mr);
    let s = study_json(&config, &mr_study);
    let instance = &s["instances"][0];
    assert!(instance["pruned_at"].is_null(), "{s}");
    assert_eq!(instance["delivery"][0]["state"], "pending", "{s}");
    let stored = stored_files(&dir.path().join("storage"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(sop_of(&stored[0]), sop_of(&mr));
}

#[test]
fn a_study_orthanc_holds_more_of_is_incomplete_until_the_rest_arrives() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let gw_port = free_port();
    // Orthanc is the sending hospital: it holds 4 instances of the study
    // and answers our C-FIND.
    let orthanc = Orthanc::start(Modality {
        ae: AE,
        host: "127.0.0.1",
        port: gw_port,
    });
    let files = make_series(4, &dir.path().join("series"));
    for f in &files {
        assert_eq!(rt.block_on(orthanc.upload(f)), "Success");
    }
    let config = write_process_config(
        dir.path(),
        gw_port,
        &Options {
            dicom_extra: "stable_after = \"1s\"".into(),
            peers: format!(
                "[[dicom.peers]]\nae_title = \"{ORTHANC_AE}\"\nsource = \"trust-b\"\n\
                 host = \"127.0.0.1\"\nport = {}\nquery_retrieve = true\n",
                orthanc.dicom_port
            ),
            ..Options::default()
        },
    );
    let _gw = GatewayProcess::start(&config, gw_port, &[]);
    // Only 3 of the 4 arrive.
    storescu(gw_port, ORTHANC_AE, &files[..3]);
    let study = study_of(&files[0]);
    wait_for("the completeness check", Duration::from_secs(60), || {
        study_json(&config, &study)["transfer"]["completeness"] == "incomplete"
    });
    let s = study_json(&config, &study);
    assert_eq!(s["transfer"]["expected_instances"], 4, "{s}");
    assert_eq!(
        s["transfer"]["completeness_detail"], "3 of 4 instance(s) received",
        "{s}"
    );
    let alarm_of = |config: &Path| {
        cli_json_at(config, &["alarms", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == "incomplete_transfer" && a["study_uid"] == study.as_str())
            .cloned()
    };
    wait_for(
        "an incomplete_transfer alarm",
        Duration::from_secs(30),
        || alarm_of(&config).is_some_and(|a| a["state"] == "open"),
    );

    // The fourth arrives late: the study settles again, is complete, and
    // the alarm resolves.
    storescu(gw_port, ORTHANC_AE, &files[3..]);
    wait_for("the study to be complete", Duration::from_secs(60), || {
        study_json(&config, &study)["transfer"]["completeness"] == "complete"
    });
    wait_for("the alarm to resolve", Duration::from_secs(30), || {
        has_alarm(&config, "incomplete_transfer", &study, "resolved")
    });
}
