//! Pruning local files once every destination has them.
//!
//! The gateway's disk is not the archive: `[storage] retain_for` after an
//! instance was received, once every destination that takes it has it
//! (sent, and committed where the destination does storage commitment),
//! its local file is removed. Never sooner, never for an instance no
//! destination takes, and with no destinations configured this task does
//! not run at all. The catalog keeps the row and the hash, and marks it
//! pruned, so `verify` and `study` say "pruned", not "missing".
//!
//! Bounded in I/O: at most [`BATCH`] files per round, a pause between
//! rounds, and the catalog read in keyset pages so no round scans more
//! than [`SCAN`] rows.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::metrics::Metrics;

/// Files removed per round at most.
pub const BATCH: usize = 200;
/// Catalog rows looked at per round at most.
pub const SCAN: usize = 2_000;
/// The pause between rounds while there is work; a full pass ends with a
/// longer one.
pub const PAUSE: Duration = Duration::from_millis(200);
pub const IDLE: Duration = Duration::from_secs(10);

/// Runs until `shutdown`.
pub async fn run(
    catalog: Catalog,
    storage_root: PathBuf,
    retain_for: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    tracing::info!(retain_for = ?retain_for, "pruning local files delivered to every destination");
    let mut cursor: Option<(Timestamp, String)> = None;
    while !shutdown.is_cancelled() {
        let before = Timestamp::now()
            .checked_sub(jiff::SignedDuration::try_from(retain_for).unwrap_or_default())
            .unwrap_or(Timestamp::MIN);
        let after = cursor.clone();
        let page = catalog.call(move |s| s.prunable(before, after, SCAN)).await;
        let (candidates, next) = match page {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read what may be pruned");
                (Vec::new(), None)
            }
        };
        let mut removed = Vec::new();
        for item in candidates.into_iter().take(BATCH) {
            let path = storage_root.join(&item.rel_path);
            let result = tokio::task::spawn_blocking(move || {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(size),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                    Err(e) => Err((path, e)),
                }
            })
            .await;
            match result {
                Ok(Ok(size)) => {
                    metrics.pruned_instances.inc();
                    metrics.pruned_bytes.inc_by(size);
                    removed.push(item.sop_instance_uid);
                }
                Ok(Err((path, e))) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot prune a local file");
                }
                Err(e) => tracing::error!(error = %e, "pruning task failed"),
            }
        }
        if !removed.is_empty() {
            let count = removed.len();
            let now = Timestamp::now();
            match catalog.call(move |s| s.mark_pruned(&removed, now)).await {
                Ok(()) => tracing::info!(count, "pruned local files every destination has"),
                // The files are gone but not marked: `verify` would call them
                // missing. Say so loudly; the next pass marks them (a missing
                // file counts as pruned there).
                Err(e) => tracing::error!(error = %e, count, "pruned files not recorded"),
            }
        }
        // A full page means more rows past the cursor; otherwise start over
        // after a longer pause, since rows become prunable with time.
        let wait = if next.is_some() { PAUSE } else { IDLE };
        cursor = next;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
