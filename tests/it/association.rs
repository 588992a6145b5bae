//! Associations: C-ECHO, AE title checks, the association cap, and
//! operations the gateway does not offer.

use std::process::Command;

use crate::harness::*;

fn probe(gw: &TestGateway, args: &[&str]) -> Vec<serde_json::Value> {
    let port = gw.port.to_string();
    let out = Command::new("python3")
        .arg(repo().join("tests/peers/dimse_probe.py"))
        .args(args)
        .args(["--port", &port])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn repeated_echoes_on_one_association_answer_each_message_id() {
    let gw = TestGateway::start();
    let lines = probe(&gw, &["echo", "--ids", "5,6,700,65535"]);
    assert_eq!(lines.len(), 4);
    for l in &lines {
        assert_eq!(l["responded_to"], l["message_id"], "{l}");
        assert_eq!(l["status"], 0, "{l}");
    }
    let out = echoscu(gw.port, &["--repeat", "3"]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn an_operation_we_do_not_offer_is_unrecognized_and_the_association_goes_on() {
    let gw = TestGateway::start();
    let lines = probe(&gw, &["find"]);
    assert_eq!(lines[0]["status"], 0x0211, "{}", lines[0]);
    assert_eq!(lines[0]["responded_to"], 9);
    assert_eq!(lines[1]["echo_after"], 0);
}

#[test]
fn unknown_callers_are_rejected_when_the_config_denies_them() {
    let gw = TestGateway::with(Options {
        accept_unknown_callers: Some(false),
        peers: "[[dicom.peers]]\nae_title = \"CT1\"\nsource = \"ct-main\"\n".into(),
        ..Options::default_denying()
    });
    let out = echoscu(gw.port, &["-aet", "STRANGER"]);
    assert!(!out.status.success(), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("Rejected") && text.to_lowercase().contains("calling"),
        "{text}"
    );
    let out = echoscu(gw.port, &["-aet", "CT1"]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn the_called_ae_title_must_be_ours() {
    let gw = TestGateway::start();
    let out = Command::new("/usr/bin/echoscu")
        .args(["-aec", "SOMEONEELSE", "127.0.0.1", &gw.port.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        show(&out).to_lowercase().contains("called"),
        "{}",
        show(&out)
    );
}

#[test]
fn the_association_over_the_cap_is_rejected_transiently() {
    let gw = TestGateway::with(Options {
        dicom_extra: "max_associations = 1".into(),
        ..Options::default()
    });
    let mut holder = hold_association(gw.port, 4);
    let out = echoscu(gw.port, &[]);
    assert!(!out.status.success(), "{}", show(&out));
    let text = show(&out).to_lowercase();
    assert!(
        text.contains("transient") && text.contains("limit"),
        "{text}"
    );
    assert!(holder.wait().unwrap().success());
    // Once the holder released, the slot is free again.
    wait_for(
        "a free association slot",
        std::time::Duration::from_secs(10),
        || echoscu(gw.port, &[]).status.success(),
    );
}

#[test]
fn an_aborted_association_leaves_the_gateway_serving() {
    let gw = TestGateway::start();
    let out = echoscu(gw.port, &["--abort"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = echoscu(gw.port, &[]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn a_silent_connection_is_closed_after_the_read_timeout() {
    use std::io::Read;
    let gw = TestGateway::with(Options {
        read_timeout: Some("1s".into()),
        ..Options::default()
    });
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    // Nothing is sent: the gateway gives up on the association request and
    // closes the socket, which reads as end of stream (or a reset).
    match socket.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes from the gateway"),
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::ConnectionReset),
            "the gateway kept a silent connection open: {e}"
        ),
    }
    // And it still serves others.
    assert!(echoscu(gw.port, &[]).status.success());
}
