//! Forwarding: one sender task per `[[forward.destinations]]` entry works
//! through that destination's rows of the catalog's forward queue.
//!
//! The queue rows are written by the catalog in the transaction that records
//! each instance (ingest decides which destinations take it), so the queue is
//! exactly as durable as the instances and survives any restart. A sender
//! takes due rows in batches, opens up to `max_associations` associations at
//! once with [`crate::scu::Association`], sends several instances on each,
//! and records every outcome in the catalog: a row becomes `sent` only after
//! a success or warning status; a failure, a refusal or an unreachable
//! destination puts it back with exponential backoff and jitter
//! ([`backoff`]); what can never be sent as things stand (the destination
//! does not accept the SOP class in the stored transfer syntax, the file is
//! unreadable) becomes `failed` until `studywatch forward retry`.
//!
//! What this module never does: hold queue state only in memory, write SQL
//! (it calls `Store` methods through `Catalog::call`), transcode, or share
//! anything with ingest beyond the catalog: ingest never waits for it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, ForwardItem, ForwardOutcome};
use crate::config::Destination;
use crate::metrics::Metrics;
use crate::scu::{self, Association, Peer};

/// Instances sent on one association before it is released, its outcomes
/// committed and the queue read again. Each batch costs an association
/// set-up and a durable catalog commit, during which nothing is sent: at 64
/// those pauses cost a seventh of a 2,000-instance drain (bench/forward.sh).
/// A kill -9 may make the destination receive up to a batch again, which
/// DICOM allows and the catalog records once.
pub const BATCH: usize = 256;

/// How often an idle sender looks for due rows. It also sees rows queued
/// by ingest and made due by `forward retry` from another process this way.
pub const POLL: Duration = Duration::from_secs(1);

/// The wait after the first failed attempt; it doubles per further failure.
pub const RETRY_INITIAL: Duration = Duration::from_secs(2);
/// The longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// How long to wait before the next attempt after `attempts` failed ones
/// (at least 1): `RETRY_INITIAL × 2^(attempts-1)`, at most `RETRY_MAX`,
/// then scaled by `jitter` (0.0..1.0 maps to 0.75..1.25) so that rows that
/// failed together do not all come due at the same instant.
pub fn backoff(attempts: u32, jitter: f64) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let base = RETRY_INITIAL
        .checked_mul(factor)
        .map_or(RETRY_MAX, |d| d.min(RETRY_MAX));
    base.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A number in 0.0..1.0 that differs between calls, for jitter. Hashing
/// with a fresh `RandomState` is random enough and needs no extra crate.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The sender of one destination.
pub struct Sender {
    destination: Destination,
    peer: Peer,
    calling_ae: String,
    /// The storage root that queue rows' `rel_path` is relative to.
    storage_root: PathBuf,
    /// Reads the queue; quiet, so the sender's polls never wake the
    /// watchdog.
    catalog: Catalog,
    /// Records outcomes, and wakes the watchdog so that a `forward_stalled`
    /// alarm resolves as soon as its destination takes instances again.
    recorder: Catalog,
    metrics: Arc<Metrics>,
}

impl Sender {
    pub fn new(
        destination: Destination,
        calling_ae: String,
        storage_root: PathBuf,
        catalog: Catalog,
        metrics: Arc<Metrics>,
    ) -> Sender {
        let peer = Peer {
            ae_title: destination.ae_title.clone(),
            address: destination.address(),
        };
        Sender {
            destination,
            peer,
            calling_ae,
            storage_root,
            catalog: catalog.quiet(),
            recorder: catalog,
            metrics,
        }
    }

    /// Works through the queue until `shutdown` is cancelled. An
    /// association in progress stops between two instances.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let name = self.destination.name.clone();
        tracing::info!(destination = %name, address = %self.peer.address,
            ae_title = %self.peer.ae_title, "forwarding");
        while !shutdown.is_cancelled() {
            let limit = BATCH * self.destination.max_associations;
            let now = Timestamp::now();
            let wanted = name.clone();
            let due = self
                .catalog
                .call(move |s| s.forward_due(&wanted, now, limit))
                .await;
            let items = match due {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(destination = %name, error = %e, "cannot read the forward queue");
                    Vec::new()
                }
            };
            if items.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(POLL) => continue,
                }
            }
            let outcomes = self.send_all(items, &shutdown).await;
            if outcomes.is_empty() {
                // Nothing was attempted (shutdown, or a lane that failed):
                // the same rows are still due, so wait before reading them
                // again rather than spin.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(POLL) => continue,
                }
            }
            for o in &outcomes {
                self.metrics.forwarded(&name, outcome_label(o));
            }
            let wanted = name.clone();
            let now = Timestamp::now();
            let commits = self.destination.storage_commitment;
            if let Err(e) = self
                .recorder
                .call(move |s| s.record_forward_outcomes(&wanted, &outcomes, commits, now))
                .await
            {
                // The rows stay pending and are sent again: a destination
                // may receive an instance twice, which DICOM allows.
                tracing::error!(destination = %name, error = %e, "cannot record forwarding outcomes");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
        tracing::info!(destination = %name, "forwarding stopped");
    }

    /// Splits `items` over up to `max_associations` associations and
    /// sends them at once; returns every outcome.
    async fn send_all(
        self: &Arc<Self>,
        items: Vec<ForwardItem>,
        shutdown: &CancellationToken,
    ) -> Vec<ForwardOutcome> {
        let lanes = self.destination.max_associations.max(1);
        let per_lane = items.len().div_ceil(lanes).max(1);
        let mut set = tokio::task::JoinSet::new();
        let mut rest = items;
        while !rest.is_empty() {
            let tail = rest.split_off(per_lane.min(rest.len()));
            let chunk = std::mem::replace(&mut rest, tail);
            let this = Arc::clone(self);
            let token = shutdown.clone();
            set.spawn(async move { this.send_batch(chunk, &token).await });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(o) => outcomes.extend(o),
                // Rows of a lane that panicked stay pending and come back.
                Err(e) => tracing::error!(error = %e, "a forwarding lane failed"),
            }
        }
        outcomes
    }

    /// Sends one batch on one association.
    async fn send_batch(
        &self,
        items: Vec<ForwardItem>,
        shutdown: &CancellationToken,
    ) -> Vec<ForwardOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        // Read each file's meta group (blocking reads) and check that the
        // stored file is the instance the catalog says it is.
        let root = self.storage_root.clone();
        let checked = tokio::task::spawn_blocking(move || {
            items
                .into_iter()
                .map(|item| {
                    let path = root.join(&item.rel_path);
                    let file = scu::inspect(&path).and_then(|f| {
                        if f.sop_instance == item.sop_instance_uid
                            && f.sop_class == item.sop_class_uid
                            && f.ts == item.transfer_syntax
                        {
                            Ok(f)
                        } else {
                            Err(scu::Error::Protocol(format!(
                                "stored file {} does not hold the catalogued instance",
                                path.display()
                            )))
                        }
                    });
                    (item, file)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut ready = Vec::with_capacity(checked.len());
        for (item, file) in checked {
            match file {
                Ok(f) => ready.push((item, f)),
                Err(e) => {
                    tracing::error!(destination = %self.destination.name,
                        sop_instance_uid = %item.sop_instance_uid, error = %e,
                        "cannot forward a stored instance");
                    outcomes.push(ForwardOutcome::Failed {
                        sop_instance_uid: item.sop_instance_uid,
                        status: None,
                        error: e.to_string(),
                    });
                }
            }
        }
        if ready.is_empty() {
            return outcomes;
        }
        // One context per (SOP class, stored transfer syntax), proposing
        // that syntax only, except for uncompressed data in a native little
        // endian syntax: its context proposes the stored syntax first and
        // the other native little endian one as an alternative, so that a
        // destination taking only one of them still gets the data set
        // (re-encoded; no value changes). Compressed data is never touched.
        let contexts: Vec<(String, Vec<String>)> = ready
            .iter()
            .map(|(i, _)| {
                let ts = i.transfer_syntax.clone();
                let syntaxes = if scu::is_native_le(&ts) {
                    let other = if ts == scu::EXPLICIT_LE {
                        scu::IMPLICIT_LE
                    } else {
                        scu::EXPLICIT_LE
                    };
                    vec![ts, other.to_owned()]
                } else {
                    vec![ts]
                };
                (i.sop_class_uid.clone(), syntaxes)
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut assoc = match Association::open_with(&self.calling_ae, &self.peer, &contexts).await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(destination = %self.destination.name, error = %e,
                    pending = ready.len(), "destination unreachable; will retry");
                let error = e.to_string();
                outcomes.extend(ready.into_iter().map(|(i, _)| self.retry(&i, None, &error)));
                return outcomes;
            }
        };
        let mut ready = ready.into_iter();
        let mut broken = None;
        for (item, file) in ready.by_ref() {
            let Some((pc_id, accepted)) =
                assoc.context_for(&item.sop_class_uid, &item.transfer_syntax)
            else {
                outcomes.push(ForwardOutcome::Failed {
                    error: format!(
                        "the destination does not accept SOP class {} in transfer syntax {}",
                        item.sop_class_uid, item.transfer_syntax
                    ),
                    sop_instance_uid: item.sop_instance_uid,
                    status: None,
                });
                continue;
            };
            let sent = if accepted == item.transfer_syntax {
                assoc.store(pc_id, &file).await
            } else {
                let path = file.path.clone();
                let ts = accepted.clone();
                match tokio::task::spawn_blocking(move || scu::reencode(&path, &ts)).await {
                    Ok(Ok(data)) => {
                        assoc
                            .store_bytes(pc_id, &file.sop_class, &file.sop_instance, data)
                            .await
                    }
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(scu::Error::File {
                        path: file.path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    }),
                }
            };
            match sent {
                Ok(reply) if scu::is_stored(reply.status) => {
                    tracing::debug!(destination = %self.destination.name,
                        sop_instance_uid = %item.sop_instance_uid, status = reply.status, "forwarded");
                    outcomes.push(ForwardOutcome::Sent {
                        sop_instance_uid: item.sop_instance_uid,
                        status: reply.status,
                    });
                }
                Ok(reply) => {
                    let error = format!(
                        "status {:#06X} {}{}",
                        reply.status,
                        crate::scp::status_name(reply.status),
                        reply
                            .error_comment
                            .as_deref()
                            .map(|c| format!(": {c}"))
                            .unwrap_or_default()
                    );
                    tracing::warn!(destination = %self.destination.name,
                        sop_instance_uid = %item.sop_instance_uid, %error, "forward refused; will retry");
                    outcomes.push(self.retry(&item, Some(reply.status), &error));
                }
                Err(scu::Error::File { source, .. }) => {
                    outcomes.push(ForwardOutcome::Failed {
                        sop_instance_uid: item.sop_instance_uid,
                        status: None,
                        error: format!("cannot read the stored file: {source}"),
                    });
                }
                Err(e) => {
                    tracing::warn!(destination = %self.destination.name, error = %e,
                        "association to the destination broke; will retry");
                    let error = e.to_string();
                    outcomes.push(self.retry(&item, None, &error));
                    broken = Some(error);
                    break;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        match broken {
            Some(error) => {
                // The rest of the batch never went out on this association.
                outcomes.extend(ready.map(|(i, _)| self.retry(&i, None, &error)));
                assoc.abort().await;
            }
            // Rows not reached before shutdown stay pending as they were.
            None => assoc.release().await,
        }
        outcomes
    }

    fn retry(&self, item: &ForwardItem, status: Option<u16>, error: &str) -> ForwardOutcome {
        let wait = backoff(item.attempts.saturating_add(1), jitter());
        let next_attempt_at = Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
            .unwrap_or_else(|_| Timestamp::now());
        ForwardOutcome::Retry {
            sop_instance_uid: item.sop_instance_uid.clone(),
            status,
            error: error.to_owned(),
            next_attempt_at,
        }
    }
}

/// The `outcome` label of `studywatch_forwarded_total`.
fn outcome_label(o: &ForwardOutcome) -> &'static str {
    match o {
        ForwardOutcome::Sent { .. } => "sent",
        ForwardOutcome::Retry { .. } => "retry",
        ForwardOutcome::Failed { .. } => "failed",
    }
}

/// Starts one sender per configured destination on `tracker`.
pub fn spawn_all(
    config: &crate::config::Config,
    catalog: &Catalog,
    metrics: &Arc<Metrics>,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &CancellationToken,
) {
    metrics.forward_destinations(
        config
            .forward
            .destinations
            .iter()
            .map(|d| d.name.clone())
            .collect(),
    );
    for d in &config.forward.destinations {
        let sender = Arc::new(Sender::new(
            d.clone(),
            config.dicom.ae_title.clone(),
            config.storage.path.clone(),
            catalog.clone(),
            Arc::clone(metrics),
        ));
        tracker.spawn(sender.run(shutdown.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_with_bounded_jitter() {
        assert_eq!(backoff(1, 0.5), RETRY_INITIAL);
        assert_eq!(backoff(2, 0.5), RETRY_INITIAL * 2);
        assert_eq!(backoff(4, 0.5), RETRY_INITIAL * 8);
        assert_eq!(backoff(30, 0.5), RETRY_MAX);
        assert_eq!(backoff(u32::MAX, 0.5), RETRY_MAX);
        assert_eq!(backoff(1, 0.0), RETRY_INITIAL.mul_f64(0.75));
        assert_eq!(backoff(1, 1.0), RETRY_INITIAL.mul_f64(1.25));
        // Out-of-range jitter is clamped, never negative or unbounded.
        assert_eq!(backoff(1, 7.0), RETRY_INITIAL.mul_f64(1.25));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn warnings_count_as_stored_and_failures_do_not() {
        for s in [0x0000, 0xB000, 0xB006, 0xB007, 0x0107, 0x0116] {
            assert!(scu::is_stored(s), "{s:#06x}");
        }
        for s in [0xA700, 0xA900, 0xC000, 0x0122, 0x0124, 0x0211, 0x0110] {
            assert!(!scu::is_stored(s), "{s:#06x}");
        }
    }
}
