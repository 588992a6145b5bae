//! Prometheus metrics: one registry for the process, with the counters and
//! gauges each subsystem updates. This module only defines them; the HTTP
//! layer exposes them and nothing here does I/O.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// An HL7 frame: the message type (`ORU^R01`, bounded to the types we know,
/// else `other`; `none` when no header could be read) and the outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Hl7Labels {
    pub message_type: String,
    pub outcome: String,
}

/// A C-STORE answered: its DIMSE status (`0x0000`) and the sender's source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub status: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardedLabels {
    pub destination: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BucketLabels {
    pub age: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlarmLabels {
    pub kind: String,
    pub state: String,
}

/// HL7 message types a label may carry; anything else counts as `other`,
/// so a sender cannot create unbounded label values.
const HL7_TYPES: [&str; 8] = [
    "ORU^R01", "ORM^O01", "OMI^O23", "ADT^A01", "ADT^A04", "ADT^A08", "MDM^T02", "ACK",
];

/// The alarm kinds the watchdog raises, each shown (as 0 when none is live)
/// so a dashboard query never sees a series vanish.
const ALARM_KINDS: [&str; 11] = [
    "overdue_report",
    "failsafe_unacknowledged",
    "unmatched_report",
    "feed_silent",
    "integrity",
    "storage_low",
    "forward_stalled",
    "incomplete_transfer",
    "order_without_images",
    "calendar_expiring",
    "clock_skew",
];

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
    pub hl7_messages: Family<Hl7Labels, Counter>,
    pub instances_received: Family<StoreLabels, Counter>,
    pub associations: Family<SourceLabels, Counter>,
    pub association_duration: Histogram,
    pub cstore_duration: Histogram,
    pub report_turnaround: Histogram,
    pub unreported_studies: Family<BucketLabels, Gauge>,
    pub overdue_studies: Gauge,
    pub live_alarms: Family<AlarmLabels, Gauge>,
    pub outbox_pending: Gauge,
    pub outbox_failed: Gauge,
    pub catalog_studies: Gauge,
    pub catalog_instances: Gauge,
    pub catalog_size: Gauge,
    pub storage_free: Gauge,
    pub storage_size: Gauge,
    pub catalog_queue_depth: Gauge,
    pub watchdog_last_run: Gauge,
    pub watchdog_last_evaluation: Gauge,
    pub hl7_duplicates: Counter,
    pub hl7_connections_active: Gauge,
    pub notifications: Family<OutcomeLabels, Counter>,
    pub forward_queue_depth: Family<DestinationLabels, Gauge>,
    pub forwarded: Family<ForwardedLabels, Counter>,
    pub pruned_instances: Counter,
    pub pruned_bytes: Counter,
    pub commitments: Family<ForwardedLabels, Counter>,
    /// The configured destinations, so that each shows a depth (0 when
    /// nothing waits) and a destination's gauge drops to 0 when drained.
    destinations: std::sync::Mutex<Vec<String>>,
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
                "HL7 frames by message type and outcome: the ACK code sent (AA, AE, AR), \
                 or why none was (junk, truncated, abandoned, timeout, uncommitted, \
                 connection_refused)",
            ),
            instances_received: registered(
                r,
                "instances_received",
                "C-STORE requests answered, by DIMSE status and source",
            ),
            associations: registered(r, "associations", "DICOM associations accepted, by source"),
            association_duration: histogram(
                r,
                "association_duration_seconds",
                "How long accepted DICOM associations lasted",
                exponential(0.01, 4.0, 10),
            ),
            cstore_duration: histogram(
                r,
                "cstore_duration_seconds",
                "From a C-STORE command to its response: receipt, verification, \
                 durable write and catalogue",
                exponential(0.0005, 2.0, 18),
            ),
            report_turnaround: histogram(
                r,
                "report_turnaround_seconds",
                "From a study's first image to its formal report, for studies \
                 reported since the process started",
                vec![
                    3600.0,
                    4.0 * 3600.0,
                    12.0 * 3600.0,
                    86400.0,
                    2.0 * 86400.0,
                    3.0 * 86400.0,
                    7.0 * 86400.0,
                    14.0 * 86400.0,
                    28.0 * 86400.0,
                    56.0 * 86400.0,
                ],
            ),
            unreported_studies: registered(
                r,
                "unreported_studies",
                "Studies that need a formal report and have none, by age since first receipt",
            ),
            overdue_studies: registered(
                r,
                "overdue_studies",
                "Unreported studies past their report deadline",
            ),
            live_alarms: registered(
                r,
                "alarms",
                "Alarms not yet resolved, by kind and state (open, acknowledged)",
            ),
            outbox_pending: registered(
                r,
                "outbox_pending",
                "Notifications waiting to be delivered",
            ),
            outbox_failed: registered(
                r,
                "outbox_failed",
                "Notifications given up on (notify_failed), kept until seen",
            ),
            catalog_studies: registered(r, "catalog_studies", "Studies in the catalog"),
            catalog_instances: registered(r, "catalog_instances", "Instances in the catalog"),
            catalog_size: registered(
                r,
                "catalog_size_bytes",
                "Size of the catalog database with its write-ahead log",
            ),
            storage_free: registered(
                r,
                "storage_free_bytes",
                "Free space on the storage file system, as seen by the gateway",
            ),
            storage_size: registered(r, "storage_size_bytes", "Size of the storage file system"),
            catalog_queue_depth: registered(
                r,
                "catalog_queue_depth",
                "Requests waiting for the catalog thread",
            ),
            watchdog_last_run: registered(
                r,
                "watchdog_last_run_timestamp_seconds",
                "When the watchdog scheduler last came round its loop (Unix time)",
            ),
            watchdog_last_evaluation: registered(
                r,
                "watchdog_last_evaluation_timestamp_seconds",
                "When the watchdog last evaluated deadlines and alarms successfully \
                 (Unix time; 0: not yet)",
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
            forward_queue_depth: registered(
                r,
                "forward_queue_depth",
                "Instances waiting to be forwarded, by destination",
            ),
            forwarded: registered(
                r,
                "forwarded",
                "Forwarding attempts by destination and outcome (sent, retry, failed)",
            ),
            pruned_instances: registered(
                r,
                "pruned_instances",
                "Local files removed after every destination had them",
            ),
            pruned_bytes: registered(r, "pruned_bytes", "Bytes of local files pruned"),
            commitments: registered(
                r,
                "pacs_commitments",
                "Instances a destination reported on by storage commitment, by outcome \
                 (committed, failed)",
            ),
            destinations: std::sync::Mutex::new(Vec::new()),
            registry,
        })
    }

    /// Names the configured forward destinations (at start).
    pub fn forward_destinations(&self, names: Vec<String>) {
        for name in &names {
            self.forward_queue_depth
                .get_or_create(&DestinationLabels {
                    destination: name.clone(),
                })
                .set(0);
        }
        *self.destinations.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }

    /// Counts one forwarding attempt by its outcome.
    pub fn forwarded(&self, destination: &str, outcome: &str) {
        self.forwarded
            .get_or_create(&ForwardedLabels {
                destination: destination.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
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

    /// Counts an HL7 frame by its outcome, before its type is known.
    pub fn hl7_message(&self, outcome: &str) {
        self.hl7_typed("", outcome);
    }

    /// Counts an HL7 message by its type (`ORU^R01`; empty when unknown) and
    /// outcome.
    pub fn hl7_typed(&self, message_type: &str, outcome: &str) {
        let message_type = if message_type.is_empty() {
            "none"
        } else {
            HL7_TYPES
                .iter()
                .find(|t| **t == message_type)
                .copied()
                .unwrap_or("other")
        };
        self.hl7_messages
            .get_or_create(&Hl7Labels {
                message_type: message_type.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a C-STORE response.
    pub fn instance_received(&self, status: u16, source: &str, took: std::time::Duration) {
        self.instances_received
            .get_or_create(&StoreLabels {
                status: format!("{status:#06x}"),
                source: source.to_owned(),
            })
            .inc();
        self.cstore_duration.observe(took.as_secs_f64());
    }

    /// Sets the gauges read from the catalog at a scrape.
    pub fn set_figures(&self, f: &crate::catalog::Figures) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (age, count) in crate::catalog::AGE_BUCKETS.iter().zip(f.unreported_by_age) {
            self.unreported_studies
                .get_or_create(&BucketLabels {
                    age: (*age).to_owned(),
                })
                .set(g(count));
        }
        self.overdue_studies.set(g(f.overdue));
        for kind in ALARM_KINDS {
            for state in ["open", "acknowledged"] {
                self.live_alarms
                    .get_or_create(&AlarmLabels {
                        kind: kind.to_owned(),
                        state: state.to_owned(),
                    })
                    .set(0);
            }
        }
        for (kind, state, count) in &f.alarms {
            self.live_alarms
                .get_or_create(&AlarmLabels {
                    kind: kind.clone(),
                    state: state.clone(),
                })
                .set(g(*count));
        }
        self.outbox_pending.set(g(f.outbox_pending));
        self.outbox_failed.set(g(f.outbox_failed));
        // A drained destination has no pending rows to report: every known
        // one starts from 0.
        let known = self
            .destinations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for destination in known {
            self.forward_queue_depth
                .get_or_create(&DestinationLabels { destination })
                .set(0);
        }
        for (destination, count) in &f.forward_pending {
            self.forward_queue_depth
                .get_or_create(&DestinationLabels {
                    destination: destination.clone(),
                })
                .set(g(*count));
        }
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

/// `count` bucket bounds from `start`, each `factor` times the last.
fn exponential(start: f64, factor: f64, count: u16) -> Vec<f64> {
    prometheus_client::metrics::histogram::exponential_buckets(start, factor, count).collect()
}

fn histogram(registry: &mut Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let metric = Histogram::new(buckets);
    registry.register(name, help, metric.clone());
    metric
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
