//! The corpus on the wire: every valid file is stored byte for byte and
//! catalogued; every invalid one gets its status and Error Comment and is
//! not stored as an instance.

use std::time::Duration;

use crate::harness::*;

fn valid() -> Vec<Case> {
    manifest().into_iter().filter(|c| c.status == 0).collect()
}

fn invalid() -> Vec<Case> {
    manifest().into_iter().filter(|c| c.status != 0).collect()
}

/// Each valid file is in the catalog, and its stored data set is exactly
/// the bytes of the file's data set.
fn assert_stored_as_sent(gw: &TestGateway, cases: &[Case]) {
    let store = gw.catalog();
    for case in cases {
        let row = store
            .lookup_instance(&case.sop_instance)
            .unwrap()
            .unwrap_or_else(|| panic!("{} not catalogued", case.path));
        let stored = gw.storage().join(&row.rel_path);
        assert!(
            data_set_bytes(&stored) == data_set_bytes(&corpus(&case.path)),
            "{}: stored data set differs from the sent one",
            case.path
        );
        assert_eq!(row.transfer_syntax, case.ts, "{}", case.path);
        let hash = studywatch::ingest::hash_stored_file(&stored).unwrap();
        assert_eq!(hash, row.sha256, "{}", case.path);
    }
}

#[test]
fn dcmsend_stores_every_valid_file_in_its_own_transfer_syntax() {
    let gw = TestGateway::start();
    let cases = valid();
    assert!(cases.len() >= 10, "corpus too small: {}", cases.len());
    let report = gw.dir.path().join("dcmsend-report.txt");
    let mut args = vec![
        "-aec",
        AE,
        "-dn",
        "-nh",
        "+crf",
        report.to_str().unwrap(),
        "127.0.0.1",
    ];
    let port = gw.port.to_string();
    args.push(&port);
    let files: Vec<String> = cases
        .iter()
        .map(|c| corpus(&c.path).display().to_string())
        .collect();
    args.extend(files.iter().map(String::as_str));
    let out = dcmtk("dcmsend", &args);
    assert!(out.status.success(), "{}", show(&out));
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(
        !report.contains("Failure") && !report.contains("failed"),
        "{report}"
    );
    // dcmsend sends compressed files in their own transfer syntax, byte for
    // byte; an uncompressed file it may re-encode into the little-endian
    // syntax it prefers, so only its presence is checked.
    let native = [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
    ];
    let (verbatim, converted): (Vec<Case>, Vec<Case>) = cases
        .into_iter()
        .partition(|c| !native.contains(&c.ts.as_str()));
    assert!(verbatim.len() >= 5);
    assert_stored_as_sent(&gw, &verbatim);
    let store = gw.catalog();
    for case in &converted {
        assert!(
            store.lookup_instance(&case.sop_instance).unwrap().is_some(),
            "{} not stored",
            case.path
        );
    }
}

#[test]
fn storescu_stores_the_uncompressed_files() {
    let gw = TestGateway::start();
    let native = [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
    ];
    let cases: Vec<Case> = valid()
        .into_iter()
        .filter(|c| native.contains(&c.ts.as_str()))
        .collect();
    assert!(cases.len() >= 4);
    let port = gw.port.to_string();
    let files: Vec<String> = cases
        .iter()
        .map(|c| corpus(&c.path).display().to_string())
        .collect();
    let mut args = vec!["-aec", AE, "127.0.0.1", &port];
    args.extend(files.iter().map(String::as_str));
    let out = dcmtk("storescu", &args);
    assert!(out.status.success(), "{}", show(&out));
    let store = gw.catalog();
    for case in &cases {
        assert!(
            store.lookup_instance(&case.sop_instance).unwrap().is_some(),
            "{} not stored",
            case.path
        );
    }
}

#[test]
fn our_send_stores_every_valid_file_byte_for_byte() {
    let gw = TestGateway::start();
    let cases = valid();
    let to = format!("{AE}@127.0.0.1:{}", gw.port);
    let files: Vec<String> = cases
        .iter()
        .map(|c| corpus(&c.path).display().to_string())
        .collect();
    let mut args = vec!["send", "--to", &to];
    args.extend(files.iter().map(String::as_str));
    let out = gw.cli(&args);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches(": 0x0000 Success").count(),
        cases.len(),
        "{stdout}"
    );
    assert_stored_as_sent(&gw, &cases);
}

#[test]
fn a_resent_identical_instance_is_a_no_op() {
    let gw = TestGateway::start();
    let case = &valid()[0];
    let to = format!("{AE}@127.0.0.1:{}", gw.port);
    let file = corpus(&case.path).display().to_string();
    for _ in 0..2 {
        let out = gw.cli(&["send", "--to", &to, &file]);
        assert!(out.status.success(), "{}", show(&out));
    }
    let store = gw.catalog();
    assert_eq!(store.instances(None).unwrap().len(), 1);
}

#[test]
fn invalid_files_get_their_status_and_comment_and_are_not_stored() {
    let gw = TestGateway::start();
    let cases = invalid();
    assert!(
        cases.len() >= 9,
        "invalid corpus too small: {}",
        cases.len()
    );
    let port = gw.port.to_string();
    let files: Vec<String> = cases
        .iter()
        .map(|c| corpus(&c.path).display().to_string())
        .collect();
    let mut args = vec![
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--aet",
        "BADSENDER",
        "--aec",
        AE,
        "--manifest",
        "test-dicom/MANIFEST",
    ];
    args.extend(files.iter().map(String::as_str));
    let out = std::process::Command::new("python3")
        .current_dir(repo())
        .arg("tests/peers/rawstore.py")
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len(), "{}", show(&out));
    for (case, line) in cases.iter().zip(&lines) {
        let status = line["status"].as_u64().unwrap() as u16;
        assert_eq!(status, case.status, "{}: {line}", case.path);
        let comment = line["error_comment"].as_str().unwrap_or_default();
        assert!(
            !comment.is_empty() && comment.len() <= 64,
            "{}: comment {comment:?}",
            case.path
        );
        if let Some(expected) = &case.comment {
            let squash = |s: &str| s.to_lowercase().replace(' ', "");
            assert!(
                squash(comment).contains(&squash(expected)),
                "{}: comment {comment:?} lacks {expected:?}",
                case.path
            );
        }
    }
    let store = gw.catalog();
    assert_eq!(
        store.instances(None).unwrap().len(),
        0,
        "an invalid file was stored"
    );
    assert_eq!(store.counts().unwrap().failures as usize, cases.len());
    // Nothing escaped the storage root, and nothing but the bookkeeping
    // folders sits in it.
    let names: Vec<String> = std::fs::read_dir(gw.storage())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for n in &names {
        assert!(
            [".tmp", "quarantine", "rejected"].contains(&n.as_str()),
            "unexpected {n} in storage"
        );
    }
    assert!(!gw.dir.path().join("etc").exists());
}

#[test]
fn different_content_under_a_stored_uid_is_quarantined() {
    let gw = TestGateway::start();
    let case = valid()
        .into_iter()
        .find(|c| c.ts == "1.2.840.10008.1.2.1")
        .expect("an explicit LE file");
    let to = format!("{AE}@127.0.0.1:{}", gw.port);
    let original = corpus(&case.path);
    let out = gw.cli(&["send", "--to", &to, original.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    // Same UIDs, one pixel byte changed: same size, different content.
    let mut bytes = std::fs::read(&original).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0xFF;
    let altered = gw.dir.path().join("altered.dcm");
    std::fs::write(&altered, &bytes).unwrap();
    let out = gw.cli(&["send", "--to", &to, altered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("quarantined"),
        "{}",
        show(&out)
    );
    let store = gw.catalog();
    assert_eq!(store.counts().unwrap().conflicts, 1);
    let row = store.lookup_instance(&case.sop_instance).unwrap().unwrap();
    assert_eq!(
        data_set_bytes(&gw.storage().join(&row.rel_path)),
        data_set_bytes(&original),
        "the stored original was overwritten"
    );
    let quarantined = gw.storage().join("quarantine").join(&case.sop_instance);
    assert_eq!(std::fs::read_dir(quarantined).unwrap().count(), 1);
}

/// Writes one instance of `study` whose Instance Creation Date/Time is
/// `created` (London wall-clock time, no offset) and sends it with DCMTK
/// storescu under the calling AE `aet`.
fn send_created_at(gw: &TestGateway, aet: &str, study: &str, created: jiff::Timestamp) {
    let local = created.in_tz("Europe/London").unwrap();
    let dir = gw
        .dir
        .path()
        .join(format!("created-{}", created.as_millisecond()));
    let created = local.strftime("%Y%m%d%H%M%S").to_string();
    let file = make_study(
        &dir,
        &["--study-uid", study, "--instance-created", &created],
    );
    storescu_as(gw, aet, &file);
}

#[test]
fn an_instance_from_a_clock_ahead_of_ours_raises_clock_skew() {
    // The default threshold, clock_skew_after = "5m".
    let gw = TestGateway::start();
    let now = jiff::Timestamp::now();
    // Made "two hours from now" by the modality's clock, in the site's zone
    // (the instance has no Timezone Offset From UTC).
    send_created_at(
        &gw,
        "CT_FAST",
        "1.2.826.0.1.3680043.10.1661.79.1",
        now + jiff::SignedDuration::from_hours(2),
    );
    wait_for("clock_skew for CT_FAST", Duration::from_secs(20), || {
        gw.alarm("clock_skew", "clock:CT_FAST").is_some()
    });
    let alarm = gw.alarm("clock_skew", "clock:CT_FAST").unwrap();
    assert_eq!(alarm.state, "open");
    // Made to the second, and received a moment after `now`: just under
    // two hours ahead.
    for part in ["DICOM calling AE CT_FAST", "1 h 59 min ahead of ours"] {
        assert!(
            alarm.detail.contains(part),
            "{part:?} not in {:?}",
            alarm.detail
        );
    }
    // The same through the CLI's JSON.
    let out = gw.cli(&["alarms", "--open", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let alarms: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "clock_skew" && a["id"] == alarm.id),
        "{alarms}"
    );

    // Studies made in the past are no evidence of anything.
    send_created_at(
        &gw,
        "CT_OLD",
        "1.2.826.0.1.3680043.10.1661.79.2",
        now - jiff::SignedDuration::from_hours(24 * 400),
    );
    // A later instance from the same modality, made in line with our clock,
    // resolves it.
    send_created_at(
        &gw,
        "CT_FAST",
        "1.2.826.0.1.3680043.10.1661.79.3",
        jiff::Timestamp::now(),
    );
    wait_for("clock_skew to resolve", Duration::from_secs(20), || {
        gw.alarm("clock_skew", "clock:CT_FAST")
            .is_some_and(|a| a.state == "resolved")
    });
    assert!(gw.alarm("clock_skew", "clock:CT_OLD").is_none());
}
