#![allow(dead_code)]
//! Drives the HTTP application through its router, with no socket: a
//! catalog in a temp dir, a pinned clock, and helpers to send requests and
//! read JSON or HTML back.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use jiff::Timestamp;
use studywatch::catalog::{Catalog, Store};
use studywatch::config::Config;
use studywatch::http::{AppState, auth::Auth, router};
use studywatch::metrics::Metrics;
use tower::ServiceExt;

/// An answer: status, headers and the body as text.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct WebApp {
    pub dir: tempfile::TempDir,
    pub config: Arc<Config>,
    pub state: AppState,
    clock: Arc<Mutex<Timestamp>>,
}

impl WebApp {
    /// An app on a fresh catalog; `http_extra` goes into `[http]` (e.g.
    /// `users_file = "..."`, with `{dir}` replaced by the temp dir), and
    /// `tail` is appended as whole sections.
    pub fn new(http_extra: &str, tail: &str) -> WebApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display().to_string();
        let text = format!(
            "version = 1\n[storage]\npath = \"{d}/storage\"\nmin_free_bytes = 0\n\
             [catalog]\npath = \"{d}/catalog.sqlite3\"\n[http]\n{}\n{}\n",
            http_extra.replace("{dir}", &d),
            tail.replace("{dir}", &d),
        );
        let config = Arc::new(Config::from_toml_str(&text).expect("test config is valid"));
        std::fs::create_dir_all(dir.path().join("storage")).unwrap();
        let catalog = Catalog::open(&config.catalog.path, false).expect("catalog");
        let auth = Auth::load(&config.http).expect("auth files load");
        let clock = Arc::new(Mutex::new(
            "2026-11-23T10:00:00Z".parse::<Timestamp>().unwrap(),
        ));
        let c = Arc::clone(&clock);
        let state = AppState::new(
            Arc::clone(&config),
            catalog,
            Metrics::new(),
            auth,
            Arc::new(move || *c.lock().unwrap()),
        );
        WebApp {
            dir,
            config,
            state,
            clock,
        }
    }

    /// The pinned time every request sees.
    pub fn now(&self) -> Timestamp {
        *self.clock.lock().unwrap()
    }

    pub fn set_now(&self, t: Timestamp) {
        *self.clock.lock().unwrap() = t;
    }

    /// A second connection to the catalog, for seeding and for checking what
    /// a request wrote.
    pub fn store(&self) -> Store {
        Store::open(&self.config.catalog.path, false).expect("open catalog")
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// GET with extra headers (`("cookie", "...")`, `("authorization", ...)`).
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut b = Request::builder().method(Method::GET).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    /// POST a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Answer {
        self.post(path, "application/json", body.to_string(), headers)
            .await
    }

    /// POST an HTML form (`application/x-www-form-urlencoded`), fields in order.
    pub async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.post(path, "application/x-www-form-urlencoded", body, headers)
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", content_type);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }
}
