//! The command line: exit codes, JSON shapes, and the fixity check.

use std::time::Duration;

use crate::harness::*;

#[test]
fn check_config_prints_the_effective_config_and_exits_78_on_errors() {
    let gw = TestGateway::start();
    let out = gw.cli(&["check-config"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ae_title = \"STUDYWATCH\""),
        "{}",
        show(&out)
    );

    let bad = gw.dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\n[dicom]\nae_title = \"A_TITLE_FAR_TOO_LONG_FOR_DICOM\"\nmax_associations = 0\n").unwrap();
    let out = std::process::Command::new(bin())
        .args(["--config", bad.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dicom.ae_title") && err.contains("dicom.max_associations"),
        "every problem at once: {err}"
    );

    // The shipped default is valid and its calendar file is there.
    let check = |file: &str| {
        std::process::Command::new(bin())
            .current_dir(repo())
            .args([
                "--config",
                repo().join(file).to_str().unwrap(),
                "check-config",
            ])
            .output()
            .unwrap()
    };
    let out = check("conf/studywatch.toml");
    assert!(out.status.success(), "{}", show(&out));
    // The production example is valid TOML and settings, but names files
    // that only a deployed machine has: check-config reads them as serve
    // would, and names each missing one.
    let out = check("conf/examples/production.toml");
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for missing in [
        "calendars/england-and-wales.toml",
        "smtp.password",
        "pagerduty.key",
    ] {
        assert!(err.contains(missing), "{missing} not named: {err}");
    }
    assert!(!err.contains("is not valid"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let out = std::process::Command::new(bin())
        .args(["studies", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn studies_and_study_print_the_shared_json_shapes() {
    let gw = TestGateway::start();
    let case = manifest()
        .into_iter()
        .find(|c| c.path == "valid/ct_implicit_le.dcm")
        .unwrap();
    let to = format!("{AE}@127.0.0.1:{}", gw.port);
    let out = gw.cli(&["send", "--to", &to, corpus(&case.path).to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));

    let out = gw.cli(&["studies", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let studies: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &studies[0];
    for key in [
        "study_uid",
        "accession_number",
        "patient_id",
        "modalities",
        "source",
        "calling_ae",
        "first_received_at",
        "last_received_at",
        "series_count",
        "instance_count",
        "state",
        "deadline",
        "reported_at",
    ] {
        assert!(s.get(key).is_some(), "study object lacks {key}: {s}");
    }
    assert_eq!(s["state"], "unreported");
    assert_eq!(
        s["calling_ae"], AE,
        "our send uses our AE title as the calling AE"
    );
    assert_eq!(s["instance_count"], 1);
    // The watchdog gives every study a deadline (at the latest the 28-day
    // ceiling) 50 ms after its commit, so under load it may already be set
    // when the CLI reads: it is null or exactly that ceiling, never anything
    // else. (Asserting null alone failed whenever the CLI was the slower.)
    if !s["deadline"].is_null() {
        let first: jiff::Timestamp = s["first_received_at"].as_str().unwrap().parse().unwrap();
        let deadline: jiff::Timestamp = s["deadline"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            deadline,
            first + jiff::SignedDuration::from_hours(28 * 24),
            "{s}"
        );
    }
    let uid = s["study_uid"].as_str().unwrap();

    let out = gw.cli(&["study", uid, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let detail: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        detail["instances"][0]["sop_instance_uid"],
        case.sop_instance.as_str()
    );

    let out = gw.cli(&["study", "1.2.3.4.5.6.7.8.9"]);
    assert_eq!(out.status.code(), Some(1));
    // Patient names never leave the data set: not in the catalog's output.
    let text = String::from_utf8_lossy(&gw.cli(&["study", uid]).stdout).into_owned();
    assert!(!text.contains("TEST^CORPUS"), "{text}");
}

#[test]
fn verify_reports_changed_and_missing_files_and_exits_1() {
    let gw = TestGateway::start();
    let cases: Vec<Case> = manifest()
        .into_iter()
        .filter(|c| c.status == 0)
        .take(3)
        .collect();
    let to = format!("{AE}@127.0.0.1:{}", gw.port);
    let files: Vec<String> = cases
        .iter()
        .map(|c| corpus(&c.path).display().to_string())
        .collect();
    let mut args = vec!["send", "--to", to.as_str()];
    args.extend(files.iter().map(String::as_str));
    assert!(gw.cli(&args).status.success());
    let out = gw.cli(&["verify"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 intact"),
        "{}",
        show(&out)
    );

    let store = gw.catalog();
    let rows = store.instances(None).unwrap();
    let changed = gw.storage().join(&rows[0].rel_path);
    let mut bytes = std::fs::read(&changed).unwrap();
    let n = bytes.len() - 1;
    bytes[n] ^= 0x01;
    std::fs::write(&changed, bytes).unwrap();
    std::fs::remove_file(gw.storage().join(&rows[1].rel_path)).unwrap();
    let out = gw.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CHANGED") && text.contains(&rows[0].sop_instance_uid),
        "{text}"
    );
    assert!(
        text.contains("MISSING") && text.contains(&rows[1].sop_instance_uid),
        "{text}"
    );
}

#[test]
fn echo_reports_success_and_an_unreachable_peer_exits_1() {
    let gw = TestGateway::start();
    let out = gw.cli(&["echo", &format!("{AE}@127.0.0.1:{}", gw.port)]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0x0000"),
        "{}",
        show(&out)
    );
    let out = gw.cli(&["echo", &format!("{AE}@127.0.0.1:{}", free_port())]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

/// Writes one instance of a new study of `modality` and sends it with DCMTK
/// storescu under the calling AE `aet`.
fn send_as(gw: &TestGateway, aet: &str, modality: &str, study: &str) {
    let dir = gw.dir.path().join(format!("study-{study}"));
    let file = make_study(&dir, &["--study-uid", study, "--modality", modality]);
    storescu_as(gw, aet, &file);
}

#[test]
fn rules_coverage_lists_every_modality_and_source_with_its_rule() {
    let gw = TestGateway::with(Options {
        peers: r#"
[[dicom.peers]]
ae_title = "CT_MAIN"
source = "ct-main"
[[dicom.peers]]
ae_title = "ED_DX"
source = "ed"
[[dicom.peers]]
ae_title = "TRUST_B"
source = "trust-b"
"#
        .into(),
        tail: r#"
[watchdog]
calendar = ""

[[watchdog.rules]]
name = "Inpatient MR"
match = { modality = ["MR"], patient_class = ["I"] }
report_within = "4h"

[[watchdog.rules]]
name = "CT main"
match = { modality = ["CT"], source = ["ct-main"] }
report_within = "24h"

[[watchdog.rules]]
name = "ED plain film"
match = { modality = ["DX", "CR"], source = ["ed"] }
report_within = "2d"
hours = "working"

[[watchdog.rules]]
name = "Comparison imports"
match = { source = ["trust-b"] }
no_report_needed = true
"#
        .into(),
        ..Options::default()
    });
    const ROOT: &str = "1.2.826.0.1.3680043.10.1661.80";
    for (i, (aet, modality)) in [
        ("CT_MAIN", "CT"),
        ("CT_MAIN", "CT"),
        ("ED_DX", "DX"),
        ("CT_MAIN", "MR"),
        // No rule takes ultrasound from the ED: the 28-day ceiling.
        ("ED_DX", "US"),
        ("TRUST_B", "CT"),
    ]
    .into_iter()
    .enumerate()
    {
        send_as(&gw, aet, modality, &format!("{ROOT}.{i}"));
    }

    let coverage = || -> serde_json::Value {
        let out = gw.cli(&["rules", "coverage", "--json"]);
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
    };
    // Wait until the watchdog has recorded a rule on every study.
    wait_for(
        "the watchdog to decide every study",
        Duration::from_secs(20),
        || {
            coverage()
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| p["recorded"].as_array().unwrap().clone())
                .all(|r| r["evaluated"] == true)
        },
    );
    let pairs = coverage();
    let pairs = pairs.as_array().unwrap();
    // Modality, source, studies, conditional rules, the rule that applies,
    // its deadline, and the recorded rules with their counts.
    type Pair = (
        String,
        String,
        u64,
        Vec<String>,
        String,
        String,
        Vec<(String, u64)>,
    );
    let summary: Vec<Pair> = pairs
        .iter()
        .map(|p| {
            let name = |v: &serde_json::Value| v.as_str().unwrap_or("(none)").to_owned();
            (
                name(&p["modality"]),
                name(&p["source"]),
                p["studies"].as_u64().unwrap(),
                p["only_if"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| format!("{} if {}", name(&r["rule"]), r["conditions"][0]))
                    .collect(),
                name(&p["applies"]["rule"]),
                name(&p["applies"]["deadline"]),
                p["recorded"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| (name(&r["rule"]), r["studies"].as_u64().unwrap()))
                    .collect(),
            )
        })
        .collect();
    let s = |v: &str| v.to_owned();
    assert_eq!(
        summary,
        [
            (
                s("CT"),
                s("ct-main"),
                2,
                vec![],
                s("CT main"),
                s("report within 24h (calendar time)"),
                vec![(s("CT main"), 2)]
            ),
            (
                s("CT"),
                s("trust-b"),
                1,
                vec![],
                s("Comparison imports"),
                s("no report needed"),
                vec![(s("Comparison imports"), 1)]
            ),
            (
                s("DX"),
                s("ed"),
                1,
                vec![],
                s("ED plain film"),
                s("report within 2d (working days)"),
                vec![(s("ED plain film"), 1)]
            ),
            (
                s("MR"),
                s("ct-main"),
                1,
                vec![s("Inpatient MR if \"patient class I\"")],
                s("(none)"),
                s("no rule matches: 28-day ceiling"),
                vec![(s("(none)"), 1)]
            ),
            (
                s("US"),
                s("ed"),
                1,
                vec![],
                s("(none)"),
                s("no rule matches: 28-day ceiling"),
                vec![(s("(none)"), 1)]
            ),
        ]
    );
    let ceiling = &pairs[4]["applies"];
    assert_eq!(
        (&ceiling["report_within"], &ceiling["hours"]),
        (&serde_json::json!("28d"), &serde_json::Value::Null)
    );

    // The table names every pair and its rule on the pair's first line.
    let out = gw.cli(&["rules", "coverage", "--days", "1"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for (modality, source, count, rule) in [
        (
            "CT",
            "ct-main",
            2,
            "rule \"CT main\", report within 24h (calendar time)",
        ),
        (
            "CT",
            "trust-b",
            1,
            "rule \"Comparison imports\", no report needed",
        ),
        (
            "DX",
            "ed",
            1,
            "rule \"ED plain film\", report within 2d (working days)",
        ),
        (
            "MR",
            "ct-main",
            1,
            "only if patient class I: rule \"Inpatient MR\"",
        ),
        ("US", "ed", 1, "no rule matches: 28-day ceiling"),
    ] {
        assert!(
            text.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3
                    && cols[..3] == [modality, source, &count.to_string()]
                    && l.contains(rule)
            }),
            "{modality} {source} {rule}:\n{text}"
        );
    }
    assert!(
        text.contains("otherwise no rule matches: 28-day ceiling"),
        "{text}"
    );
    assert!(text.contains("the last 1 day(s)"), "{text}");

    // Usage errors exit 2.
    let out = gw.cli(&["rules", "coverage", "--days", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
