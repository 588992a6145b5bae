//! `/metrics`, `/healthz` and `/readyz` of a running gateway, over a real
//! socket: a study arrives through DCMTK storescu and a report through
//! python-hl7's mllp_send, then the exposition is parsed with a strict
//! OpenMetrics parser and its figures checked.

use std::collections::HashMap;

use openmetrics_parser::{MetricFamily, OpenMetricsType, OpenMetricsValue};
use serde_json::Value;

use crate::harness::{TestGateway, http_get};
use crate::reports::{PATIENT, fixture, mllp_send, send_study, subs};

type Family = MetricFamily<OpenMetricsType, OpenMetricsValue>;

fn scrape(port: u16) -> HashMap<String, Family> {
    let (status, text) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{text}");
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics text ({e}):\n{text}"));
    exposition.families
}

/// The value of the sample of `family` whose labels include all of `labels`.
fn value(families: &HashMap<String, Family>, family: &str, labels: &[(&str, &str)]) -> f64 {
    let f = families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"));
    let names = f.get_label_names().to_vec();
    for sample in f.iter_samples() {
        let set = openmetrics_parser::LabelSet::new(std::sync::Arc::new(names.clone()), sample)
            .expect("labels");
        if labels
            .iter()
            .all(|(k, v)| set.get_label_value(k) == Some(*v))
        {
            return match &sample.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(g) => g.as_f64(),
                OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0) as f64,
                other => panic!("{family}: unexpected value {other:?}"),
            };
        }
    }
    panic!("{family}: no sample with labels {labels:?}");
}

#[test]
fn metrics_follow_prometheus_conventions_and_count_what_happened() {
    let gw = TestGateway::start();
    let study = "1.2.826.0.1.3680043.10.1234.77.1";
    send_study(&gw, study, "ACCMET1", PATIENT);
    let other = "1.2.826.0.1.3680043.10.1234.77.2";
    send_study(&gw, other, "ACCMET2", PATIENT);
    let acks = mllp_send(
        gw.hl7_port,
        gw.dir.path(),
        &[fixture(
            "oru-accession.hl7",
            &subs("METRICS1", study, "ACCMET1", "PL1", "FI1"),
        )],
    );
    assert_eq!(acks[0].code, "AA", "{:?}", acks[0]);

    let families = scrape(gw.http_port);

    // Names: the project prefix, units in the names of what has one.
    for (name, family) in &families {
        assert!(name.starts_with("studywatch_"), "{name} lacks the prefix");
        match family.family_type {
            OpenMetricsType::Histogram => assert!(
                name.ends_with("_seconds") || name.ends_with("_bytes"),
                "histogram {name} has no unit"
            ),
            OpenMetricsType::Counter | OpenMetricsType::Gauge => {}
            ref other => panic!("{name}: unexpected type {other:?}"),
        }
        assert!(
            !name.ends_with("_total"),
            "{name}: a family name carries _total only on its samples"
        );
    }
    // Counters are exposed as NAME_total.
    let (_, text) = http_get(gw.http_port, "/metrics");
    assert!(
        text.contains("studywatch_instances_received_total{"),
        "{text}"
    );

    // What happened: two instances stored by the test's AE, one ORU.
    assert_eq!(
        value(
            &families,
            "studywatch_instances_received",
            &[("status", "0x0000")]
        ),
        2.0
    );
    assert_eq!(
        value(&families, "studywatch_cstore_duration_seconds", &[]),
        2.0
    );
    // The harness's readiness C-ECHO makes at least one more association.
    assert!(value(&families, "studywatch_association_duration_seconds", &[]) >= 3.0);
    assert!(value(&families, "studywatch_received_bytes", &[]) > 0.0);
    assert_eq!(
        value(
            &families,
            "studywatch_hl7_messages",
            &[("message_type", "ORU^R01"), ("outcome", "AA")]
        ),
        1.0
    );
    // One study reported, the other waiting in the youngest age bucket.
    assert_eq!(
        value(
            &families,
            "studywatch_unreported_studies",
            &[("age", "under_24h")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "studywatch_unreported_studies",
            &[("age", "over_28d")]
        ),
        0.0
    );
    assert_eq!(
        value(&families, "studywatch_report_turnaround_seconds", &[]),
        1.0
    );
    assert_eq!(value(&families, "studywatch_catalog_studies", &[]), 2.0);
    assert_eq!(value(&families, "studywatch_catalog_instances", &[]), 2.0);
    assert!(value(&families, "studywatch_catalog_size_bytes", &[]) > 0.0);
    assert!(value(&families, "studywatch_storage_size_bytes", &[]) > 0.0);
    assert_eq!(
        value(
            &families,
            "studywatch_alarms",
            &[("kind", "overdue_report"), ("state", "open")]
        ),
        0.0
    );
    assert_eq!(value(&families, "studywatch_outbox_pending", &[]), 0.0);

    // A second scrape does not count the same report twice.
    let again = scrape(gw.http_port);
    assert_eq!(
        value(&again, "studywatch_report_turnaround_seconds", &[]),
        1.0
    );
}

#[test]
fn health_and_readiness_answer_with_their_checks() {
    let gw = TestGateway::start();
    let (status, body) = http_get(gw.http_port, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(gw.http_port, "/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true, "{body}");
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "catalog",
            "storage",
            "storage_space",
            "listeners",
            "watchdog"
        ]
    );
    // The scheduler has evaluated since the gateway started, and keeps
    // coming round its loop (at least once a second).
    let families = scrape(gw.http_port);
    let now = jiff::Timestamp::now().as_second() as f64;
    let evaluated = value(
        &families,
        "studywatch_watchdog_last_evaluation_timestamp_seconds",
        &[],
    );
    assert!(
        evaluated > now - 60.0 && evaluated <= now,
        "{evaluated} vs {now}"
    );
    let ran = value(
        &families,
        "studywatch_watchdog_last_run_timestamp_seconds",
        &[],
    );
    assert!(ran >= now - 5.0 && ran <= now, "{ran} vs {now}");

    // Storage that cannot be written makes the gateway not ready.
    let tmp = gw.storage().join(".tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let (status, body) = http_get(gw.http_port, "/readyz");
    assert_eq!(status, 503, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    let storage = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "storage")
        .unwrap();
    assert_eq!(storage["ok"], false, "{body}");
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
}
