//! Reports in: HL7 v2 over MLLP from python-hl7's `mllp_send` (a real
//! sender), DICOM SR through DCMTK `storescu`, and their linking to studies
//! as the CLI shows it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// UIDs of this file's studies live under this root.
const ROOT: &str = "1.2.826.0.1.3680043.10.1661.77";
pub(crate) const PATIENT: &str = "RXX1000001";

/// An ACK as `mllp_send` printed it.
#[derive(Debug)]
pub(crate) struct Ack {
    pub code: String,
    pub control_id: String,
    pub text: String,
}

/// A fixture from tests/data/hl7 with its placeholders filled in and its
/// segments ended by CR, as a RIS sends them.
pub(crate) fn fixture(name: &str, subs: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = std::fs::read(repo().join("tests/data/hl7").join(name)).expect("fixture");
    for (key, value) in subs {
        bytes = replace(
            &bytes,
            format!("{{{{{key}}}}}").as_bytes(),
            value.as_bytes(),
        );
    }
    let text: Vec<u8> = bytes.into_iter().filter(|&b| b != b'\r').collect();
    let mut segments: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|s| !s.is_empty())
        .collect();
    // Placeholders left unfilled would be a mistake in the test itself.
    for s in &mut segments {
        assert!(
            !String::from_utf8_lossy(s).contains("{{"),
            "unfilled placeholder in {name}"
        );
    }
    segments.join(&b'\r')
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Every placeholder, filled from a few values.
pub(crate) fn subs<'a>(
    control_id: &'a str,
    study_uid: &'a str,
    accession: &'a str,
    placer: &'a str,
    filler: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CONTROL_ID", control_id),
        ("STUDY_UID", study_uid),
        ("ACCESSION", accession),
        ("PLACER", placer),
        ("FILLER", filler),
        ("PATIENT_ID", PATIENT),
        ("REPORT_TIME", "20261120143000"),
        ("EXAM_TIME", "20261120101500"),
    ]
}

/// What an ACK's text says of a report that linked to one study, and of one
/// that linked to none.
const LINKED_ONE: &str = "linked to 1 study";
const NO_MATCH: &str = "no study matches yet";

/// Every ACK is AA, and each one's text says what `says` gives, in order.
fn assert_accepted(acks: &[Ack], says: &[&str]) {
    assert_eq!(acks.len(), says.len(), "{acks:?}");
    for (ack, text) in acks.iter().zip(says) {
        assert_eq!(ack.code, "AA", "{ack:?}");
        assert!(ack.text.contains(text), "expected {text:?}: {ack:?}");
    }
}

/// Sends the messages with `mllp_send` on one connection, one after the
/// other, each waiting for its ACK; returns the ACKs in order.
pub(crate) fn mllp_send(port: u16, dir: &Path, messages: &[Vec<u8>]) -> Vec<Ack> {
    let file = dir.join(format!("messages-{}.mllp", rand_suffix()));
    let mut framed = Vec::new();
    for m in messages {
        framed.push(0x0B);
        framed.extend_from_slice(m);
        framed.extend_from_slice(&[0x1C, 0x0D]);
    }
    std::fs::write(&file, framed).unwrap();
    let out = Command::new("mllp_send")
        .arg("--file")
        .arg(&file)
        .arg("--port")
        .arg(port.to_string())
        .arg("127.0.0.1")
        .output()
        .expect("run mllp_send (python3-hl7)");
    assert!(out.status.success(), "{}", show(&out));
    let acks = parse_acks(&out.stdout);
    assert_eq!(acks.len(), messages.len(), "{}", show(&out));
    acks
}

pub(crate) fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn parse_acks(stdout: &[u8]) -> Vec<Ack> {
    let mut acks = Vec::new();
    for frame in stdout.split(|&b| b == 0x0B).skip(1) {
        let body = frame.split(|&b| b == 0x1C).next().unwrap_or(&[]);
        let text = String::from_utf8_lossy(body);
        let msh = text.split('\r').next().unwrap_or("");
        let sep = msh.chars().nth(3).unwrap_or('|');
        let msa = text
            .split('\r')
            .find(|s| s.starts_with("MSA"))
            .unwrap_or_else(|| panic!("no MSA in {text:?}"));
        let f: Vec<&str> = msa.split(sep).collect();
        acks.push(Ack {
            code: f.get(1).unwrap_or(&"").to_string(),
            control_id: f.get(2).unwrap_or(&"").to_string(),
            text: f.get(3).unwrap_or(&"").to_string(),
        });
    }
    acks
}

/// Writes one CT instance of a study and sends it with DCMTK storescu.
pub(crate) fn send_study(gw: &TestGateway, uid: &str, accession: &str, patient: &str) {
    send_study_with(
        gw,
        uid,
        &["--accession", accession, "--patient-id", patient],
    );
}

/// [`send_study`] with any options of tests/peers/make_study.py.
fn send_study_with(gw: &TestGateway, uid: &str, args: &[&str]) {
    let dir = gw.dir.path().join(format!("images-{}", rand_suffix()));
    let mut all = vec!["--study-uid", uid];
    all.extend_from_slice(args);
    storescu(gw, &make_study(&dir, &all));
}

/// storescu's own default calling AE.
pub(crate) fn storescu(gw: &TestGateway, file: &Path) {
    storescu_as(gw, "STORESCU", file);
}

fn make_sr(gw: &TestGateway, args: &[&str]) -> PathBuf {
    let path = gw.dir.path().join(format!("sr-{}.dcm", rand_suffix()));
    let mut all = vec!["--out", path.to_str().unwrap(), "--patient-id", PATIENT];
    all.extend_from_slice(args);
    let out = python("tests/peers/make_sr.py", &all);
    assert!(out.status.success(), "{}", show(&out));
    path
}

fn study(gw: &TestGateway, uid: &str) -> Value {
    gw.cli_json(&["study", uid, "--json"])
}

/// The rules by which a study's reports are linked to it.
fn link_rules(study: &Value) -> Vec<String> {
    let uid = study["study_uid"].as_str().unwrap();
    study["reports"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["links"].as_array().unwrap().clone())
        .filter(|l| l["study_uid"] == uid)
        .map(|l| l["rule"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn hl7_reports_link_by_study_uid_accession_and_order() {
    let gw = TestGateway::start();
    let uid = |n: u32| format!("{ROOT}.1.{n}");
    for (n, acc) in [(1, "ACC-A"), (2, "ACC-B"), (3, "ACC-C"), (4, "ACC-D")] {
        send_study(&gw, &uid(n), acc, PATIENT);
    }
    let (a, b, c, d) = (uid(1), uid(2), uid(3), uid(4));
    let unreceived = uid(99);
    let messages = vec![
        // The study UID alone says which study (its accession matches nothing).
        fixture(
            "oru-zds-study-uid.hl7",
            &subs("M-A", &a, "NO-SUCH-ACC", "PL-A", "FL-A"),
        ),
        fixture(
            "oru-accession.hl7",
            &subs("M-B", "", "ACC-B", "PL-B", "FL-B"),
        ),
        // An order ties placer PL-C to accession ACC-C; the report names
        // only the placer and filler numbers.
        fixture(
            "orm-o01.hl7",
            &subs("M-C1", &unreceived, "ACC-C", "PL-C", "FL-C"),
        ),
        fixture(
            "oru-placer-filler.hl7",
            &subs("M-C2", "", "", "PL-C", "FL-C"),
        ),
        fixture(
            "oru-ipc-study-uid.hl7",
            &subs("M-D", &d, "ACC-D", "PL-D", "FL-D"),
        ),
        fixture(
            "omi-o23.hl7",
            &subs("M-E", &uid(98), "ACC-E", "PL-E", "FL-E"),
        ),
    ];
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &messages);
    let ids: Vec<&str> = acks.iter().map(|a| a.control_id.as_str()).collect();
    assert_eq!(ids, ["M-A", "M-B", "M-C1", "M-C2", "M-D", "M-E"]);
    for ack in &acks {
        assert_eq!(ack.code, "AA", "{ack:?}");
    }
    assert!(acks[0].text.contains("linked to 1 study"), "{:?}", acks[0]);

    for (study_uid, rule) in [
        (&a, "study_uid"),
        (&b, "accession"),
        (&c, "order"),
        (&d, "study_uid"),
    ] {
        let s = study(&gw, study_uid);
        assert_eq!(s["state"], "reported", "{study_uid}: {s:#}");
        assert_eq!(s["report_status"], "final");
        assert_eq!(link_rules(&s), [rule], "{study_uid}");
        // OBR-22 20261120143000, London (GMT in November).
        assert_eq!(s["reported_at"], "2026-11-20T14:30:00Z");
    }
    // The text view says how the report was linked.
    let out = gw.cli(&["study", &c]);
    assert!(show(&out).contains("linked by order"), "{}", show(&out));
    let reported = gw.cli_json(&["studies", "--reported", "--json"]);
    assert_eq!(reported.as_array().unwrap().len(), 4);
    assert!(
        gw.cli_json(&["studies", "--unreported", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// Accession numbers are unique only per issuer: the issuer DICOM carries
/// (Issuer of Accession Number Sequence) is compared with the namespace of
/// the report's accession (IPC-1 here), so a report of one issuer never links
/// to another issuer's study with the same number.
#[test]
fn an_accession_links_only_within_its_issuer() {
    let gw = TestGateway::with(Options {
        reports_extra: "[reports.hl7.fields]\naccession = \"IPC-1\"\n".into(),
        ..Options::default()
    });
    let ours = format!("{ROOT}.5.1");
    let theirs = format!("{ROOT}.5.2");
    let unissued = format!("{ROOT}.5.3");
    let patient = ["--patient-id", PATIENT];
    send_study_with(
        &gw,
        &ours,
        &[
            &["--accession", "ACC-I1", "--accession-issuer", "CRIS"][..],
            &patient,
        ]
        .concat(),
    );
    send_study_with(
        &gw,
        &theirs,
        &[
            &["--accession", "ACC-I2", "--accession-issuer", "OTHER-TRUST"][..],
            &patient,
        ]
        .concat(),
    );
    send_study_with(
        &gw,
        &unissued,
        &[&["--accession", "ACC-I3"][..], &patient].concat(),
    );
    assert_eq!(study(&gw, &ours)["issuer_of_accession"], "CRIS");
    assert_eq!(study(&gw, &theirs)["issuer_of_accession"], "OTHER-TRUST");
    assert_eq!(study(&gw, &unissued)["issuer_of_accession"], Value::Null);
    let text = show(&gw.cli(&["study", &ours]));
    assert!(
        text.contains("accession    ACC-I1 (issued by CRIS)"),
        "{text}"
    );

    // IPC-1 is ACCESSION^CRIS in this fixture; no study UID is given.
    let messages: Vec<Vec<u8>> = (1..=3)
        .map(|n| {
            let [id, acc, placer, filler] =
                ["I-", "ACC-I", "PL-I", "FL-I"].map(|p| format!("{p}{n}"));
            fixture(
                "oru-ipc-study-uid.hl7",
                &subs(&id, "", &acc, &placer, &filler),
            )
        })
        .collect();
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &messages);
    // A study without an issuer may be any issuer's: the third links.
    assert_accepted(&acks, &[LINKED_ONE, NO_MATCH, LINKED_ONE]);

    let s = study(&gw, &ours);
    assert_eq!(s["state"], "reported", "{s:#}");
    assert_eq!(link_rules(&s), ["accession"]);
    let s = study(&gw, &theirs);
    assert_eq!(s["state"], "unreported", "{s:#}");
    assert_eq!(link_rules(&study(&gw, &unissued)), ["accession"]);
    let unmatched = gw.cli_json(&["reports", "--unmatched", "--json"]);
    assert_eq!(unmatched.as_array().unwrap().len(), 1, "{unmatched:#}");
    assert_eq!(unmatched[0]["accession_number"], "ACC-I2");
    assert_eq!(unmatched[0]["issuer_of_accession"], "CRIS");

    // A DICOM SR in a study of its own names its request's accession with
    // the issuer beside it: it links to that issuer's study only.
    for (n, acc) in [(90, "ACC-I1"), (91, "ACC-I2")] {
        let sr = make_sr(
            &gw,
            &[
                "--kind",
                "basic-text",
                "--study-uid",
                &format!("{ROOT}.5.{n}"),
                "--ref-accession",
                acc,
                "--ref-accession-issuer",
                "OTHER-TRUST",
            ],
        );
        storescu(&gw, &sr);
    }
    let s = study(&gw, &theirs);
    assert_eq!(s["state"], "reported", "{s:#}");
    assert_eq!(link_rules(&s), ["accession"]);
    assert_eq!(
        link_rules(&study(&gw, &ours)),
        ["accession"],
        "the HL7 one only"
    );
}

#[test]
fn a_patient_id_links_only_within_its_issuer() {
    let gw = TestGateway::start();
    // The same digits from three places: this trust (RXX, as the RIS's PID-3
    // names it), another trust (RXY), and a modality that sends no issuer.
    let studies = [
        ("6.1", "ACC-P1", "RXX"),
        ("6.2", "ACC-P2", "RXY"),
        ("6.3", "ACC-P3", ""),
    ];
    for (n, acc, issuer) in studies {
        let mut args = vec!["--accession", acc, "--patient-id", PATIENT];
        if !issuer.is_empty() {
            args.extend(["--patient-issuer", issuer]);
        }
        send_study_with(&gw, &format!("{ROOT}.{n}"), &args);
    }
    let [ours, theirs, unissued] = studies.map(|(n, _, _)| format!("{ROOT}.{n}"));
    assert_eq!(study(&gw, &ours)["issuer_of_patient_id"], "RXX");
    assert_eq!(study(&gw, &theirs)["issuer_of_patient_id"], "RXY");
    assert_eq!(study(&gw, &unissued)["issuer_of_patient_id"], Value::Null);
    let text = show(&gw.cli(&["study", &theirs]));
    assert!(
        text.contains(&format!("patient id   {PATIENT} (issued by RXY)")),
        "{text}"
    );

    // PID-3 is {PATIENT}^^^RXX^MR~(an NHS number)^^^NHS^NH in this fixture.
    let messages: Vec<Vec<u8>> = studies
        .iter()
        .enumerate()
        .map(|(i, (_, acc, _))| {
            let [id, placer, filler] = ["P-", "PL-P", "FL-P"].map(|p| format!("{p}{i}"));
            fixture("oru-accession.hl7", &subs(&id, "", acc, &placer, &filler))
        })
        .collect();
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &messages);
    assert_accepted(&acks, &[LINKED_ONE, NO_MATCH, LINKED_ONE]);

    assert_eq!(study(&gw, &ours)["state"], "reported");
    assert_eq!(study(&gw, &unissued)["state"], "reported");
    let s = study(&gw, &theirs);
    assert_eq!(s["state"], "unreported", "{s:#}");
    assert!(
        s["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "report_link_refused"),
        "{s:#}"
    );
    let unmatched = gw.cli_json(&["reports", "--unmatched", "--json"]);
    assert_eq!(unmatched.as_array().unwrap().len(), 1, "{unmatched:#}");
    assert_eq!(unmatched[0]["accession_number"], "ACC-P2");
}

#[test]
fn a_report_that_arrives_before_its_images_links_when_they_arrive() {
    let gw = TestGateway::start();
    let uid = format!("{ROOT}.2.1");
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[fixture(
            "oru-accession.hl7",
            &subs("EARLY-1", "", "ACC-EARLY", "PL-1", "FL-1"),
        )],
    );
    assert_eq!(acks[0].code, "AA");
    assert!(
        acks[0].text.contains("no study matches yet"),
        "{:?}",
        acks[0]
    );
    let unmatched = gw.cli_json(&["reports", "--unmatched", "--json"]);
    assert_eq!(unmatched.as_array().unwrap().len(), 1);
    assert_eq!(unmatched[0]["accession_number"], "ACC-EARLY");
    assert_eq!(unmatched[0]["origin"], "hl7");

    send_study(&gw, &uid, "ACC-EARLY", PATIENT);
    let s = study(&gw, &uid);
    assert_eq!(s["state"], "reported", "{s:#}");
    assert_eq!(link_rules(&s), ["accession"]);
    assert!(
        gw.cli_json(&["reports", "--unmatched", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn result_status_withdrawal_and_cancellation_decide_the_state() {
    let gw = TestGateway::start();
    let uid = format!("{ROOT}.3.1");
    send_study(&gw, &uid, "ACC-S", PATIENT);
    let send = |file: &str, id: &str| {
        let acks = mllp_send(
            gw.hl7_port,
            gw.dir.path(),
            &[fixture(file, &subs(id, &uid, "ACC-S", "PL-S", "FL-S"))],
        );
        assert_eq!(acks[0].code, "AA", "{file}: {:?}", acks[0]);
        study(&gw, &uid)
    };
    let s = send("oru-preliminary.hl7", "S1");
    assert_eq!(
        (s["state"].as_str(), s["report_status"].as_str()),
        (Some("unreported"), Some("preliminary"))
    );
    let s = send("oru-zds-study-uid.hl7", "S2");
    assert_eq!(
        (s["state"].as_str(), s["report_status"].as_str()),
        (Some("reported"), Some("final"))
    );
    let s = send("oru-withdrawn.hl7", "S3");
    assert_eq!(
        (s["state"].as_str(), s["report_status"].as_str()),
        (Some("unreported"), Some("withdrawn"))
    );
    let s = send("oru-corrected.hl7", "S4");
    assert_eq!(
        (s["state"].as_str(), s["report_status"].as_str()),
        (Some("reported"), Some("corrected"))
    );
    let audit: Vec<&str> = s["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(audit.contains(&"study_reopened"), "{audit:?}");
    assert_eq!(s["reports"].as_array().unwrap().len(), 4);

    // A cancelled order on a study with images is left for a person.
    let other = format!("{ROOT}.3.2");
    send_study(&gw, &other, "ACC-X", PATIENT);
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[fixture(
            "oru-cancelled.hl7",
            &subs("X1", &other, "ACC-X", "PL-X", "FL-X"),
        )],
    );
    assert_eq!(acks[0].code, "AA");
    let s = study(&gw, &other);
    assert_eq!(
        (s["state"].as_str(), s["report_status"].as_str()),
        (Some("unreported"), Some("cancelled"))
    );
    assert!(
        s["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "order_cancelled")
    );
}

#[test]
fn failsafe_alert_categories_are_stored_with_the_report() {
    let gw = TestGateway::start();
    let messages = vec![
        fixture(
            "oru-critical-flag.hl7",
            &subs("F1", "", "ACC-F1", "P1", "F1"),
        ),
        fixture(
            "oru-critical-text.hl7",
            &subs("F2", "", "ACC-F2", "P2", "F2"),
        ),
        fixture(
            "oru-suspected-cancer.hl7",
            &subs("F3", "", "ACC-F3", "P3", "F3"),
        ),
        fixture("oru-accession.hl7", &subs("F4", "", "ACC-F4", "P4", "F4")),
        fixture("oru-escapes.hl7", &subs("F5", "", "ACC-F5", "P5", "F5")),
        fixture("oru-latin1.hl7", &subs("F6", "", "ACC-F6", "P6", "F6")),
    ];
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &messages);
    assert!(acks.iter().all(|a| a.code == "AA"), "{acks:?}");
    let reports = gw.cli_json(&["reports", "--json"]);
    let by_accession = |acc: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["accession_number"] == acc)
            .unwrap_or_else(|| panic!("no report for {acc}"))
            .clone()
    };
    assert_eq!(by_accession("ACC-F1")["alert_category"], "critical");
    assert_eq!(by_accession("ACC-F2")["alert_category"], "critical");
    assert_eq!(by_accession("ACC-F3")["alert_category"], "suspected_cancer");
    assert_eq!(by_accession("ACC-F4")["alert_category"], Value::Null);
    // Escapes decoded; Latin-1 read as such.
    let escaped = by_accession("ACC-F5");
    assert!(
        !escaped["text"].as_str().unwrap().contains("\\F\\"),
        "{escaped:#}"
    );
    let latin = by_accession("ACC-F6");
    assert!(
        latin["text"].as_str().unwrap().contains("Ödem"),
        "{latin:#}"
    );
    // Patient identifiers keep every repeat with its authority.
    let ids = by_accession("ACC-F4")["patient_ids"].clone();
    assert_eq!(ids[0]["id"], PATIENT);
    assert_eq!(ids[1]["authority"], "NHS");
}

#[test]
fn a_message_seen_before_is_acknowledged_again_and_processed_once() {
    let gw = TestGateway::start();
    let message = fixture("oru-accession.hl7", &subs("DUP-1", "", "ACC-DUP", "P", "F"));
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[message.clone(), message.clone()],
    );
    // And once more on a new connection.
    let again = mllp_send(gw.hl7_port, gw.dir.path(), &[message]);
    for ack in acks.iter().chain(&again) {
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AA", "DUP-1")
        );
    }
    assert!(acks[1].text.contains("duplicate"), "{:?}", acks[1]);
    let reports = gw.cli_json(&["reports", "--json"]);
    assert_eq!(reports.as_array().unwrap().len(), 1, "{reports:#}");
}

#[test]
fn refused_and_garbage_frames_get_ae_or_ar_and_the_listener_keeps_serving() {
    let gw = TestGateway::with(Options {
        hl7_extra: "max_message_bytes = 4096".into(),
        ..Options::default()
    });
    let mut oversized = fixture("oru-accession.hl7", &subs("BIG-1", "", "ACC-BIG", "P", "F"));
    oversized.extend_from_slice(b"\rOBX|9|TX|||");
    oversized.extend(std::iter::repeat_n(b'x', 6000));
    let messages = vec![
        b"this is not an HL7 message at all".to_vec(),
        fixture("adt-a01.hl7", &subs("ADT-1", "", "", "", "")),
        fixture(
            "oru-no-result-status.hl7",
            &subs("NRS-1", "", "ACC-N", "P", "F"),
        ),
        oversized,
        fixture("oru-accession.hl7", &subs("OK-1", "", "ACC-OK", "P", "F")),
    ];
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &messages);
    let codes: Vec<&str> = acks.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes, ["AR", "AR", "AE", "AR", "AA"], "{acks:?}");
    assert_eq!(acks[1].control_id, "ADT-1");
    assert!(acks[1].text.contains("ADT"), "{:?}", acks[1]);
    assert!(acks[2].text.contains("OBR-25"), "{:?}", acks[2]);
    assert!(acks[3].text.contains("limit"), "{:?}", acks[3]);
    assert_eq!(acks[3].control_id, "BIG-1");

    // Bytes outside any frame and a half-sent frame on another connection
    // disturb neither that connection's next message nor anyone else's.
    use std::io::{Read, Write};
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", gw.hl7_port)).unwrap();
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut framed = vec![0x0B];
    framed.extend(fixture(
        "oru-accession.hl7",
        &subs("RAW-1", "", "ACC-RAW", "P", "F"),
    ));
    framed.extend([0x1C, 0x0D]);
    raw.write_all(&framed).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = raw.read(&mut buf).unwrap();
    let acks_raw = parse_acks(&buf[..n]);
    assert_eq!(acks_raw[0].code, "AA", "{acks_raw:?}");
    let mut partial = std::net::TcpStream::connect(("127.0.0.1", gw.hl7_port)).unwrap();
    partial.write_all(b"\x0bMSH|^~\\&|HALF").unwrap();

    let later = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[fixture(
            "oru-accession.hl7",
            &subs("OK-2", "", "ACC-OK2", "P", "F"),
        )],
    );
    assert_eq!(later[0].code, "AA");
    drop(partial);
    // Refused messages are kept for the record too, but produce no report.
    let reports = gw.cli_json(&["reports", "--json"]);
    assert_eq!(reports.as_array().unwrap().len(), 3, "{reports:#}");
}

#[test]
fn senders_outside_the_allow_list_are_refused() {
    let gw = TestGateway::with(Options {
        hl7_extra: "allowed_senders = [\"OTHER_RIS^RYY\"]".into(),
        ..Options::default()
    });
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[fixture(
            "oru-accession.hl7",
            &subs("AL-1", "", "ACC-AL", "P", "F"),
        )],
    );
    assert_eq!(acks[0].code, "AR");
    assert!(acks[0].text.contains("not allowed"), "{:?}", acks[0]);
    assert!(
        gw.cli_json(&["reports", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_verified_sr_links_to_its_study_and_a_dose_sr_never_does() {
    let gw = TestGateway::start();
    let uid = |n: u32| format!("{ROOT}.4.{n}");
    for n in 1..=5 {
        send_study(&gw, &uid(n), &format!("ACC-SR{n}"), PATIENT);
    }
    // A complete, verified Basic Text SR in the study itself.
    storescu(
        &gw,
        &make_sr(&gw, &["--kind", "basic-text", "--study-uid", &uid(1)]),
    );
    // A dose SR, complete and verified: never a report.
    storescu(
        &gw,
        &make_sr(&gw, &["--kind", "dose", "--study-uid", &uid(2)]),
    );
    // An unverified comprehensive SR: kept as preliminary.
    storescu(
        &gw,
        &make_sr(
            &gw,
            &[
                "--kind",
                "comprehensive",
                "--study-uid",
                &uid(3),
                "--verification",
                "UNVERIFIED",
            ],
        ),
    );
    // An SR in a study of its own that names the imaging study as evidence.
    storescu(
        &gw,
        &make_sr(
            &gw,
            &[
                "--kind",
                "enhanced",
                "--study-uid",
                &uid(90),
                "--ref-study-uid",
                &uid(4),
                "--text",
                "Suspected cancer in the left lower lobe.",
            ],
        ),
    );
    // An encapsulated PDF report counts as final by default.
    storescu(
        &gw,
        &make_sr(&gw, &["--kind", "pdf", "--study-uid", &uid(5)]),
    );

    let s = study(&gw, &uid(1));
    assert_eq!(s["state"], "reported", "{s:#}");
    assert_eq!(s["reports"][0]["origin"], "dicom_sr");
    assert_eq!(link_rules(&s), ["study_uid"]);
    // Verification DateTime 20261120143000 in London.
    assert_eq!(s["reported_at"], "2026-11-20T14:30:00Z");

    let s = study(&gw, &uid(2));
    assert_eq!(s["state"], "unreported");
    assert!(s["reports"].as_array().unwrap().is_empty(), "{s:#}");

    let s = study(&gw, &uid(3));
    assert_eq!(
        (s["state"].as_str(), s["report_status"].as_str()),
        (Some("unreported"), Some("preliminary"))
    );

    let s = study(&gw, &uid(4));
    assert_eq!(s["state"], "reported", "{s:#}");
    assert_eq!(s["reports"][0]["alert_category"], "suspected_cancer");

    let s = study(&gw, &uid(5));
    assert_eq!(s["state"], "reported", "{s:#}");
}

#[test]
fn reports_entered_and_imported_by_hand_link_like_any_other() {
    let gw = TestGateway::start();
    let uid = format!("{ROOT}.5.1");
    send_study(&gw, &uid, "ACC-M1", PATIENT);
    let out = gw.cli(&[
        "report",
        "link",
        "--accession",
        "ACC-M1",
        "--status",
        "final",
        "--author",
        "Dr Lewis",
        "--time",
        "2026-11-21 09:15",
        "--by",
        "alice",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("linked to"), "{}", show(&out));
    let s = study(&gw, &uid);
    assert_eq!(s["state"], "reported");
    assert_eq!(s["reported_at"], "2026-11-21T09:15:00Z");
    assert_eq!(s["reports"][0]["recorded_by"], "alice");
    assert_eq!(s["reports"][0]["origin"], "manual");
    let audit = gw.cli_json(&["study", &uid, "--json"])["audit"].clone();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["actor"] == "alice")
    );

    // A bad key is a usage error; nothing is recorded.
    let out = gw.cli(&[
        "report",
        "link",
        "--study-uid",
        "1.02.3",
        "--status",
        "final",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    let other = format!("{ROOT}.5.2");
    send_study(&gw, &other, "ACC-M2", PATIENT);
    let csv = gw.dir.path().join("history.csv");
    std::fs::write(
        &csv,
        format!(
            "accession,study_uid,status,time,author\n\
             ACC-M2,,final,2026-11-19T10:00:00Z,Dr Shah\n\
             ,,final,,\n\
             ACC-M9,,sideways,,\n\
             ,{other},corrected,2026-11-19 12:00,Dr Shah\n\
             ACC-FUTURE-STUDY,,preliminary,,\n"
        ),
    )
    .unwrap();
    let out = gw.cli(&["report", "import", csv.to_str().unwrap(), "--by", "bob"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("line 3:") && text.contains("line 4:"),
        "{text}"
    );
    assert!(text.contains("imported 3 reports"), "{text}");
    let s = study(&gw, &other);
    assert_eq!(s["state"], "reported");
    assert_eq!(s["reported_at"], "2026-11-19T10:00:00Z");
    let unmatched = gw.cli_json(&["reports", "--unmatched", "--json"]);
    assert_eq!(unmatched.as_array().unwrap().len(), 1);
    assert_eq!(unmatched[0]["accession_number"], "ACC-FUTURE-STUDY");
}

#[test]
fn a_message_acknowledged_survives_kill_9() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hl7_port = free_port();
    let config = write_process_config(
        dir.path(),
        port,
        &Options {
            hl7_port: Some(hl7_port),
            ..Options::default()
        },
    );
    let mut gw = GatewayProcess::start(&config, port, &[]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", hl7_port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let id = format!("K9-{i}");
        let acc = format!("ACC-K9-{i}");
        let mut framed = vec![0x0B];
        framed.extend(fixture("oru-accession.hl7", &subs(&id, "", &acc, "P", "F")));
        framed.extend([0x1C, 0x0D]);
        stream.write_all(&framed).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.ends_with(&[0x1C, 0x0D]) {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the ACK");
            buf.extend_from_slice(&chunk[..n]);
        }
        let ack = &parse_acks(&buf)[0];
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AA", id.as_str())
        );
        acked.push(acc);
    }
    // Straight after the last ACK: no chance for a lazy write to finish.
    gw.kill9();

    let _gw = GatewayProcess::start(&config, port, &[]);
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["reports", "--json", "--limit", "1000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    for acc in &acked {
        assert!(
            reports
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["accession_number"] == acc.as_str()),
            "acknowledged report {acc} is missing after kill -9"
        );
    }
}

#[test]
fn a_critical_alert_not_acknowledged_in_time_raises_a_failsafe_alarm() {
    let gw = TestGateway::with(Options {
        tail: "[watchdog]\ncalendar = \"\"\n[watchdog.failsafe]\ncritical = \"2s\"\n".into(),
        ..Options::default()
    });
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[
            fixture(
                "oru-critical-flag.hl7",
                &subs("FS1", "", "ACC-FS1", "P1", "F1"),
            ),
            fixture(
                "oru-critical-flag.hl7",
                &subs("FS2", "", "ACC-FS2", "P2", "F2"),
            ),
        ],
    );
    assert!(acks.iter().all(|a| a.code == "AA"), "{acks:?}");
    let reports = gw.cli_json(&["reports", "--json"]);
    let id_of = |acc: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["accession_number"] == acc)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
            .to_string()
    };
    // The referrer's side acknowledges the first alert in time.
    let out = gw.cli(&[
        "report",
        "acknowledge",
        &id_of("ACC-FS1"),
        "--by",
        "dr.osei",
        "--note",
        "patient recalled",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for("the fail-safe alarm", Duration::from_secs(15), || {
        gw.cli_json(&["alarms", "--open", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "failsafe_unacknowledged")
    });
    std::thread::sleep(Duration::from_secs(1));
    let alarms = gw.cli_json(&["alarms", "--json"]);
    let failsafe: Vec<&Value> = alarms
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "failsafe_unacknowledged")
        .collect();
    assert_eq!(failsafe.len(), 1, "{alarms:#}");
    assert_eq!(failsafe[0]["report_id"].to_string(), id_of("ACC-FS2"));
    let acked = gw.cli_json(&["reports", "--json"]);
    let first = acked
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["accession_number"] == "ACC-FS1")
        .unwrap();
    assert_eq!(first["alert_acknowledged_by"], "dr.osei");
}

#[test]
fn a_report_that_links_to_nothing_alarms_until_its_study_arrives() {
    let gw = TestGateway::with(Options {
        tail: "[watchdog]\ncalendar = \"\"\nunmatched_report_after = \"1s\"\n".into(),
        ..Options::default()
    });
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[fixture(
            "oru-accession.hl7",
            &subs("UM1", "", "ACC-UM1", "P", "F"),
        )],
    );
    assert_eq!(acks[0].code, "AA");
    let unmatched_alarm = |state: &str| {
        gw.cli_json(&["alarms", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "unmatched_report" && a["state"] == state)
    };
    wait_for(
        "the unmatched-report alarm",
        Duration::from_secs(15),
        || unmatched_alarm("open"),
    );
    send_study(&gw, &format!("{ROOT}.6.1"), "ACC-UM1", PATIENT);
    wait_for("the alarm to resolve", Duration::from_secs(15), || {
        unmatched_alarm("resolved")
    });
}

/// `message` with its MSH-7 (date/time of message) replaced by `time`.
fn with_message_time(message: &[u8], time: &str) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).expect("ASCII fixture");
    let (msh, rest) = text.split_once('\r').expect("segments");
    let mut fields: Vec<&str> = msh.split('|').collect();
    // fields[0] is "MSH" and fields[1] MSH-2: MSH-n is fields[n - 1].
    fields[6] = time;
    format!("{}\r{rest}", fields.join("|")).into_bytes()
}

#[test]
fn an_hl7_message_from_a_clock_ahead_of_ours_raises_clock_skew() {
    // The default threshold, clock_skew_after = "5m".
    let gw = TestGateway::start();
    let uid = format!("{ROOT}.90.1");
    // MSH-7 two hours from now, without an offset: read in the site's zone.
    let ahead = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2))
        .in_tz("Europe/London")
        .unwrap()
        .strftime("%Y%m%d%H%M%S")
        .to_string();
    let message = with_message_time(
        &fixture(
            "oru-accession.hl7",
            &subs("SKEW-1", &uid, "ACC-SKEW-1", "PL-SKEW-1", "FI-SKEW-1"),
        ),
        &ahead,
    );
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &[message]);
    assert_eq!(acks[0].code, "AA", "{:?}", acks[0]);
    wait_for("clock_skew for CRIS^RXX", Duration::from_secs(20), || {
        gw.alarm("clock_skew", "clock:CRIS^RXX").is_some()
    });
    let alarm = gw.alarm("clock_skew", "clock:CRIS^RXX").unwrap();
    assert_eq!(alarm.state, "open");
    // MSH-7 is to the second, and the message arrives a moment after `now`.
    for part in ["HL7 sender CRIS^RXX", "1 h 59 min ahead of ours", "MSH-7"] {
        assert!(
            alarm.detail.contains(part),
            "{part:?} not in {:?}",
            alarm.detail
        );
    }
    let alarms = gw.cli_json(&["alarms", "--open", "--json"]);
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "clock_skew" && a["id"] == alarm.id),
        "{alarms}"
    );

    // The next message, stamped now with an explicit offset of +03:00 (never
    // the site's: read as London time it would be two or three hours ahead
    // and keep the alarm), is within the threshold: the alarm resolves.
    let now = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(3)))
        .strftime("%Y%m%d%H%M%S%z")
        .to_string();
    let message = with_message_time(
        &fixture(
            "oru-accession.hl7",
            &subs("SKEW-2", &uid, "ACC-SKEW-2", "PL-SKEW-2", "FI-SKEW-2"),
        ),
        &now,
    );
    let acks = mllp_send(gw.hl7_port, gw.dir.path(), &[message]);
    assert_eq!(acks[0].code, "AA", "{:?}", acks[0]);
    wait_for("clock_skew to resolve", Duration::from_secs(20), || {
        gw.alarm("clock_skew", "clock:CRIS^RXX")
            .is_some_and(|a| a.state == "resolved")
    });
}
