//! The HTTP side of the gateway: the reporting lead's dashboard, the JSON API
//! under `/api/`, `/metrics`, `/healthz` and `/readyz`.
//!
//! [`router`] builds the whole application from an [`AppState`], so tests
//! drive it with `tower::ServiceExt::oneshot` and no socket; [`run`] serves it
//! on a bound listener until shutdown.
//!
//! - [`api`] — the JSON API (shapes from [`crate::json`], shared with the CLI).
//! - [`auth`] — users, sessions, CSRF, bearer tokens, sign-in rate limits.
//! - [`dashboard`] — server-rendered HTML pages and the backlog chart.
//! - [`health`] — `/metrics`, `/healthz`, `/readyz`.
//! - [`error`] — errors as JSON with the right status code.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{HeaderValue, header};
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Readers};
use crate::config::Config;
use crate::metrics::Metrics;

pub use error::ApiError;

/// The time as the HTTP layer sees it; tests pin it.
pub type Now = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Everything a request handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Arc<Config>,
    /// Writes go through the catalog thread, ordered with ingest's.
    pub catalog: Catalog,
    /// Reads use their own connections and never wait for a commit.
    pub readers: Readers,
    pub metrics: Arc<Metrics>,
    pub auth: auth::Auth,
    pub now: Now,
    /// Whether each listener is accepting, for `/readyz`.
    pub listeners: Listening,
    /// Whether the watchdog scheduler runs and evaluates, for `/readyz`
    /// and `/metrics` (the server's scheduler reports to it).
    pub watchdog: Arc<crate::watchdog::Liveness>,
    /// Report links after this id are yet to be counted in the turnaround
    /// histogram (the newest link when the process started).
    pub turnaround_after: std::sync::Mutex<i64>,
    /// The catalog's `(studies, instances)` totals and when they were read.
    pub totals: std::sync::Mutex<Option<(std::time::Instant, (u64, u64))>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The state for the router. `now` is the wall clock in production.
    pub fn new(
        config: Arc<Config>,
        catalog: Catalog,
        metrics: Arc<Metrics>,
        auth: auth::Auth,
        now: Now,
    ) -> AppState {
        let readers = Readers::new(&config.catalog.path);
        // Once, at start: the newest link so far; a catalog that cannot be
        // read here fails the first scrape loudly anyway.
        let after = crate::catalog::Store::open_reader(&config.catalog.path)
            .and_then(|s| s.last_link_id())
            .unwrap_or(0);
        let watchdog = Arc::new(crate::watchdog::Liveness::new(now()));
        AppState(Arc::new(Inner {
            config,
            catalog,
            readers,
            metrics,
            auth,
            now,
            listeners: Listening::default(),
            watchdog,
            turnaround_after: std::sync::Mutex::new(after),
            totals: std::sync::Mutex::new(None),
        }))
    }

    /// The current time (pinned in tests).
    pub fn now(&self) -> Timestamp {
        (self.now)()
    }
}

/// Flags the listeners raise once they accept connections.
#[derive(Debug, Default)]
pub struct Listening {
    pub dicom: AtomicBool,
    pub hl7: AtomicBool,
    pub http: AtomicBool,
}

impl Listening {
    pub fn all_up(&self) -> bool {
        [&self.dicom, &self.hl7, &self.http]
            .iter()
            .all(|f| f.load(Ordering::Relaxed))
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .merge(health::routes())
        .nest("/api", api::routes())
        .merge(auth::routes())
        .merge(dashboard::routes())
        .fallback(not_found);
    auth::guard(app, state.clone())
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// An unknown path: an HTML page for a browser, JSON for anything else.
async fn not_found(headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        dashboard::PageError::not_found("There is no such page.").into_response()
    } else {
        ApiError::not_found("no such page").into_response()
    }
}

/// Headers every response carries: nothing is framed or sniffed, and no
/// page is kept in a shared cache (they name patients' studies).
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
         script-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ));
    response
}

/// Serves `router(state)` on `listener` until `shutdown`; requests in flight
/// then get to finish.
pub async fn run(state: AppState, listener: TcpListener, shutdown: CancellationToken) {
    state.listeners.http.store(true, Ordering::Relaxed);
    let app = router(state.clone());
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await;
    state.listeners.http.store(false, Ordering::Relaxed);
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}
