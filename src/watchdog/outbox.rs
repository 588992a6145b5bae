//! Delivers the outbox: every pending notification, at least once.
//!
//! A failed attempt is retried with exponential backoff (`notify.retry_initial`
//! doubling up to `notify.retry_max`). A permanent failure (a relay's 5xx, a
//! webhook's 4xx), or one still failing `notify.give_up_after` after it was
//! queued, is given up: the row becomes `failed` and the audit log says
//! `notify_failed`, which the dashboard and `alarms` show. Nothing is held
//! only in memory: a restart resumes from the table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::WallClock;
use crate::catalog::{Catalog, OutboxRow};
use crate::config;
use crate::metrics::Metrics;
use crate::notify::{Channel, Notification};

/// Notifications attempted per pass.
const BATCH: usize = 32;

/// The outbox sender.
pub struct Sender {
    catalog: Catalog,
    channels: HashMap<String, Channel>,
    settings: config::Notify,
    metrics: Arc<Metrics>,
}

impl Sender {
    pub fn new(
        catalog: Catalog,
        channels: Vec<Channel>,
        settings: config::Notify,
        metrics: Arc<Metrics>,
    ) -> Sender {
        Sender {
            catalog,
            channels: channels
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect(),
            settings,
            metrics,
        }
    }

    /// Attempts what is due; returns when the next attempt is due.
    pub async fn pass(&self, now: Timestamp) -> anyhow::Result<Option<Timestamp>> {
        let due = self.catalog.call(move |s| s.outbox_due(now, BATCH)).await?;
        let full = due.len() == BATCH;
        for row in due {
            self.attempt(row, now).await?;
        }
        if full {
            return Ok(Some(now));
        }
        Ok(self.catalog.call(|s| s.outbox_next_attempt()).await?)
    }

    async fn attempt(&self, row: OutboxRow, now: Timestamp) -> anyhow::Result<()> {
        let result = match self.channels.get(&row.channel) {
            None => Err((
                false,
                format!("no channel named `{}` is configured", row.channel),
            )),
            Some(channel) => match serde_json::from_str::<Notification>(&row.payload) {
                Err(e) => Err((false, format!("unreadable notification: {e}"))),
                Ok(mut n) => {
                    n.id = row.id;
                    n.channel = row.channel.clone();
                    match channel.deliver(&n).await {
                        Ok(d) => Ok(d.detail),
                        Err(e) => Err((e.retryable, e.message)),
                    }
                }
            },
        };
        let id = row.id;
        match result {
            Ok(detail) => {
                self.metrics.notification("sent");
                tracing::info!(notification = id, channel = %row.channel, "notification sent");
                self.catalog
                    .call(move |s| s.record_attempt(id, Ok(&detail), None, now))
                    .await?;
            }
            Err((retryable, error)) => {
                let age = now.duration_since(row.created_at);
                let give_up = !retryable
                    || Duration::try_from(age).unwrap_or_default() >= self.settings.give_up_after;
                let next = (!give_up).then(|| {
                    let wait = self.settings.backoff(row.attempts + 1);
                    now.checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
                        .unwrap_or(Timestamp::MAX)
                });
                if give_up {
                    self.metrics.notification("failed");
                    tracing::error!(notification = id, channel = %row.channel, %error,
                        "notification given up: it stays visible as notify_failed");
                } else {
                    self.metrics.notification("retry");
                    tracing::warn!(notification = id, channel = %row.channel, %error,
                        "notification failed; will retry");
                }
                self.catalog
                    .call(move |s| s.record_attempt(id, Err(&error), next, now))
                    .await?;
            }
        }
        Ok(())
    }
}

/// Runs the sender until `shutdown`, woken early when notifications are queued.
pub async fn run<C: WallClock>(
    sender: Arc<Sender>,
    clock: C,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let now = clock.now();
        let next = match sender.pass(now).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "outbox pass failed; retrying");
                Some(now + jiff::SignedDuration::from_secs(5))
            }
        };
        let sleep = next
            .map(|t| Duration::try_from(t.duration_since(clock.now())).unwrap_or(Duration::ZERO))
            .unwrap_or(super::POLL)
            .min(super::POLL);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
