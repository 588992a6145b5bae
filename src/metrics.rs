//! Prometheus metrics: one registry for the process, with the counters and
//! gauges each subsystem updates. This module only defines them; the HTTP
//! layer exposes them and nothing here does I/O.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub instances_stored: Counter,
    pub instances_duplicate: Counter,
    pub integrity_conflicts: Counter,
    pub ingest_failures: Family<ReasonLabels, Counter>,
    pub bytes_received: Counter,
    pub associations_active: Gauge,
    pub associations_rejected: Family<ReasonLabels, Counter>,
    pub echoes: Counter,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("studywatch");
        let m = Metrics {
            instances_stored: Counter::default(),
            instances_duplicate: Counter::default(),
            integrity_conflicts: Counter::default(),
            ingest_failures: Family::default(),
            bytes_received: Counter::default(),
            associations_active: Gauge::default(),
            associations_rejected: Family::default(),
            echoes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "instances_stored",
            "Instances stored durably and catalogued",
            m.instances_stored.clone(),
        );
        registry.register(
            "instances_duplicate",
            "Identical resends answered as no-ops",
            m.instances_duplicate.clone(),
        );
        registry.register(
            "integrity_conflicts",
            "Resends with different content, quarantined",
            m.integrity_conflicts.clone(),
        );
        registry.register(
            "ingest_failures",
            "Instances refused, by reason",
            m.ingest_failures.clone(),
        );
        registry.register(
            "received_bytes",
            "Data set bytes received",
            m.bytes_received.clone(),
        );
        registry.register(
            "associations_active",
            "DICOM associations in progress",
            m.associations_active.clone(),
        );
        registry.register(
            "associations_rejected",
            "DICOM associations rejected, by reason",
            m.associations_rejected.clone(),
        );
        registry.register("echoes", "C-ECHO requests answered", m.echoes.clone());
        Arc::new(Metrics { registry, ..m })
    }

    pub fn failure(&self, reason: &str) {
        self.ingest_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn rejected_association(&self, reason: &str) {
        self.associations_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}
