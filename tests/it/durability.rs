//! A success status means durable: kill -9 in the middle of a transfer
//! loses no acknowledged instance, and the system calls for one store
//! happen in the order that makes that true.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

#[test]
fn kill_9_mid_transfer_loses_no_acknowledged_instance() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_series(500, &dir.path().join("series"));
    let port = free_port();
    let config = write_process_config(dir.path(), port, &Options::default());
    let mut gw = GatewayProcess::start(&config, port, &[]);

    let mut sender = rawstore(port, "CRASHTEST")
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(sender.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["status"] == 0 {
            let file = v["file"].as_str().unwrap().to_owned();
            acknowledged.push(file);
            if acknowledged.len() == 150 {
                gw.kill9();
            }
        }
    }
    let _ = sender.wait();
    assert!(
        acknowledged.len() >= 150 && acknowledged.len() < 500,
        "acknowledged {}",
        acknowledged.len()
    );

    // Restart on the same storage and catalog.
    let gw = GatewayProcess::start(&config, port, &[]);
    let store =
        studywatch::catalog::Store::open(&dir.path().join("catalog.sqlite3"), true).unwrap();
    for file in &acknowledged {
        let sop = std::path::Path::new(file)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            store.lookup_instance(&sop).unwrap().is_some(),
            "acknowledged {sop} is missing after kill -9"
        );
    }
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .arg("verify")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // Partial files from the killed run are gone, and every stored file
    // that is catalogued is whole.
    let tmp = dir.path().join("storage/.tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp files survived a restart"
    );
    for path in stored_files(&dir.path().join("storage")) {
        assert!(!path.to_string_lossy().ends_with(".part"), "{path:?}");
    }
    // The sender retries everything: all 500 end up stored exactly once.
    let out = rawstore(port, "CRASHTEST").args(&files).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let ok = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"status\": 0"))
        .count();
    assert_eq!(ok, 500, "{}", show(&out));
    assert_eq!(store.instances(None).unwrap().len(), 500);
    drop(gw);
}

/// One traced system call: its index in time order and its text.
struct Call {
    text: String,
}

/// Regression: PIDs under 10000 are padded in strace's output, which once
/// made this test read an empty trace on a fresh machine.
#[test]
fn a_store_is_answered_only_after_file_rename_directory_and_catalog_are_synced() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_process_config(dir.path(), port, &Options::default());
    let trace = dir.path().join("trace.txt");
    let trace_arg = trace.to_str().unwrap().to_owned();
    let mut gw = GatewayProcess::start(
        &config,
        port,
        &[
            "strace",
            "-f",
            "-ttt",
            "-yy",
            "-o",
            &trace_arg,
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,write,writev,sendto,sendmsg",
        ],
    );
    let case = manifest()
        .into_iter()
        .find(|c| c.path == "valid/mr_explicit_le.dcm")
        .unwrap();
    let out = dcmtk(
        "dcmsend",
        &[
            "-aec",
            AE,
            "-aet",
            "TRACED",
            "127.0.0.1",
            &port.to_string(),
            corpus(&case.path).to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(gw_catalog_has(dir.path(), &case.sop_instance));
    gw.signal("TERM");
    let _ = gw.child.wait();

    let mut calls: Vec<(f64, Call)> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter_map(|l| {
            // "PID TIME call": strace pads short PIDs with extra spaces.
            let (_pid, rest) = l.trim_start().split_once(' ')?;
            let (t, call) = rest.trim_start().split_once(' ')?;
            Some((
                t.parse::<f64>().ok()?,
                Call {
                    text: call.to_owned(),
                },
            ))
        })
        .collect();
    calls.sort_by(|a, b| a.0.total_cmp(&b.0));
    let calls: Vec<String> = calls.into_iter().map(|(_, c)| c.text).collect();
    let find = |from: usize, what: &str, pred: &dyn Fn(&str) -> bool| -> usize {
        calls[from..]
            .iter()
            .position(|c| pred(c))
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no {what} after call {from}:\n{}", calls.join("\n")))
    };
    let sync = |c: &str| c.starts_with("fsync(") || c.starts_with("fdatasync(");
    let file_sync = find(0, "fsync of the temp file", &|c| {
        sync(c) && c.contains(".part>")
    });
    let rename = find(file_sync, "rename into place", &|c| {
        c.starts_with("rename")
            && c.contains(".part")
            && c.contains(&format!("{}.dcm", case.sop_instance))
    });
    let dir_sync = find(rename, "fsync of the series directory", &|c| {
        sync(c) && c.contains("/storage/") && !c.contains(".part") && !c.contains(".dcm")
    });
    let commit = find(dir_sync, "catalog commit fsync", &|c| {
        sync(c) && c.contains("catalog.sqlite3-wal")
    });
    let gateway_socket = format!("TCP:[127.0.0.1:{port}->");
    let respond = find(commit, "the response on the association", &|c| {
        (c.starts_with("write(")
            || c.starts_with("sendto(")
            || c.starts_with("writev(")
            || c.starts_with("sendmsg("))
            && c.contains(&gateway_socket)
    });
    // Nothing was sent to the sender between the file sync and the commit.
    for c in &calls[file_sync..commit] {
        assert!(!c.contains(&gateway_socket), "sent before the commit: {c}");
    }
    assert!(file_sync < rename && rename < dir_sync && dir_sync < commit && commit < respond);
}

fn gw_catalog_has(dir: &std::path::Path, sop: &str) -> bool {
    let store = studywatch::catalog::Store::open(&dir.join("catalog.sqlite3"), true).unwrap();
    store.lookup_instance(sop).unwrap().is_some()
}

#[test]
fn sigterm_lets_the_gateway_exit_within_its_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_process_config(dir.path(), port, &Options::default());
    let mut gw = GatewayProcess::start(&config, port, &[]);
    // An idle association is open when the signal arrives.
    let mut holder = hold_association(port, 20);
    let start = std::time::Instant::now();
    gw.signal("TERM");
    let mut exited = None;
    wait_for(
        "the gateway to exit after SIGTERM",
        Duration::from_secs(10),
        || {
            exited = gw.child.try_wait().unwrap();
            exited.is_some()
        },
    );
    assert!(exited.unwrap().success(), "{exited:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    let _ = holder.kill();
    let _ = holder.wait();
}

/// What the gateway sent to systemd's notify socket, one datagram each.
fn notifications(socket: &std::os::unix::net::UnixDatagram, within: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned()),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn systemd_hears_ready_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let port = free_port();
    let config = write_process_config(dir.path(), port, &Options::default());
    // As systemd runs the unit: NOTIFY_SOCKET, and WatchdogSec=1 s.
    let notify = format!("NOTIFY_SOCKET={}", path.display());
    let gw = GatewayProcess::start(&config, port, &["env", &notify, "WATCHDOG_USEC=1000000"]);
    let heard = notifications(&socket, Duration::from_secs(3));
    assert_eq!(
        heard.first().map(String::as_str),
        Some("READY=1"),
        "{heard:?}"
    );
    // Pings at half the interval while the process and its watchdog
    // scheduler run: about six in three seconds.
    let pings = heard.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 3, "{heard:?}");
    gw.signal("TERM");
    let heard = notifications(&socket, Duration::from_secs(5));
    assert!(heard.iter().any(|m| m == "STOPPING=1"), "{heard:?}");
}
