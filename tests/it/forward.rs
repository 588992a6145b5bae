//! Forwarding to a real DICOM destination: DCMTK `storescp` on a loopback
//! port, receiving what the gateway stored and writing every data set
//! exactly as read (`+B`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use studywatch::catalog::AlarmFilter;

use crate::harness::*;

/// DCMTK storescp as the destination; stopped on drop.
struct Storescp {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Storescp {
    fn start(port: u16, dir: &Path) -> Storescp {
        Storescp::start_with(port, dir, "+xa")
    }

    /// `syntaxes` is storescp's option for the transfer syntaxes it
    /// accepts (`+xa` all, `+xi` Implicit VR Little Endian only).
    fn start_with(port: u16, dir: &Path, syntaxes: &str) -> Storescp {
        let out = dir.join("received");
        std::fs::create_dir_all(&out).unwrap();
        let log = dir.join(format!("storescp.{port}.log"));
        // DCMTK's log goes to stderr: both streams into one file.
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("/usr/bin/storescp")
            .args(["-v", "-aet", "PACS", syntaxes, "+B", "-od"])
            .arg(&out)
            .arg(port.to_string())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start storescp (DCMTK)");
        wait_for("storescp to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Storescp {
            child,
            dir: out,
            log,
        }
    }

    /// The files it wrote.
    fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    /// How many C-STORE requests it has received (its verbose log).
    fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Received Store Request")
            .count()
    }
}

impl Drop for Storescp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn destination(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[forward.destinations]]\nname = \"{name}\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = {port}\n{extra}\n"
    )
}

fn storescu(port: u16, files: &[PathBuf]) {
    let mut args: Vec<String> = vec![
        "-aec".into(),
        AE.into(),
        "-aet".into(),
        "CT1".into(),
        "127.0.0.1".into(),
        port.to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = dcmtk("storescu", &args);
    assert!(out.status.success(), "{}", show(&out));
}

/// The latest `forward_stalled` alarm of `destination`, in any state.
fn stalled_alarm(gw: &TestGateway, destination: &str) -> Option<studywatch::catalog::AlarmRow> {
    let subject = format!("forward:{destination}");
    gw.catalog()
        .alarms(&AlarmFilter::default())
        .unwrap()
        .into_iter()
        .find(|a| a.kind == "forward_stalled" && a.subject == subject)
}

/// `forward status --json` through the CLI, by destination name.
fn status(config: &Path) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(["forward", "status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn of<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {status}"))
}

#[test]
fn a_stored_study_reaches_storescp_with_its_data_set_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(5, &dir.path().join("series"));
    let pacs_port = free_port();
    let pacs = Storescp::start(pacs_port, dir.path());
    let gw = TestGateway::with(Options {
        tail: destination("pacs", pacs_port, ""),
        ..Options::default()
    });
    storescu(gw.port, &files);

    wait_for("5 instances at storescp", Duration::from_secs(60), || {
        pacs.files().len() == 5
    });
    let store = gw.catalog();
    for received in pacs.files() {
        let sop = sop_of(&received);
        let row = store
            .lookup_instance(&sop)
            .unwrap()
            .unwrap_or_else(|| panic!("{sop} reached storescp but is not catalogued"));
        let stored = gw.storage().join(&row.rel_path);
        assert_eq!(
            data_set_bytes(&received),
            data_set_bytes(&stored),
            "{sop}: the data set storescp received differs from the stored one"
        );
    }
    let sent: BTreeSet<String> = pacs.files().iter().map(|p| sop_of(p)).collect();
    let originals: BTreeSet<String> = files.iter().map(|p| sop_of(p)).collect();
    assert_eq!(sent, originals);

    wait_for(
        "the queue to show all sent",
        Duration::from_secs(20),
        || {
            let s = status(&gw.config_path);
            let p = of(&s, "pacs");
            p["pending"] == 0 && p["sent"] == 5
        },
    );
    let s = status(&gw.config_path);
    let p = of(&s, "pacs");
    assert_eq!(p["failed"], 0, "{s}");
    assert_eq!(p["ae_title"], "PACS");
    assert_eq!(p["address"], format!("127.0.0.1:{pacs_port}"));
    assert!(p["oldest_pending_at"].is_null(), "{s}");

    // /metrics shows the drained queue and the sends.
    let (code, body) = http_get(gw.http_port, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("studywatch_forward_queue_depth{destination=\"pacs\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("studywatch_forwarded_total{destination=\"pacs\",outcome=\"sent\"} 5"),
        "{body}"
    );
}

#[test]
fn compressed_instances_reach_storescp_in_their_own_transfer_syntax_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let pacs_port = free_port();
    let pacs = Storescp::start(pacs_port, dir.path());
    let gw = TestGateway::with(Options {
        tail: destination("pacs", pacs_port, ""),
        ..Options::default()
    });
    let files: Vec<PathBuf> = [
        "valid/mr_j2k_lossless.dcm",
        "valid/ct_jpegls_lossless.dcm",
        "valid/xa_jpeg_baseline_2frames.dcm",
    ]
    .iter()
    .map(|f| corpus(f))
    .collect();
    // dcmsend proposes each file's own (compressed) transfer syntax.
    let port = gw.port.to_string();
    let mut args = vec!["-aec", AE, "-aet", "CT1", "-dn", "-nh", "127.0.0.1", &port];
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = dcmtk("dcmsend", &args);
    assert!(out.status.success(), "{}", show(&out));

    wait_for("3 instances at storescp", Duration::from_secs(60), || {
        pacs.files().len() == 3
    });
    for original in &files {
        let sop = sop_of(original);
        let received = pacs
            .files()
            .into_iter()
            .find(|p| sop_of(p) == sop)
            .unwrap_or_else(|| panic!("{sop} did not reach storescp"));
        assert_eq!(ts_of(&received), ts_of(original), "{sop}: transcoded");
        assert_eq!(
            data_set_bytes(&received),
            data_set_bytes(original),
            "{sop}: the data set storescp received differs from the one sent to the gateway"
        );
    }
    assert!(ts_of(&files[0]).starts_with("1.2.840.10008.1.2.4.90"));
}

#[test]
fn an_implicit_only_destination_gets_explicit_instances_reencoded_value_for_value() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(2, &dir.path().join("series"));
    assert_eq!(
        ts_of(&files[0]),
        "1.2.840.10008.1.2.1",
        "the series is explicit VR"
    );
    let pacs_port = free_port();
    let pacs = Storescp::start_with(pacs_port, dir.path(), "+xi");
    let gw = TestGateway::with(Options {
        tail: destination("pacs", pacs_port, ""),
        ..Options::default()
    });
    storescu(gw.port, &files);
    wait_for("2 instances at storescp", Duration::from_secs(60), || {
        pacs.files().len() == 2
    });
    for original in &files {
        let sop = sop_of(original);
        let received = pacs
            .files()
            .into_iter()
            .find(|p| sop_of(p) == sop)
            .unwrap_or_else(|| panic!("{sop} did not reach storescp"));
        assert_eq!(ts_of(&received), "1.2.840.10008.1.2", "sent as implicit VR");
        // Only the encoding changed: every element has the same value.
        let a = dicom_object::open_file(original).unwrap();
        let b = dicom_object::open_file(&received).unwrap();
        let values = |o: &dicom_object::DefaultDicomObject| -> Vec<(dicom_core::Tag, Vec<u8>)> {
            o.iter()
                .map(|e| {
                    let bytes = e.value().to_bytes().map(|c| c.to_vec()).unwrap_or_default();
                    (e.header().tag, bytes)
                })
                .collect()
        };
        assert_eq!(values(&a), values(&b), "{sop}: a value changed");
    }
    // The stored copy is untouched: still explicit VR.
    let row = gw
        .catalog()
        .lookup_instance(&sop_of(&files[0]))
        .unwrap()
        .unwrap();
    assert_eq!(
        ts_of(&gw.storage().join(&row.rel_path)),
        "1.2.840.10008.1.2.1"
    );
}

#[test]
fn an_instance_that_cannot_be_sent_raises_forward_stalled_until_retried() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(3, &dir.path().join("series"));
    let pacs_port = free_port();
    let gw = TestGateway::with(Options {
        tail: destination("pacs", pacs_port, ""),
        ..Options::default()
    });
    storescu(gw.port, &files);
    // The stored file of one instance goes missing before it is forwarded
    // (a disk fault, a mistaken clean-up): it can never be sent as things
    // stand.
    let lost = sop_of(&files[1]);
    let row = gw.catalog().lookup_instance(&lost).unwrap().unwrap();
    let lost_path = gw.storage().join(&row.rel_path);
    let kept = std::fs::read(&lost_path).unwrap();
    std::fs::remove_file(&lost_path).unwrap();

    let pacs = Storescp::start(pacs_port, dir.path());
    let out = gw.cli(&["forward", "retry", "--destination", "pacs"]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for("2 sent and 1 failed", Duration::from_secs(60), || {
        let s = status(&gw.config_path);
        let p = of(&s, "pacs");
        p["sent"] == 2 && p["failed"] == 1 && p["pending"] == 0
    });
    // Failed rows wait for a person: the watchdog says so at once.
    let stalled = || stalled_alarm(&gw, "pacs");
    wait_for("forward_stalled to open", Duration::from_secs(30), || {
        stalled().is_some_and(|a| a.state == "open")
    });
    let alarm = stalled().unwrap();
    assert!(
        alarm
            .detail
            .contains("1 instance(s) could not be sent to pacs"),
        "{}",
        alarm.detail
    );
    let (code, page) = http_get(gw.http_port, "/api/alarms?state=open");
    assert_eq!(code, 200);
    assert!(page.contains("forward_stalled"), "{page}");

    // The file is put back and the row retried: delivered, alarm resolved.
    std::fs::write(&lost_path, kept).unwrap();
    let out = gw.cli(&[
        "forward",
        "retry",
        "--destination",
        "pacs",
        "--by",
        "pacs-team",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for("all 3 sent", Duration::from_secs(60), || {
        let s = status(&gw.config_path);
        of(&s, "pacs")["sent"] == 3
    });
    wait_for(
        "forward_stalled to resolve",
        Duration::from_secs(30),
        || stalled().is_some_and(|a| a.state == "resolved"),
    );
    assert_eq!(pacs.files().len(), 3);
}

#[test]
fn instances_wait_for_an_unreachable_destination_then_arrive_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(4, &dir.path().join("series"));
    let pacs_port = free_port();
    let gw = TestGateway::with(Options {
        tail: format!(
            "[forward]\nalarm_after = \"2s\"\n{}",
            destination("pacs", pacs_port, "")
        ),
        ..Options::default()
    });
    storescu(gw.port, &files);

    // Nothing listens: the instances stay queued and attempts grow.
    wait_for("attempts to grow", Duration::from_secs(30), || {
        let s = status(&gw.config_path);
        let p = of(&s, "pacs");
        p["pending"] == 4 && p["max_attempts"].as_u64().unwrap_or(0) >= 2
    });
    let s = status(&gw.config_path);
    let p = of(&s, "pacs");
    assert_eq!(p["sent"], 0, "{s}");
    assert!(!p["oldest_pending_at"].is_null(), "{s}");
    assert!(
        p["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{s}"
    );

    // `forward retry` makes the backed-off rows due at once, and is audited.
    let out = gw.cli(&[
        "forward",
        "retry",
        "--destination",
        "pacs",
        "--by",
        "pacs-team",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let audit = gw.catalog().audit(None, None).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "forward_retry" && a.actor == "pacs-team"),
        "{audit:?}"
    );
    let out = gw.cli(&["forward", "retry", "--destination", "nowhere"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    // Waiting past `alarm_after` raises forward_stalled for the destination.
    let stalled = || stalled_alarm(&gw, "pacs");
    wait_for("forward_stalled to open", Duration::from_secs(30), || {
        stalled().is_some_and(|a| a.state == "open")
    });
    let alarm = stalled().unwrap();
    assert!(alarm.detail.contains("4 instance(s)"), "{}", alarm.detail);

    let pacs = Storescp::start(pacs_port, dir.path());
    wait_for("the queue to drain", Duration::from_secs(60), || {
        let s = status(&gw.config_path);
        let p = of(&s, "pacs");
        p["pending"] == 0 && p["sent"] == 4
    });
    let received: BTreeSet<String> = pacs.files().iter().map(|p| sop_of(p)).collect();
    let originals: BTreeSet<String> = files.iter().map(|p| sop_of(p)).collect();
    assert_eq!(received, originals);
    assert_eq!(pacs.requests(), 4, "each instance sent once");
    // Delivered: the alarm resolves on its own.
    wait_for(
        "forward_stalled to resolve",
        Duration::from_secs(30),
        || stalled().is_some_and(|a| a.state == "resolved"),
    );
}

#[test]
fn a_destination_whose_match_excludes_the_source_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(3, &dir.path().join("series"));
    let pacs_port = free_port();
    let other_port = free_port();
    let pacs = Storescp::start(pacs_port, dir.path());
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = Storescp::start(other_port, &other_dir);
    let gw = TestGateway::with(Options {
        tail: format!(
            "{}{}",
            destination("pacs", pacs_port, "match = { calling_ae = [\"CT1\"] }"),
            destination(
                "elsewhere",
                other_port,
                "match = { source = [\"TRUST-B\"] }"
            )
        ),
        ..Options::default()
    });
    storescu(gw.port, &files);
    wait_for("3 instances at pacs", Duration::from_secs(60), || {
        pacs.files().len() == 3
    });
    let store = gw.catalog();
    for f in &files {
        let sop = sop_of(f);
        assert_eq!(store.forward_state("elsewhere", &sop).unwrap(), None);
        assert!(store.forward_state("pacs", &sop).unwrap().is_some());
    }
    let s = status(&gw.config_path);
    let e = of(&s, "elsewhere");
    assert_eq!(
        (e["pending"].clone(), e["sent"].clone()),
        (0.into(), 0.into()),
        "{s}"
    );
    assert!(other.files().is_empty());
    assert_eq!(other.requests(), 0);
}

#[test]
fn kill_9_mid_forwarding_then_restart_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(200, &dir.path().join("series"));
    let pacs_port = free_port();
    let pacs = Storescp::start(pacs_port, dir.path());
    let port = free_port();
    let config = write_process_config(
        dir.path(),
        port,
        &Options {
            tail: destination("pacs", pacs_port, ""),
            ..Options::default()
        },
    );
    let mut gw = GatewayProcess::start(&config, port, &[]);
    storescu(port, &files);
    wait_for(
        "forwarding to be under way",
        Duration::from_secs(120),
        // Early, so that a fast machine has not sent all 200 by the kill.
        || pacs.requests() >= 5,
    );
    gw.kill9();
    let before = pacs.requests();
    assert!(
        before < 200,
        "forwarding finished before the kill: {before}"
    );

    let _gw = GatewayProcess::start(&config, port, &[]);
    wait_for(
        "the queue to drain after restart",
        Duration::from_secs(180),
        || {
            let s = status(&config);
            let p = of(&s, "pacs");
            p["pending"] == 0 && p["sent"] == 200
        },
    );
    let store =
        studywatch::catalog::Store::open(&dir.path().join("catalog.sqlite3"), true).unwrap();
    let received: BTreeSet<String> = pacs.files().iter().map(|p| sop_of(p)).collect();
    for f in &files {
        let sop = sop_of(f);
        let (state, _) = store.forward_state("pacs", &sop).unwrap().unwrap();
        assert_eq!(state, "sent", "{sop}");
        assert!(received.contains(&sop), "{sop} never reached storescp");
    }
    let s = status(&config);
    assert_eq!(of(&s, "pacs")["failed"], 0, "{s}");
}
