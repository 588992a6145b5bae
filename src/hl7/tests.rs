//! Tests of message parsing (and parse → ACK) on realistic messages.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::message::{Location, LocationError, parse_timestamp, unescape};
use super::*;

/// A segment from (field number, value) pairs; unlisted fields are empty.
fn seg(name: &str, values: &[(usize, &str)]) -> String {
    let last = values.iter().map(|&(n, _)| n).max().unwrap_or(0);
    let mut fields = vec![""; last];
    for &(n, v) in values {
        fields[n - 1] = v;
    }
    format!("{name}|{}", fields.join("|"))
}

fn msg(segments: &[String]) -> String {
    let mut s = segments.join("\r");
    s.push('\r');
    s
}

fn msh(kind: &str, control_id: &str, version: &str) -> String {
    format!(
        "MSH|^~\\&|RIS|RADIOLOGY|STUDYWATCH|TRUST|20240315143000||{kind}|{control_id}|P|{version}"
    )
}

fn utc() -> TimeZone {
    TimeZone::UTC
}

fn london() -> TimeZone {
    TimeZone::get("Europe/London").unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn ok(m: &str) -> Parsed {
    parse(m.as_bytes(), &Fields::default(), &london()).unwrap_or_else(|r| panic!("rejected: {r}"))
}

fn rejected(m: &str) -> Rejected {
    match parse(m.as_bytes(), &Fields::default(), &london()) {
        Ok(p) => panic!("taken: {p:?}"),
        Err(r) => r,
    }
}

/// IHE Scheduled Workflow style v2.3.1 ORU^R01: accession in OBR-18, Study
/// Instance UID in ZDS-1, NDL author in OBR-32 as subcomponents.
fn ihe_oru() -> String {
    msg(&[
        msh("ORU^R01", "MSG0001", "2.3.1"),
        "PID|||123456^^^RXX^MR~9434765919^^^NHS&2.16.840.1.113883.2.1.4.1&ISO^NH||SMITH^JOHN||19600101|M".into(),
        "PV1||O|XRAY^^^RXX".into(),
        "ORC|RE|PL123|FI456||CM".into(),
        seg(
            "OBR",
            &[
                (1, "1"),
                (2, "PL123"),
                (3, "FI456"),
                (4, "XCHES^XR Chest^L"),
                (7, "20240315120000"),
                (18, "ACC789"),
                (22, "20240315142500"),
                (24, "CR"),
                (25, "F"),
                (27, "^^^^^R"),
                (32, "R123&JONES&SARAH&&&DR"),
            ],
        ),
        "OBX|1|TX|XCHES&GDT^XR Chest||Heart size normal.~Lungs clear.||||||F".into(),
        "OBX|2|TX|XCHES&IMP||Impression: no acute \\T\\ chronic change.\\.br\\Follow up 6/52.||||||F".into(),
        "ZDS|1.2.826.0.1.3680043.10.1661.99.1^^Application^DICOM".into(),
    ])
}

#[test]
fn ihe_v231_oru_with_zds() {
    let p = ok(&ihe_oru());
    assert_eq!(p.kind, Kind::Report);
    assert_eq!(p.header.sending_application, "RIS");
    assert_eq!(p.header.sending_facility, "RADIOLOGY");
    assert_eq!(p.header.message_type, "ORU");
    assert_eq!(p.header.trigger_event, "R01");
    assert_eq!(p.header.message_structure, "");
    assert_eq!(p.header.control_id, "MSG0001");
    assert_eq!(p.header.processing_id, "P");
    assert_eq!(p.header.version, "2.3.1");
    // 14:30 on 15 March is GMT in London.
    assert_eq!(p.header.sent_at, Some(ts("2024-03-15T14:30:00Z")));
    assert_eq!(p.patient_class.as_deref(), Some("O"));
    assert_eq!(p.requests.len(), 1);
    let r = &p.requests[0];
    assert_eq!(
        r.study_uid.as_deref(),
        Some("1.2.826.0.1.3680043.10.1661.99.1")
    );
    assert_eq!(r.accession.as_deref(), Some("ACC789"));
    assert_eq!(r.accession_issuer, None, "OBR-18 is not an EI");
    assert_eq!(r.placer.as_deref(), Some("PL123"));
    assert_eq!(r.filler.as_deref(), Some("FI456"));
    assert_eq!(r.result_status, Some(ResultStatus::Final));
    assert_eq!(r.raw_result_status.as_deref(), Some("F"));
    assert_eq!(r.order_control.as_deref(), Some("RE"));
    assert_eq!(r.order_status.as_deref(), Some("CM"));
    assert_eq!(r.exam_time, Some(ts("2024-03-15T12:00:00Z")));
    assert_eq!(r.report_time, Some(ts("2024-03-15T14:25:00Z")));
    assert_eq!(r.author.as_deref(), Some("DR SARAH JONES (R123)"));
    assert_eq!(r.priority.as_deref(), Some("R"));
    assert_eq!(r.procedure.as_deref(), Some("XR Chest"));
    assert_eq!(
        r.text,
        "Heart size normal.\nLungs clear.\nImpression: no acute & chronic change.\nFollow up 6/52."
    );
    assert!(r.abnormal_flags.is_empty());
    assert!(!r.withdrawn);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn every_pid3_repeat_is_extracted() {
    let p = ok(&ihe_oru());
    assert_eq!(
        p.patient_ids,
        vec![
            PatientId {
                id: "123456".into(),
                assigning_authority: Some("RXX".into()),
                assigning_authority_raw: Some("RXX".into()),
                type_code: Some("MR".into()),
            },
            PatientId {
                id: "9434765919".into(),
                assigning_authority: Some("NHS".into()),
                assigning_authority_raw: Some("NHS&2.16.840.1.113883.2.1.4.1&ISO".into()),
                type_code: Some("NH".into()),
            },
        ]
    );
}

#[test]
fn v251_oru_with_ipc_and_ei_accession() {
    let m = msg(&[
        msh("ORU^R01^ORU_R01", "20240601-77", "2.5.1"),
        "PID|||123456^^^RXX^MR~9434765919^^^NHS^NH".into(),
        seg(
            "OBR",
            &[
                (1, "1"),
                (2, "PL9^HIS"),
                (3, "FI9^RIS"),
                (4, "^MR Lumbar spine"),
                (22, "20240601101500+0100"),
                (25, "P"),
                (32, "R9&WHO&AMY"),
            ],
        ),
        "OBX|1|FT|||Disc bulge at L4\\E\\5.||||||P".into(),
        "IPC|ACC9^RIS|RP9|1.2.840.113619.2.1.99 |SPS9|MR".into(),
    ]);
    let p = ok(&m);
    assert_eq!(p.header.message_structure, "ORU_R01");
    let r = &p.requests[0];
    assert_eq!(r.study_uid.as_deref(), Some("1.2.840.113619.2.1.99"));
    // OBR-18 is empty, so OBR-3 (an EI) gives the accession and its namespace.
    assert_eq!(r.accession.as_deref(), Some("FI9"));
    assert_eq!(r.accession_issuer.as_deref(), Some("RIS"));
    assert_eq!(r.placer.as_deref(), Some("PL9"));
    assert_eq!(r.result_status, Some(ResultStatus::Preliminary));
    assert_eq!(r.report_time, Some(ts("2024-06-01T09:15:00Z")));
    assert_eq!(r.procedure.as_deref(), Some("MR Lumbar spine"));
    assert_eq!(r.author.as_deref(), Some("AMY WHO (R9)"));
    assert_eq!(r.text, "Disc bulge at L4\\5.");

    let fields = Fields {
        accession: vec![Location::parse("IPC-1").unwrap()],
        ..Fields::default()
    };
    let p = parse(m.as_bytes(), &fields, &utc()).unwrap();
    assert_eq!(p.requests[0].accession.as_deref(), Some("ACC9"));
    assert_eq!(p.requests[0].accession_issuer.as_deref(), Some("RIS"));

    let fields = Fields {
        accession: vec![Location::parse("IPC-1").unwrap()],
        accession_issuer: vec![Location::parse("MSH-4").unwrap()],
        ..Fields::default()
    };
    let p = parse(m.as_bytes(), &fields, &utc()).unwrap();
    assert_eq!(p.requests[0].accession_issuer.as_deref(), Some("RADIOLOGY"));
}

#[test]
fn orm_o01_with_zds() {
    let m = msg(&[
        msh("ORM^O01", "ORD1", "2.3.1"),
        "PID|||555^^^RXX^MR".into(),
        "PV1||I".into(),
        "ORC|NW|PL1|FI1||SC|||||||||||||||".into(),
        seg(
            "OBR",
            &[
                (1, "1"),
                (2, "PL1"),
                (3, "FI1"),
                (4, "CTHEAD^CT Head"),
                (27, "^^^^^S"),
            ],
        ),
        "ZDS|1.2.3.4.5^^Application^DICOM".into(),
    ]);
    let p = ok(&m);
    assert_eq!(p.kind, Kind::Order);
    assert_eq!(p.patient_class.as_deref(), Some("I"));
    let r = &p.requests[0];
    assert_eq!(r.order_control.as_deref(), Some("NW"));
    assert_eq!(r.order_status.as_deref(), Some("SC"));
    assert_eq!(r.placer.as_deref(), Some("PL1"));
    assert_eq!(r.filler.as_deref(), Some("FI1"));
    assert_eq!(r.accession.as_deref(), Some("FI1"));
    assert_eq!(r.study_uid.as_deref(), Some("1.2.3.4.5"));
    assert_eq!(r.priority.as_deref(), Some("S"));
    assert_eq!(r.result_status, None, "an order needs no result status");
}

#[test]
fn omi_o23_with_tq1_priority_and_ipc() {
    let m = msg(&[
        msh("OMI^O23^OMI_O23", "OMI1", "2.5.1"),
        "PID|||777^^^RXX^MR".into(),
        "ORC|NW|PL2|FI2||SC".into(),
        seg("TQ1", &[(1, "1"), (9, "A^ASAP^HL70485")]),
        seg(
            "OBR",
            &[(1, "1"), (2, "PL2"), (3, "FI2"), (4, "MRKNE^MR Knee")],
        ),
        "IPC|ACC2^RIS|RP2|1.2.3.9|SPS2|MR".into(),
        "ORC|NW|PL3|FI3||SC".into(),
        seg("TQ1", &[(1, "1"), (9, "R")]),
        seg(
            "OBR",
            &[(1, "2"), (2, "PL3"), (3, "FI3"), (4, "MRHIP^MR Hip")],
        ),
        "IPC|ACC3^RIS|RP3|1.2.3.10|SPS3|MR".into(),
    ]);
    let p = ok(&m);
    assert_eq!(p.kind, Kind::Order);
    assert_eq!(p.requests.len(), 2);
    let (a, b) = (&p.requests[0], &p.requests[1]);
    assert_eq!(a.priority.as_deref(), Some("A"));
    assert_eq!(a.study_uid.as_deref(), Some("1.2.3.9"));
    assert_eq!(a.procedure.as_deref(), Some("MR Knee"));
    assert_eq!(b.priority.as_deref(), Some("R"));
    assert_eq!(b.study_uid.as_deref(), Some("1.2.3.10"));
    assert_eq!(b.placer.as_deref(), Some("PL3"));
}

#[test]
fn orc_only_cancel_is_an_order_request() {
    let m = msg(&[
        msh("ORM^O01", "C1", "2.4"),
        "PID|||1".into(),
        "ORC|CA|PL5|FI5||CA".into(),
    ]);
    let p = ok(&m);
    assert_eq!(p.requests.len(), 1);
    assert_eq!(p.requests[0].order_control.as_deref(), Some("CA"));
    assert_eq!(p.requests[0].placer.as_deref(), Some("PL5"));
}

#[test]
fn withdrawn_and_abnormal_flags() {
    let m = msg(&[
        msh("ORU^R01", "W1", "2.4"),
        "PID|||1".into(),
        seg("OBR", &[(1, "1"), (3, "F1"), (18, "A1"), (25, "C")]),
        "OBX|1|TX|||Large pneumothorax.||hh|HH~A|||F".into(),
        "OBX|2|TX|||Report posted to wrong patient.|||A|||W".into(),
        "OBX|3|CE|||RAD123^Critical finding^L||||||F".into(),
    ]);
    let p = ok(&m);
    let r = &p.requests[0];
    assert_eq!(r.result_status, Some(ResultStatus::Corrected));
    assert!(r.withdrawn);
    assert_eq!(r.abnormal_flags, vec!["HH".to_string(), "A".to_string()]);
    assert_eq!(
        r.text,
        "Large pneumothorax.\nReport posted to wrong patient.\nCritical finding"
    );
    assert_eq!(
        AlertRules::default().classify(&r.abnormal_flags, &r.text),
        Some(Category::Critical)
    );
}

#[test]
fn obx_belong_to_the_obr_before_them_and_leading_zds_to_the_first() {
    let m = msg(&[
        msh("ORU^R01", "M2", "2.3.1"),
        "PID|||1".into(),
        "ZDS|1.2.3.1^^Application^DICOM".into(),
        seg("OBR", &[(1, "1"), (18, "A1"), (25, "F")]),
        "OBX|1|TX|||first report||||||F".into(),
        seg("OBR", &[(1, "2"), (18, "A2"), (25, "F")]),
        "ZDS|1.2.3.2^^Application^DICOM".into(),
        "OBX|1|TX|||second report|||LL|||F".into(),
        seg("OBR", &[(1, "3"), (18, "A3"), (25, "P")]),
    ]);
    let p = ok(&m);
    let r: Vec<_> = p.requests.iter().collect();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].study_uid.as_deref(), Some("1.2.3.1"));
    assert_eq!(r[0].text, "first report");
    assert!(r[0].abnormal_flags.is_empty());
    assert_eq!(
        r[1].study_uid.as_deref(),
        Some("1.2.3.2"),
        "ZDS after OBR, before OBX"
    );
    assert_eq!(r[1].text, "second report");
    assert_eq!(r[1].abnormal_flags, vec!["LL".to_string()]);
    assert_eq!(
        r[2].study_uid, None,
        "a leading ZDS applies to the first OBR only"
    );
    assert_eq!(r[2].accession.as_deref(), Some("A3"));
}

#[test]
fn lf_and_crlf_segment_separators_and_broken_text_lines() {
    let cr = ihe_oru();
    let want = ok(&cr);
    for sep in ["\n", "\r\n"] {
        let m = cr.replace('\r', sep);
        let p = ok(&m);
        assert_eq!(p.requests, want.requests, "separator {sep:?}");
        assert_eq!(p.patient_ids, want.patient_ids);
    }
    // A bare LF inside report text (segments ended by CR) is kept as a line break.
    let m = msg(&[
        msh("ORU^R01", "M3", "2.4"),
        seg("OBR", &[(1, "1"), (18, "A1"), (25, "F")]),
        "OBX|1|TX|||Line one\nline two.\n\nLine four|||N|||F".into(),
    ]);
    let p = ok(&m);
    assert_eq!(p.requests[0].text, "Line one\nline two.\nLine four");
    assert_eq!(p.requests[0].abnormal_flags, vec!["N".to_string()]);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
}

#[test]
fn latin1_text_is_decoded_and_escapes_after_non_ascii_are_safe() {
    // Regression: hl7-parser's own unescaping panics on this (it slices by
    // character index); ours must not.
    let mut m = msg(&[
        msh("ORU^R01", "L1", "2.3"),
        seg(
            "OBR",
            &[
                (1, "1"),
                (18, "A1"),
                (25, "F"),
                (32, "R1^M\u{00dc}LLER^J\u{00d6}RG"),
            ],
        ),
        "OBX|1|TX|||\u{00e9}\u{00e9}\\F\\ caf\u{00e9} \u{00c5}ngstr\u{00f6}m\\.br\\fin||||||F"
            .into(),
    ])
    .into_bytes();
    // Re-encode as ISO-8859-1: every char above is < U+0100.
    m = String::from_utf8(m)
        .unwrap()
        .chars()
        .map(|c| c as u32 as u8)
        .collect();
    assert!(std::str::from_utf8(&m).is_err());
    let p = parse(&m, &Fields::default(), &utc()).unwrap();
    let r = &p.requests[0];
    assert_eq!(r.text, "\u{e9}\u{e9}| caf\u{e9} \u{c5}ngstr\u{f6}m\nfin");
    assert_eq!(r.author.as_deref(), Some("J\u{d6}RG M\u{dc}LLER (R1)"));
}

#[test]
fn windows_1252_punctuation_in_latin1_text() {
    let mut m = msg(&[
        msh("ORU^R01", "L2", "2.3"),
        seg("OBR", &[(1, "1"), (18, "A1"), (25, "F")]),
        "OBX|1|TX|||patient@s \u{e9}ch@ \u{96} ok||||||F".into(),
    ])
    .into_bytes();
    // '@' stands for 0x92 (Windows-1252 right quote); é and U+0096 become the single bytes 0xE9 and 0x96.
    m = String::from_utf8(m)
        .unwrap()
        .chars()
        .map(|c| match c {
            '@' => 0x92,
            c => c as u32 as u8,
        })
        .collect();
    let p = parse(&m, &Fields::default(), &utc()).unwrap();
    assert_eq!(
        p.requests[0].text,
        "patient\u{2019}s \u{e9}ch\u{2019} \u{2013} ok"
    );
}

#[test]
fn utf8_text_is_kept() {
    let m = msg(&[
        msh("ORU^R01", "U1", "2.5"),
        seg("OBR", &[(1, "1"), (18, "A1"), (25, "F")]),
        "OBX|1|ST|||Zoë’s scan \\S\\ ok||||||F".into(),
    ]);
    assert_eq!(ok(&m).requests[0].text, "Zoë’s scan ^ ok");
}

#[test]
fn unescape_rules() {
    let seps = hl7_parser::message::Separators::default();
    let u = |s: &str| unescape(s, &seps);
    assert_eq!(u(r"a\F\b\S\c\T\d\R\e\E\f"), "a|b^c&d~e\\f");
    assert_eq!(
        u(r"one\.br\two\.sp\three\X0D0A\four"),
        "one\ntwo\nthree\nfour"
    );
    assert_eq!(u(r"\H\bold\N\ \.in+4\x"), "bold x");
    assert_eq!(u(r"\X4869\ \XC3A9\ \XE9\"), "Hi \u{e9} \u{e9}");
    assert_eq!(
        u(r"keep \Zcustom\ and \X4\ and \Cxx\"),
        r"keep \Zcustom\ and \X4\ and \Cxx\"
    );
    assert_eq!(u(r"lone \ escape"), r"lone \ escape");
    assert_eq!(u(r"ends with \"), r"ends with \");
}

#[test]
fn timestamps() {
    let l = london();
    let p = |s: &str| parse_timestamp(s, &l);
    assert_eq!(p(""), Ok(None));
    assert_eq!(p("\"\""), Ok(None));
    // With an offset: that instant, whatever the zone.
    assert_eq!(
        p("20240701120000+0200"),
        Ok(Some(ts("2024-07-01T10:00:00Z")))
    );
    assert_eq!(
        p("20240101120000-0330"),
        Ok(Some(ts("2024-01-01T15:30:00Z")))
    );
    assert_eq!(
        p("20240101120000-0030"),
        Ok(Some(ts("2024-01-01T12:30:00Z")))
    );
    // Without: local time in the zone, BST in summer.
    assert_eq!(p("20240701120000"), Ok(Some(ts("2024-07-01T11:00:00Z"))));
    assert_eq!(p("202401011200"), Ok(Some(ts("2024-01-01T12:00:00Z"))));
    // Date only: local midnight.
    assert_eq!(p("20240701"), Ok(Some(ts("2024-06-30T23:00:00Z"))));
    // Fractions, up to 4 digits by the standard, more tolerated.
    assert_eq!(
        p("20240101120000.5"),
        Ok(Some(ts("2024-01-01T12:00:00.5Z")))
    );
    assert_eq!(
        p("20240101120000.123456+0000"),
        Ok(Some(ts("2024-01-01T12:00:00.1234Z")))
    );
    // Skipped hour (clocks go forward at 01:00 GMT): compatible moves forward.
    assert_eq!(p("20240331013000"), Ok(Some(ts("2024-03-31T01:30:00Z"))));
    // Repeated hour (clocks go back at 02:00 BST): compatible takes the earlier.
    assert_eq!(p("20241027013000"), Ok(Some(ts("2024-10-27T00:30:00Z"))));
    for bad in [
        "2024",
        "202401",
        "20241301",
        "20240230",
        "20240101250000",
        "20240101126000",
        "2024-01-01",
        "20240101120000+05",
        "20240101120000+0575",
        "20240101120000+9900",
        "yesterday",
        "20240101120000 extra",
    ] {
        assert!(p(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn malformed_report_time_is_a_warning_not_a_rejection() {
    let m = msg(&[
        msh("ORU^R01", "T1", "2.5"),
        seg(
            "OBR",
            &[
                (1, "1"),
                (7, "20241399"),
                (18, "A1"),
                (22, "2024-03-01 10:00"),
                (25, "F"),
            ],
        ),
    ]);
    let p = ok(&m);
    assert_eq!(p.requests[0].report_time, None);
    assert_eq!(p.requests[0].exam_time, None);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("OBR-22 (report time) ignored")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn result_status_mapping() {
    use ResultStatus::*;
    let cases = [
        ("P", Some(Preliminary)),
        ("R", Some(Preliminary)),
        ("F", Some(Final)),
        ("f", Some(Final)),
        ("C", Some(Corrected)),
        ("X", Some(Cancelled)),
        ("I", Some(Other('I'))),
        ("S", Some(Other('S'))),
        ("FINAL", None),
        ("1", None),
        ("", None),
    ];
    for (raw, want) in cases {
        assert_eq!(ResultStatus::parse(raw), want, "{raw}");
    }
    assert_eq!(Final.as_str(), "final");
    assert_eq!(Cancelled.as_str(), "cancelled");
    assert!(Corrected.is_formal() && !Preliminary.is_formal());
}

#[test]
fn rejections_are_ar_for_what_we_do_not_take() {
    let base = ihe_oru();
    let cases = [
        (
            base.replace("ORU^R01", "ADT^A01"),
            "message type ADT^A01 is not taken: only ORU^R01, ORM^O01 and OMI^O23",
        ),
        (
            base.replace("ORU^R01", "ORU^R30"),
            "message type ORU^R30 is not taken",
        ),
        (
            base.replace("|2.3.1", "|3.0"),
            "HL7 version 3.0 is not taken: only 2.1 to 2.8.x",
        ),
        (
            base.replace("|2.3.1", "|2.9"),
            "HL7 version 2.9 is not taken",
        ),
        (base.replace("|2.3.1", "|"), "MSH-12 (version ID) is empty"),
        (
            base.replace("|P|2.3.1", "|X|2.3.1"),
            "processing ID X is not taken: only P, D and T",
        ),
        (
            base.replace("MSG0001", ""),
            "MSH-10 (message control ID) is empty",
        ),
    ];
    for (m, want) in cases {
        let r = rejected(&m);
        assert_eq!(r.code, AckCode::AR, "{want}");
        assert!(
            r.reason.starts_with(want),
            "{:?} should start with {want:?}",
            r.reason
        );
        assert!(r.reason.chars().count() <= 80);
        let h = r.header.expect("MSH was readable");
        assert_eq!(h.sending_application, "RIS");
    }
    for (v, taken) in [
        ("2.1", true),
        ("2.5.1", true),
        ("2.8.2", true),
        ("2.0", false),
        ("2.10", false),
    ] {
        let r = parse(
            base.replace("|2.3.1", &format!("|{v}")).as_bytes(),
            &Fields::default(),
            &utc(),
        );
        assert_eq!(r.is_ok(), taken, "version {v}");
    }
    for pid in ["D", "T"] {
        assert!(
            parse(
                base.replace("|P|2.3.1", &format!("|{pid}|2.3.1"))
                    .as_bytes(),
                &Fields::default(),
                &utc()
            )
            .is_ok()
        );
    }
}

#[test]
fn unreadable_messages_are_ar_without_header() {
    for m in [
        &b""[..],
        b"\x00\x01\x02binary",
        b"PID|||123",
        b"MSH",
        b"MSH|^~|RIS",
        b"MSH|^^\\&|RIS",
        b"MSHA^~\\&|RIS",
        b"MSH|^~\\&\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11\x12",
    ] {
        let r = parse(m, &Fields::default(), &utc()).unwrap_err();
        assert_eq!(r.code, AckCode::AR, "{m:?}");
        assert!(r.header.is_none(), "{m:?}");
    }
}

#[test]
fn rejections_are_ae_for_missing_content() {
    let no_obr = msg(&[msh("ORU^R01", "E1", "2.4"), "PID|||1".into()]);
    let r = rejected(&no_obr);
    assert_eq!(
        (r.code, r.reason.as_str()),
        (AckCode::AE, "no OBR segment: a report needs one")
    );

    let no_status = msg(&[
        msh("ORU^R01", "E2", "2.4"),
        seg("OBR", &[(1, "1"), (18, "A1")]),
    ]);
    let r = rejected(&no_status);
    assert_eq!(
        (r.code, r.reason.as_str()),
        (AckCode::AE, "OBR-25 (result status) is empty")
    );

    let bad_status = msg(&[
        msh("ORU^R01", "E3", "2.4"),
        seg("OBR", &[(1, "1"), (18, "A1"), (25, "FINAL")]),
    ]);
    let r = rejected(&bad_status);
    assert_eq!(r.code, AckCode::AE);
    assert!(
        r.reason.starts_with("OBR-25 (result status) \"FINAL\""),
        "{}",
        r.reason
    );

    let no_key = msg(&[
        msh("ORU^R01", "E4", "2.4"),
        seg("OBR", &[(1, "1"), (25, "F")]),
    ]);
    let r = rejected(&no_key);
    assert_eq!(
        (r.code, r.reason.as_str()),
        (
            AckCode::AE,
            "no link key: study UID, accession, placer and filler are all empty"
        )
    );

    let second_bad = msg(&[
        msh("ORU^R01", "E5", "2.4"),
        seg("OBR", &[(1, "1"), (18, "A1"), (25, "F")]),
        seg("OBR", &[(1, "2"), (18, "A2")]),
    ]);
    let r = rejected(&second_bad);
    assert_eq!(r.reason, "OBR 2: OBR-25 (result status) is empty");
    assert_eq!(r.header.unwrap().control_id, "E5");

    let empty_order = msg(&[msh("OMI^O23", "E6", "2.5.1"), "PID|||1".into()]);
    assert_eq!(rejected(&empty_order).code, AckCode::AE);

    // HL7's explicit null "" counts as empty.
    let null_status = msg(&[
        msh("ORU^R01", "E7", "2.4"),
        seg("OBR", &[(1, "1"), (18, "A1"), (25, "\"\"")]),
    ]);
    assert_eq!(
        rejected(&null_status).reason,
        "OBR-25 (result status) is empty"
    );
}

#[test]
fn v27_truncation_character_does_not_shift_msh() {
    let m = msg(&[
        "MSH|^~\\&#|RIS|RAD|SW|TRUST|20240315143000+0000||ORU^R01^ORU_R01|V27|T|2.7.1".into(),
        seg("OBR", &[(1, "1"), (18, "A1"), (25, "F")]),
    ]);
    let p = ok(&m);
    assert_eq!(p.header.encoding_characters, "^~\\&#");
    assert_eq!(p.header.sending_application, "RIS");
    assert_eq!(p.header.control_id, "V27");
    assert_eq!(p.header.processing_id, "T");
    assert_eq!(p.header.version, "2.7.1");
    assert_eq!(p.header.sent_at, Some(ts("2024-03-15T14:30:00Z")));
}

#[test]
fn leading_whitespace_and_bom_are_skipped() {
    let m = format!("\u{feff}\r\n  {}", ihe_oru());
    assert!(parse(m.as_bytes(), &Fields::default(), &utc()).is_ok());
}

#[test]
fn author_renderings() {
    let author = |obr32: &str| {
        let m = msg(&[
            msh("ORU^R01", "A", "2.2"),
            seg("OBR", &[(1, "1"), (18, "A1"), (25, "F"), (32, obr32)]),
        ]);
        ok(&m).requests[0].author.clone()
    };
    assert_eq!(
        author("1234^SMITH^JOHN^A^JR^DR^MD").as_deref(),
        Some("DR JOHN A SMITH JR MD (1234)")
    );
    assert_eq!(author("^SMITH^JOHN").as_deref(), Some("JOHN SMITH"));
    assert_eq!(author("R77").as_deref(), Some("R77"));
    assert_eq!(author("Dr Jane Doe").as_deref(), Some("Dr Jane Doe"));
    assert_eq!(author(""), None);
}

#[test]
fn location_parse_and_display() {
    let l = Location::parse("OBR-27.6").unwrap();
    assert_eq!(
        (l.segment.as_str(), l.field, l.component, l.subcomponent),
        ("OBR", 27, Some(6), None)
    );
    assert_eq!(l.to_string(), "OBR-27.6");
    assert_eq!(
        Location::parse("PID-3.4.1").unwrap().to_string(),
        "PID-3.4.1"
    );
    assert_eq!(Location::parse("OBR.18").unwrap().to_string(), "OBR-18");
    assert_eq!(Location::parse(" zds.1 ").unwrap().to_string(), "ZDS-1");
    assert_eq!(Location::parse(""), Err(LocationError::Empty));
    for bad in [
        "OB-18",
        "OBR",
        "OBR-",
        "OBR-0",
        "OBR-x",
        "OBR-1.2.3.4",
        "OBR18",
        "OBR-1..2",
        "OBR--1",
        "OBR-+1",
        "ÄBC-1",
    ] {
        assert!(Location::parse(bad).is_err(), "{bad}");
    }
    let e = Location::parse("OBR-0").unwrap_err().to_string();
    assert!(e.contains("field \"0\""), "{e}");
    let defaults = Fields::default();
    assert_eq!(
        defaults
            .priority
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["OBR-27.6", "TQ1-9", "ORC-7.6"]
    );
}

#[test]
fn ack_for_a_parsed_message_and_for_a_rejection() {
    let now = ts("2024-03-15T14:30:05Z");
    let p = ok(&ihe_oru());
    let a = ack(
        Some(&p.header),
        AckCode::AA,
        "",
        "SW",
        "H",
        "ACK1",
        now,
        &london(),
    );
    assert!(a.contains("\rMSA|AA|MSG0001\r"), "{a:?}");

    let r = rejected(&ihe_oru().replace("|F||^^^^^R", "|||^^^^^R"));
    let a = ack(
        r.header.as_ref(),
        r.code,
        &r.reason,
        "SW",
        "H",
        "ACK2",
        now,
        &london(),
    );
    assert!(
        a.ends_with("\rMSA|AE|MSG0001|OBR-25 (result status) is empty\r"),
        "{a:?}"
    );
}

/// Byte-level edits that exercise the parser's edges.
fn mutation() -> impl Strategy<Value = (usize, u8, u8)> {
    let interesting = prop_oneof![
        Just(b'|'),
        Just(b'^'),
        Just(b'~'),
        Just(b'\\'),
        Just(b'&'),
        Just(b'#'),
        Just(b'\r'),
        Just(b'\n'),
        Just(b'.'),
        Just(b'+'),
        Just(b'-'),
        Just(b'"'),
        Just(0u8),
        Just(0xC3),
        Just(0xE9),
        Just(0xFF),
        b'0'..=b'9',
        b'A'..=b'Z',
    ];
    (any::<usize>(), 0u8..3, interesting)
}

fn apply(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, b) in edits {
        let at = at % (bytes.len() + 1);
        match op {
            0 => bytes.insert(at, b),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ if at < bytes.len() => bytes[at] = b,
            _ => bytes.push(b),
        }
    }
    bytes
}

/// Parse, then ACK whatever came out; the ACK must itself be HL7.
fn parse_and_ack(bytes: &[u8]) -> Result<(), TestCaseError> {
    let tz = utc();
    let result = parse(bytes, &Fields::default(), &tz);
    let (header, code, reason) = match &result {
        Ok(p) => {
            for r in &p.requests {
                let _ = AlertRules::default().classify(&r.abnormal_flags, &r.text);
            }
            (Some(&p.header), AckCode::AA, "")
        }
        Err(r) => {
            prop_assert!(r.reason.chars().count() <= 80);
            prop_assert!(r.code != AckCode::AA);
            (r.header.as_ref(), r.code, r.reason.as_str())
        }
    };
    let a = ack(
        header,
        code,
        reason,
        "SW",
        "H",
        "1",
        ts("2024-01-01T00:00:00Z"),
        &tz,
    );
    prop_assert!(a.starts_with("MSH"));
    prop_assert_eq!(a.matches('\r').count(), 2, "exactly two segments: {:?}", a);
    let m = hl7_parser::Message::parse(&a);
    prop_assert!(m.is_ok(), "ACK does not parse: {:?}", a);
    // Our own parser reads the ACK's MSH back (and refuses the ACK type).
    let back = parse(a.as_bytes(), &Fields::default(), &tz);
    let back = back.err().and_then(|r| r.header);
    prop_assert!(
        back.is_some_and(|h| h.control_id == "1"),
        "ACK MSH unreadable: {:?}",
        a
    );
    Ok(())
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse_and_ack(&bytes)?;
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text_after_msh(tail in ".{0,300}") {
        parse_and_ack(format!("MSH|^~\\&|{tail}").as_bytes())?;
    }

    #[test]
    fn parse_never_panics_on_mutated_messages(
        which in 0usize..3,
        edits in proptest::collection::vec(mutation(), 1..12),
    ) {
        let base = match which {
            0 => ihe_oru(),
            1 => msg(&[
                msh("OMI^O23", "OMI1", "2.5.1"),
                "ORC|NW|PL2|FI2||SC".into(),
                seg("TQ1", &[(1, "1"), (9, "S")]),
                seg("OBR", &[(1, "1"), (2, "PL2"), (3, "FI2^RIS"), (22, "20240101120000.1234-0500")]),
                "IPC|ACC2^RIS|RP2|1.2.3.9|SPS2|MR".into(),
            ]),
            _ => msg(&[
                "MSH|^~\\&#|RIS|RAD|SW|TRUST|20240315143000||ORU^R01^ORU_R01|V27|T|2.7.1".into(),
                seg("OBR", &[(1, "1"), (18, "A1"), (25, "F"), (32, "R1&A&B")]),
                "OBX|1|FT|||x\\.br\\y\\X41\\\\H\\z||HH~A|||W".into(),
            ]),
        };
        parse_and_ack(&apply(base.into_bytes(), &edits))?;
    }
}
