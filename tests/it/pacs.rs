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

/// The SOP Instance UID in a Part 10 file's meta group.
fn sop_of(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut pre = [0u8; 128];
    f.read_exact(&mut pre).unwrap();
    let meta = dicom_object::meta::FileMetaTable::from_reader(&mut f).unwrap();
    meta.media_storage_sop_instance_uid()
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

/// The Study Instance UID of a file.
fn study_of(path: &Path) -> String {
    let obj = dicom_object::open_file(path).unwrap();
    obj.element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_owned()
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

/// Runs the CLI with `config` and parses its JSON output.
fn cli_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
}

fn destination_status(config: &Path, name: &str) -> serde_json::Value {
    cli_json(config, &["forward", "status", "--json"])
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
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["forward", "retry", "--destination", "pacs"])
        .output()
        .unwrap();
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
