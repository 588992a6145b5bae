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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
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
    pub hl7_messages: Family<OutcomeLabels, Counter>,
    pub hl7_duplicates: Counter,
    pub hl7_connections_active: Gauge,
    pub notifications: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("studywatch");
        let r = &mut registry;
        Arc::new(Metrics {
            instances_stored: registered(
                r,
                "instances_stored",
                "Instances stored durably and catalogued",
            ),
            instances_duplicate: registered(
                r,
                "instances_duplicate",
                "Identical resends answered as no-ops",
            ),
            integrity_conflicts: registered(
                r,
                "integrity_conflicts",
                "Resends with different content, quarantined",
            ),
            ingest_failures: registered(r, "ingest_failures", "Instances refused, by reason"),
            bytes_received: registered(r, "received_bytes", "Data set bytes received"),
            associations_active: registered(
                r,
                "associations_active",
                "DICOM associations in progress",
            ),
            associations_rejected: registered(
                r,
                "associations_rejected",
                "DICOM associations rejected, by reason",
            ),
            echoes: registered(r, "echoes", "C-ECHO requests answered"),
            hl7_messages: registered(
                r,
                "hl7_messages",
                "HL7 frames by outcome: the ACK code sent (AA, AE, AR), or why none was \
                 (junk, truncated, abandoned, timeout, uncommitted, connection_refused)",
            ),
            hl7_duplicates: registered(
                r,
                "hl7_duplicates",
                "HL7 messages seen before (MSH-3, MSH-4, MSH-10), acknowledged again",
            ),
            notifications: registered(
                r,
                "notifications",
                "Notification delivery attempts by outcome (sent, retry, failed)",
            ),
            hl7_connections_active: registered(
                r,
                "hl7_connections_active",
                "MLLP connections open",
            ),
            registry,
        })
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

    /// Counts an HL7 frame by its outcome.
    pub fn hl7_message(&self, outcome: &str) {
        self.hl7_messages
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a notification delivery attempt by its outcome.
    pub fn notification(&self, outcome: &str) {
        self.notifications
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
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

/// A new metric, registered under `name`; the returned handle and the
/// registry's copy share one value.
fn registered<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: prometheus_client::registry::Metric + Clone + Default,
{
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_the_exposition() {
        let m = Metrics::new();
        m.failure("truncated");
        m.failure("truncated");
        m.instances_stored.inc();
        let text = m.encode();
        assert!(
            text.contains("studywatch_ingest_failures_total{reason=\"truncated\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("studywatch_instances_stored_total 1"),
            "{text}"
        );
        assert!(text.contains("studywatch_associations_active 0"), "{text}");
    }
}
