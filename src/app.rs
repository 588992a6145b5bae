//! The one place where the subsystems are wired together: `serve` opens the
//! storage and the catalog, starts every listener on already-bound sockets,
//! tells systemd it is ready, and on shutdown lets in-flight DIMSE messages
//! finish within the grace period.
//!
//! Taking bound listeners and a cancellation token (rather than binding and
//! installing signal handlers here) is what lets a test run the real
//! gateway in-process on port 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::{Catalog, LinkPolicy, Store};
use crate::config::Config;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::reports::{self, Intake};
use crate::scp::{Scp, Settings};
use crate::storage::Storage;
use crate::watchdog::calendar::{Calendar, Clock};
use crate::watchdog::tick::{CatalogBackend, Settings as TickSettings};
use crate::watchdog::{self, SystemClock, outbox};

/// The sockets `serve` listens on, bound before anything else starts.
pub struct Listeners {
    pub dicom: TcpListener,
    pub hl7: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let dicom = TcpListener::bind(config.dicom.listen)
            .await
            .with_context(|| format!("cannot listen for DICOM on {}", config.dicom.listen))?;
        let hl7 = TcpListener::bind(config.reports.hl7.listen)
            .await
            .with_context(|| format!("cannot listen for HL7 on {}", config.reports.hl7.listen))?;
        let http = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
        Ok(Listeners { dicom, hl7, http })
    }
}

/// Runs the gateway until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!(key = %warning.key, "{}", warning.message);
    }
    let storage_cfg = config.storage.clone();
    let storage = tokio::task::spawn_blocking(move || {
        Storage::open(
            &storage_cfg.path,
            storage_cfg.fsync,
            storage_cfg.min_free_bytes,
        )
    })
    .await?
    .with_context(|| format!("cannot open storage at {}", config.storage.path.display()))?;
    let (catalog_path, durable) = (config.catalog.path.clone(), config.storage.fsync);
    let policy = link_policy(&config);
    let catalog = tokio::task::spawn_blocking(move || {
        let mut store = Store::open(&catalog_path, durable)?;
        store.set_link_policy(policy);
        // The rules may have changed since the last run: every study still
        // waiting for a report gets its deadline computed again.
        store.mark_unreported_stale()?;
        Catalog::spawn(store)
    })
    .await?
    .with_context(|| {
        format!(
            "cannot open the catalog at {}",
            config.catalog.path.display()
        )
    })?;
    let metrics = Metrics::new();
    let sr_policy = crate::ingest::sr::Policy {
        pdf_is_final: config.reports.dicom.pdf_is_final,
        alerts: config.reports.alerts.clone(),
        timezone: config.site.timezone.clone(),
    };
    let ingest = Ingest::new(
        storage,
        catalog.clone(),
        Arc::clone(&metrics),
        sr_policy,
        rule_attributes(&config),
        config.forward.clone(),
        config.watchdog.clock_skew_after,
    );
    let commitments =
        crate::commit::Commitments::new(&config, catalog.clone(), Arc::clone(&metrics));
    let scp = Scp::new(
        Settings::from_config(&config),
        ingest,
        Arc::clone(&commitments),
        Arc::clone(&metrics),
    );

    let intake = Intake::new(&config, catalog.clone(), Arc::clone(&metrics));

    let clock = watchdog_clock(&config)?;
    if let Some(warning) = clock.data_warning(jiff::Timestamp::now()) {
        tracing::warn!("watchdog calendar: {warning}");
    }
    let channels = crate::notify::Channel::all_from_config(&config.notify).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!(
            "notification channels cannot be set up:\n  {}",
            lines.join("\n  ")
        )
    })?;
    let mut tick_settings = TickSettings::from_config(&config, clock, jiff::Timestamp::now());
    let storage_root = config.storage.path.clone();
    tick_settings.storage_free = Some(crate::watchdog::tick::FreeSpace(Arc::new(move || {
        crate::storage::free_bytes(&storage_root).ok()
    })));
    let backend = Arc::new(CatalogBackend::new(catalog.quiet(), tick_settings));
    let sender = Arc::new(outbox::Sender::new(
        catalog.quiet(),
        channels,
        config.notify.clone(),
        Arc::clone(&metrics),
    ));

    // Reading the users and tokens files and the catalog's newest link id
    // block, so they happen off the tokio workers, like opening the catalog.
    let web = {
        let (config, catalog, metrics) = (
            Arc::new(config.clone()),
            catalog.clone(),
            Arc::clone(&metrics),
        );
        tokio::task::spawn_blocking(move || {
            let auth = crate::http::auth::Auth::load(&config.http)
                .map_err(|e| anyhow::anyhow!("cannot set up HTTP sign-in: {e}"))?;
            anyhow::Ok(crate::http::AppState::new(
                config,
                catalog,
                metrics,
                auth,
                Arc::new(jiff::Timestamp::now),
            ))
        })
        .await??
    };

    let tracker = TaskTracker::new();
    let dicom_addr = listeners.dicom.local_addr()?;
    let hl7_addr = listeners.hl7.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    tracker.spawn(Arc::clone(&scp).run(listeners.dicom, shutdown.clone(), tracker.clone()));
    tracker.spawn(reports::run(
        intake,
        listeners.hl7,
        shutdown.clone(),
        tracker.clone(),
    ));
    tracker.spawn(crate::http::run(
        web.clone(),
        listeners.http,
        shutdown.clone(),
    ));
    web.listeners
        .dicom
        .store(true, std::sync::atomic::Ordering::Relaxed);
    web.listeners
        .hl7
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracker.spawn(watchdog::run(
        backend,
        SystemClock,
        catalog.changes(),
        Arc::clone(&web.watchdog),
        shutdown.clone(),
    ));
    crate::forward::spawn_all(&config, &catalog, &metrics, &tracker, &shutdown);
    tracker.spawn(Arc::clone(&commitments).run_reporter(shutdown.clone()));
    for d in config
        .forward
        .destinations
        .iter()
        .filter(|d| d.storage_commitment)
    {
        tracker.spawn(Arc::clone(&commitments).run_requester(d.clone(), shutdown.clone()));
    }
    tracker.spawn(crate::stability::run(
        crate::stability::Settings::from_config(&config),
        catalog.clone(),
        shutdown.clone(),
    ));
    if !config.forward.destinations.is_empty() {
        tracker.spawn(crate::retention::run(
            catalog.quiet(),
            config.storage.path.clone(),
            config.storage.retain_for,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    tracker.spawn(outbox::run(
        sender,
        SystemClock,
        Arc::new(tokio::sync::Notify::new()),
        shutdown.clone(),
    ));
    tracing::info!(
        listen = %dicom_addr,
        hl7 = %hl7_addr,
        http = %http_addr,
        ae_title = %config.dicom.ae_title,
        storage = %config.storage.path.display(),
        fsync = config.storage.fsync,
        "studywatch ready"
    );
    notify_systemd_ready(&shutdown, Arc::clone(&web.watchdog));

    shutdown.cancelled().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!(grace = ?config.server.shutdown_grace, "shutting down: letting in-flight messages finish");
    tracker.close();
    if tokio::time::timeout(config.server.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over with associations still open; exiting");
    }
    // Give the catalog thread its queued commits before leaving.
    tokio::task::spawn_blocking(move || catalog.shutdown())
        .await
        .ok();
    tracing::info!("stopped");
    Ok(())
}

/// The DICOM attributes the watchdog rules match on, as tags (the config
/// has checked every keyword against the dictionary).
fn rule_attributes(config: &Config) -> Vec<(dicom_core::Tag, String)> {
    use dicom_core::dictionary::DataDictionary;
    let mut out: Vec<(dicom_core::Tag, String)> = Vec::new();
    for rule in &config.watchdog.rules {
        for keyword in rule.matcher.attributes.keys() {
            if let Some(entry) = dicom_dictionary_std::StandardDataDictionary.by_name(keyword) {
                let tag = entry.tag.inner();
                if !out.iter().any(|(t, _)| *t == tag) {
                    out.push((tag, keyword.clone()));
                }
            }
        }
    }
    out
}

/// The watchdog's clock: the site's zone, working hours and bank holidays
/// (read from the calendar file named in the config).
pub fn watchdog_clock(config: &Config) -> anyhow::Result<Clock> {
    let calendar = match &config.watchdog.calendar {
        Some(path) => Calendar::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Calendar::empty(),
    };
    Ok(Clock {
        tz: config.site.timezone.clone(),
        hours: config.watchdog.working_hours.clone(),
        calendar,
    })
}

/// What the catalog may link by itself, from `[reports.linking]`.
pub fn link_policy(config: &Config) -> LinkPolicy {
    LinkPolicy {
        probable: config.reports.linking.probable,
        probable_window: config.reports.linking.probable_window,
        report_before_study: config.reports.linking.report_before_study,
        timezone: config.site.timezone.clone(),
    }
}

/// Tells systemd (Type=notify) that the listeners are bound, and pets its
/// watchdog at half the configured interval while the process runs and its
/// own watchdog scheduler comes round its loop. A scheduler that is stuck
/// stops the pings, so systemd restarts the process rather than leave
/// studies unwatched while everything else answers.
fn notify_systemd_ready(shutdown: &CancellationToken, scheduler: Arc<watchdog::Liveness>) {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::debug!(error = %e, "not under systemd notify");
    }
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let period = (interval / 2).max(Duration::from_millis(100));
        let token = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {
                        let now = jiff::Timestamp::now();
                        let stuck = now.duration_since(scheduler.last_run())
                            >= jiff::SignedDuration::try_from(watchdog::STUCK_AFTER)
                                .unwrap_or_default();
                        if stuck {
                            tracing::error!(
                                "the watchdog scheduler is stuck: systemd watchdog pings stop"
                            );
                        } else {
                            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                        }
                    }
                }
            }
        });
    }
}
