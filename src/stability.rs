//! Stable studies, and the completeness check that stability starts.
//!
//! A study is stable once no instance has arrived for its `stable_after`
//! (`[dicom] stable_after`, or its peer's own). This task notices it,
//! records `stable_at` (ingest clears it with every later instance, so a
//! late instance makes the study unstable again and it is judged anew),
//! and for a study from a peer configured with `query_retrieve`, asks the
//! peer with C-FIND how many instances it holds and records `complete`,
//! `incomplete` (n of m) or `unknown`. An incomplete study raises an
//! `incomplete_transfer` alarm (the watchdog's), which ends when the study
//! is found complete. Stability also lets the commitment requester ask a
//! destination to commit a study (`crate::commit`).

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Completeness};
use crate::config::Peer;

/// How often studies are looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// Studies read per page, and pages per tick at most.
const BATCH: usize = 256;
const PAGES: usize = 16;

/// What the task needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub our_ae: String,
    pub stable_after: Duration,
    /// Peers by AE title.
    pub peers: HashMap<String, Peer>,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        Settings {
            our_ae: config.dicom.ae_title.clone(),
            stable_after: config.dicom.stable_after,
            peers: config
                .dicom
                .peers
                .iter()
                .map(|p| (p.ae_title.clone(), p.clone()))
                .collect(),
        }
    }

    /// The `stable_after` of studies sent by `calling_ae`.
    fn stable_after_for(&self, calling_ae: &str) -> Duration {
        self.peers
            .get(calling_ae)
            .and_then(|p| p.stable_after)
            .unwrap_or(self.stable_after)
    }

    /// The shortest `stable_after` of all: no study can settle sooner.
    fn shortest(&self) -> Duration {
        self.peers
            .values()
            .filter_map(|p| p.stable_after)
            .chain([self.stable_after])
            .min()
            .unwrap_or(self.stable_after)
    }

    /// The peer to ask about studies from `calling_ae`, if it answers C-FIND.
    fn queryable(&self, calling_ae: &str) -> Option<crate::scu::Peer> {
        let p = self.peers.get(calling_ae).filter(|p| p.query_retrieve)?;
        Some(crate::scu::Peer {
            ae_title: p.ae_title.clone(),
            address: format!("{}:{}", p.host.as_deref()?, p.port?),
        })
    }
}

/// Runs until `shutdown`. Its writes go through `catalog`, which wakes the
/// watchdog (an incomplete study alarms at once); its reads go through a
/// quiet handle, so looking every second wakes nothing.
pub async fn run(settings: Settings, catalog: Catalog, shutdown: CancellationToken) {
    let reader = catalog.quiet();
    while !shutdown.is_cancelled() {
        if let Err(e) = settle(&settings, &reader, &catalog).await {
            tracing::warn!(error = %e, "cannot judge which studies are stable");
        }
        check_completeness(&settings, &reader, &catalog, &shutdown).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Marks stable every study whose `stable_after` has passed.
async fn settle(
    settings: &Settings,
    reader: &Catalog,
    catalog: &Catalog,
) -> Result<(), crate::catalog::Error> {
    let now = Timestamp::now();
    let before = sub(now, settings.shortest());
    // Pages, so that studies of a peer with a longer `stable_after`, which
    // stay at the head of the list, never hide the others behind them.
    let mut cursor: Option<crate::catalog::Settling> = None;
    for _ in 0..PAGES {
        let after = cursor.clone();
        let page = reader
            .call(move |s| s.settling(before, after.as_ref(), BATCH))
            .await?;
        let full = page.len() == BATCH;
        cursor = page.last().cloned();
        for study in page {
            let after = settings.stable_after_for(&study.calling_ae);
            if study.last_received_at > sub(now, after) {
                continue;
            }
            let check = settings.queryable(&study.calling_ae).is_some();
            let uid = study.study_uid.clone();
            let at = study.last_received_at;
            if catalog
                .call(move |s| s.mark_stable(&uid, at, check, now))
                .await?
            {
                tracing::debug!(study_uid = %study.study_uid, "study stable");
            }
        }
        if !full {
            break;
        }
    }
    Ok(())
}

/// Asks each queued study's sender what it holds.
async fn check_completeness(
    settings: &Settings,
    reader: &Catalog,
    catalog: &Catalog,
    shutdown: &CancellationToken,
) {
    let due = match reader.call(|s| s.completeness_due(BATCH)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the studies to check");
            return;
        }
    };
    for study in due {
        if shutdown.is_cancelled() {
            return;
        }
        let result = match settings.queryable(&study.calling_ae) {
            None => Completeness::Unknown {
                why: format!("{} is not configured for query/retrieve", study.calling_ae),
            },
            Some(peer) => judge(
                crate::query::study_counts(&settings.our_ae, &peer, &study.study_uid).await,
                study.instances,
                &peer.ae_title,
            ),
        };
        match &result {
            Completeness::Incomplete { received, expected } => tracing::warn!(
                study_uid = %study.study_uid, source = %study.source, received, expected,
                "study incomplete: the sender holds more than arrived"
            ),
            Completeness::Unknown { why } => {
                tracing::info!(study_uid = %study.study_uid, reason = %why, "completeness unknown")
            }
            Completeness::Complete { .. } => {}
        }
        let uid = study.study_uid.clone();
        let now = Timestamp::now();
        if let Err(e) = catalog
            .call(move |s| s.record_completeness(&uid, &result, now))
            .await
        {
            tracing::warn!(study_uid = %study.study_uid, error = %e, "cannot record completeness");
        }
    }
}

/// Compares what the sender said with what we hold.
fn judge(
    answer: Result<Option<crate::query::StudyCounts>, crate::scu::Error>,
    received: u64,
    peer: &str,
) -> Completeness {
    let counts = match answer {
        Err(e) => {
            return Completeness::Unknown {
                why: format!("C-FIND to {peer} failed: {e}"),
            };
        }
        Ok(None) => {
            return Completeness::Unknown {
                why: format!("{peer} does not know the study"),
            };
        }
        Ok(Some(c)) => c,
    };
    // The study level's count, or failing that the sum of the series'.
    let expected = counts.study_instances.map(u64::from).or_else(|| {
        counts
            .series
            .iter()
            .map(|(_, n)| n.map(u64::from))
            .sum::<Option<u64>>()
    });
    match expected {
        None => Completeness::Unknown {
            why: format!("{peer} did not say how many instances it holds"),
        },
        Some(expected) if received >= expected => Completeness::Complete {
            instances: expected,
        },
        Some(expected) => Completeness::Incomplete { received, expected },
    }
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(jiff::SignedDuration::try_from(d).unwrap_or_default())
        .unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::StudyCounts;

    fn counts(study: Option<u32>, series: &[Option<u32>]) -> StudyCounts {
        StudyCounts {
            study_instances: study,
            series: series
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("1.2.{i}"), *n))
                .collect(),
        }
    }

    #[test]
    fn the_senders_count_decides() {
        assert_eq!(
            judge(Ok(Some(counts(Some(3), &[]))), 3, "P"),
            Completeness::Complete { instances: 3 }
        );
        assert_eq!(
            judge(Ok(Some(counts(Some(3), &[]))), 2, "P"),
            Completeness::Incomplete {
                received: 2,
                expected: 3
            }
        );
        // No study-level count: the series' counts add up.
        assert_eq!(
            judge(Ok(Some(counts(None, &[Some(2), Some(2)]))), 3, "P"),
            Completeness::Incomplete {
                received: 3,
                expected: 4
            }
        );
        assert!(matches!(
            judge(Ok(Some(counts(None, &[Some(2), None]))), 3, "P"),
            Completeness::Unknown { .. }
        ));
        assert!(matches!(
            judge(Ok(None), 3, "P"),
            Completeness::Unknown { .. }
        ));
    }
}
