//! `/metrics` (Prometheus), `/healthz` (the process answers) and `/readyz`
//! (it can do its job: catalog and storage writable, storage above its
//! floor, every listener up, the watchdog scheduler running).
//!
//! The counters and histograms are updated where things happen (ingest,
//! associations, HL7, notifications); the backlog, alarm and outbox gauges
//! are read from the catalog at each scrape, so they are right even for
//! changes another process (the CLI) made.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::{ApiError, AppState};

/// How long a readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the catalog's study and instance totals are reused between
/// scrapes: counting them scans an index.
const TOTALS_MAX_AGE: Duration = Duration::from_secs(60);

/// At most this many newly reported studies are added to the turnaround
/// histogram per scrape; the rest wait for the next one.
const TURNAROUND_BATCH: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = state.now();
    let after = *state
        .turnaround_after
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let cached = *state.totals.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = cached.filter(|(at, _)| at.elapsed() < TOTALS_MAX_AGE);
    // The file-system figures are read on the same blocking thread as the
    // catalog's, never on a tokio worker.
    let catalog_path = state.config.catalog.path.clone();
    let storage_path = state.config.storage.path.clone();
    let (figures, (reported, next), totals, catalog_bytes, capacity) = state
        .readers
        .read(move |store| {
            let totals = match fresh {
                Some((_, t)) => t,
                None => store.totals()?,
            };
            let mut wal = catalog_path.clone().into_os_string();
            wal.push("-wal");
            let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
            Ok((
                store.figures(now)?,
                store.newly_reported(after, TURNAROUND_BATCH)?,
                totals,
                size(&catalog_path) + size(std::path::Path::new(&wal)),
                crate::storage::capacity(&storage_path).ok(),
            ))
        })
        .await?;
    if fresh.is_none() {
        *state.totals.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), totals));
    }
    let m = &state.metrics;
    m.set_figures(&figures);
    m.catalog_studies
        .set(i64::try_from(totals.0).unwrap_or(i64::MAX));
    m.catalog_instances
        .set(i64::try_from(totals.1).unwrap_or(i64::MAX));
    {
        // Two scrapes at once must not count the same study twice: only the
        // one that moves the watermark from where both started counts.
        let mut watermark = state
            .turnaround_after
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *watermark == after {
            for (received, reported_at) in &reported {
                let took = reported_at.duration_since(*received).as_secs_f64();
                m.report_turnaround.observe(took.max(0.0));
            }
            *watermark = next;
        }
    }
    m.catalog_size
        .set(i64::try_from(catalog_bytes).unwrap_or(i64::MAX));
    if let Some((free, fs_size)) = capacity {
        m.storage_free.set(i64::try_from(free).unwrap_or(i64::MAX));
        m.storage_size
            .set(i64::try_from(fs_size).unwrap_or(i64::MAX));
    }
    m.catalog_queue_depth
        .set(i64::try_from(state.catalog.queue_depth()).unwrap_or(i64::MAX));
    m.watchdog_last_run
        .set(state.watchdog.last_run().as_second());
    m.watchdog_last_evaluation.set(
        state
            .watchdog
            .last_evaluation()
            .map_or(0, |t| t.as_second()),
    );
    let mut response = m.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One readiness check and what it found.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    checks: Vec<Check>,
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let catalog = {
        let handle = state.catalog.clone();
        let result =
            tokio::time::timeout(CHECK_TIMEOUT, handle.call(|store| store.check_writable())).await;
        match result {
            Ok(Ok(())) => check("catalog", true, "writable"),
            Ok(Err(e)) => check("catalog", false, format!("cannot start a write: {e}")),
            Err(_) => check("catalog", false, "no answer within 3 s"),
        }
    };
    let root = state.config.storage.path.clone();
    let floor = state.config.storage.min_free_bytes;
    let probe = tokio::time::timeout(
        CHECK_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            (
                crate::storage::probe_writable(&root),
                crate::storage::free_bytes(&root),
            )
        }),
    )
    .await;
    let (storage, space) = match probe {
        Ok(Ok((written, free))) => (
            match written {
                Ok(()) => check("storage", true, "writable"),
                Err(e) => check("storage", false, format!("cannot write: {e}")),
            },
            match free {
                Ok(free) if free >= floor => check(
                    "storage_space",
                    true,
                    format!("{free} bytes free, floor {floor}"),
                ),
                Ok(free) => check(
                    "storage_space",
                    false,
                    format!("{free} bytes free, below the floor of {floor}"),
                ),
                Err(e) => check("storage_space", false, format!("cannot read: {e}")),
            },
        ),
        _ => (
            check("storage", false, "no answer within 3 s"),
            check("storage_space", false, "not checked"),
        ),
    };
    let l = &state.listeners;
    let down: Vec<&str> = [("dicom", &l.dicom), ("hl7", &l.hl7), ("http", &l.http)]
        .into_iter()
        .filter(|(_, up)| !up.load(Ordering::Relaxed))
        .map(|(name, _)| name)
        .collect();
    let listeners = if down.is_empty() {
        check("listeners", true, "dicom, hl7 and http accepting")
    } else {
        check(
            "listeners",
            false,
            format!("not accepting: {}", down.join(", ")),
        )
    };
    let watchdog = match state.watchdog.problem(state.now()) {
        None => check("watchdog", true, "the scheduler runs and evaluates"),
        Some(problem) => check("watchdog", false, problem),
    };
    let checks = vec![catalog, storage, space, listeners, watchdog];
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks }))
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}
