//! Who may write, and who is writing: users with argon2 password hashes,
//! sessions, CSRF tokens, bearer tokens, and sign-in rate limits.
//!
//! - [`files`] — the users and tokens files (also written by `studywatch user`).
//! - `sessions` — signed-in sessions, in memory: a restart signs everyone out.
//! - `limit` — failed sign-ins per (user name, client address).
//! - `login` — `GET/POST /login`, `POST /logout` and the sign-in page.
//!
//! A request names its actor in one of two ways: `Authorization: Bearer` with
//! a token from the tokens file ([`Via::Token`]), or the `studywatch_session`
//! cookie set by signing in ([`Via::Session`]). A request that presents a
//! bearer token is judged by that token alone: a wrong one is refused, never
//! taken as anonymous or as the session.
//!
//! The users and tokens files are read at start (a missing file or a bad
//! line stops `serve`), and again when they change: at most every
//! [`RELOAD_CHECK`], a sign-in or request that needs an actor looks at their
//! modification time, inode and size. A removed user's sessions end then.
//! A file that has become unreadable or malformed keeps the last good
//! version in force and is logged as an error at every check until fixed.
//!
//! **Never:** logs or audits a password, or compares a secret in a way
//! whose time depends on where it differs.

pub mod files;
mod limit;
mod login;
mod sessions;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::{ApiError, AppState};
use crate::config;

pub use files::{PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS, valid_name};

/// The session cookie's name.
pub const COOKIE: &str = "studywatch_session";
/// How often, at most, the users and tokens files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// Password checks that may run at once. Each takes ~19 MiB and a core for
/// tens of milliseconds; more at once would only queue on the two cores and
/// let a flood of sign-ins exhaust memory.
const VERIFYING_AT_ONCE: usize = 2;
/// An Argon2id hash (default parameters) of a random password nobody knows.
/// Unknown user names are checked against it, so that an answer takes as
/// long for a name that does not exist as for one that does.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$VUx1lqLLMLP+L9VbiPuIZQ$\
                          RA9py2fDGUKKZ8bMDBDl1Sa/boEfb4cTyNGmtKLVGqM";

/// Users, tokens and live sessions.
pub struct Auth {
    users_file: Option<PathBuf>,
    tokens_file: Option<PathBuf>,
    known: Mutex<Known>,
    sessions: sessions::Sessions,
    limiter: limit::Limiter,
    verifying: Semaphore,
}

/// What the files said when last read.
#[derive(Default)]
struct Known {
    users: files::Users,
    tokens: files::Tokens,
    users_stamp: Option<files::Stamp>,
    tokens_stamp: Option<files::Stamp>,
    checked: Option<Instant>,
}

impl Default for Auth {
    /// Nobody can sign in and no token is valid.
    fn default() -> Auth {
        Auth {
            users_file: None,
            tokens_file: None,
            known: Mutex::new(Known::default()),
            sessions: sessions::Sessions::default(),
            limiter: limit::Limiter::default(),
            verifying: Semaphore::new(VERIFYING_AT_ONCE),
        }
    }
}

impl std::fmt::Debug for Auth {
    // Hashes and digests stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = lock(&self.known);
        f.debug_struct("Auth")
            .field("users_file", &self.users_file)
            .field("tokens_file", &self.tokens_file)
            .field("users", &known.users.len())
            .field("tokens", &known.tokens.len())
            .finish_non_exhaustive()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single map operation).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Auth {
    /// Reads the users and tokens files named in `[http]`. A file that is
    /// named but missing, unreadable or malformed is an error that names
    /// the key, the file and the line.
    pub fn load(http: &config::Http) -> Result<Auth, String> {
        let mut known = Known {
            checked: Some(Instant::now()),
            ..Known::default()
        };
        if let Some(path) = &http.users_file {
            let (users, stamp) =
                files::read_users(path).map_err(|e| format!("http.users_file: {e}"))?;
            known.users = users;
            known.users_stamp = Some(stamp);
        }
        if let Some(path) = &http.tokens_file {
            let (tokens, stamp) =
                files::read_tokens(path).map_err(|e| format!("http.tokens_file: {e}"))?;
            known.tokens = tokens;
            known.tokens_stamp = Some(stamp);
        }
        Ok(Auth {
            users_file: http.users_file.clone(),
            tokens_file: http.tokens_file.clone(),
            known: Mutex::new(known),
            ..Auth::default()
        })
    }

    /// Whether the files are due for a look (and, if so, marks them looked
    /// at, so that concurrent requests do not all read them).
    fn reload_due(&self) -> bool {
        if self.users_file.is_none() && self.tokens_file.is_none() {
            return false;
        }
        let mut known = lock(&self.known);
        let now = Instant::now();
        match known.checked {
            Some(at) if now.duration_since(at) < RELOAD_CHECK => false,
            _ => {
                known.checked = Some(now);
                true
            }
        }
    }

    /// Rereads whichever file changed since it was last read. Blocking.
    fn reload_if_changed(&self) {
        if let Some(path) = &self.users_file {
            let seen = lock(&self.known).users_stamp;
            if files::Stamp::read(path).ok() != seen {
                match files::read_users(path) {
                    Ok((users, stamp)) => {
                        tracing::info!(file = %path.display(), users = users.len(), "users file reread");
                        self.sessions.retain_users(|u| users.contains_key(u));
                        let mut known = lock(&self.known);
                        known.users = users;
                        known.users_stamp = Some(stamp);
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "the users file cannot be used; the version read before stays in force"
                    ),
                }
            }
        }
        if let Some(path) = &self.tokens_file {
            let seen = lock(&self.known).tokens_stamp;
            if files::Stamp::read(path).ok() != seen {
                match files::read_tokens(path) {
                    Ok((tokens, stamp)) => {
                        tracing::info!(file = %path.display(), tokens = tokens.len(), "tokens file reread");
                        let mut known = lock(&self.known);
                        known.tokens = tokens;
                        known.tokens_stamp = Some(stamp);
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "the tokens file cannot be used; the version read before stays in force"
                    ),
                }
            }
        }
    }

    /// The name a bearer token belongs to. Every stored digest is compared,
    /// in constant time, whichever matches.
    fn token_owner(&self, token: &str) -> Option<String> {
        let digest = files::token_digest(token);
        let known = lock(&self.known);
        let mut owner = None;
        for (name, stored) in &known.tokens {
            if bool::from(stored.ct_eq(&digest)) {
                owner = Some(name.clone());
            }
        }
        owner
    }

    fn user_exists(&self, name: &str) -> bool {
        lock(&self.known).users.contains_key(name)
    }
}

/// Rereads the users and tokens files if they are due for a look and have
/// changed; the reading happens on a blocking thread.
async fn refresh(state: &AppState) {
    if !state.auth.reload_due() {
        return;
    }
    let state = state.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || state.auth.reload_if_changed()).await {
        tracing::error!(error = %e, "rereading the users and tokens files failed");
    }
}

/// How a sign-in attempt came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Match,
    UnknownUser,
    WrongPassword,
}

/// Checks a password on a blocking thread, at most [`VERIFYING_AT_ONCE`] at
/// a time. An unknown user costs the same work as a known one.
async fn check_password(state: &AppState, user: &str, password: String) -> Verdict {
    refresh(state).await;
    let stored = lock(&state.auth.known).users.get(user).cloned();
    let known = stored.is_some();
    let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
    let Ok(_permit) = state.auth.verifying.acquire().await else {
        return Verdict::WrongPassword;
    };
    let matches = tokio::task::spawn_blocking(move || files::verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    match (known, matches) {
        (true, true) => Verdict::Match,
        (false, _) => Verdict::UnknownUser,
        (true, false) => Verdict::WrongPassword,
    }
}

/// How an [`Actor`] proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A session cookie from signing in on the dashboard.
    Session,
    /// `Authorization: Bearer ...` with a token from the tokens file.
    Token,
}

/// The person (or system, for a token) making a write; what the audit log
/// records. Extracting it fails with 401 when nobody is signed in, and with
/// 403 when a session's request comes from another site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub via: Via,
    /// The session's CSRF token (sessions only).
    pub csrf: Option<String>,
}

impl Actor {
    /// A write by session must carry the session's CSRF token (a form's
    /// `csrf` field, or the API's `X-CSRF-Token` header); tokens need none.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), ApiError> {
        match (self.via, &self.csrf, submitted) {
            (Via::Token, _, _) => Ok(()),
            (Via::Session, Some(expected), Some(given))
                if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) =>
            {
                Ok(())
            }
            (Via::Session, _, None) => Err(ApiError::forbidden(
                "the request carries no CSRF token (form field `csrf` or header X-CSRF-Token); \
                 reload the page and try again",
            )),
            (Via::Session, _, Some(_)) => Err(ApiError::forbidden(
                "the CSRF token does not match this session; reload the page and try again",
            )),
        }
    }
}

/// The `studywatch_session` cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

/// `Some(token)` for `Authorization: Bearer TOKEN`; `Some("")` for any other
/// Authorization header (which no token matches).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?;
    let text = value.to_str().unwrap_or("");
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text, ""));
    Some(if scheme.eq_ignore_ascii_case("bearer") {
        token.trim()
    } else {
        ""
    })
}

/// Why a request that changes something is not from our own pages, if it
/// is not. Browsers send `Sec-Fetch-Site`; older ones only `Origin`, which
/// must then name the host the request was sent to. Requests from scripts
/// carry neither and are judged by their credentials alone.
fn cross_site(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            _ => Some("the request was sent from another site"),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let same = match (origin.to_str(), host) {
        (Ok(origin), Some(host)) => origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host)),
        _ => false,
    };
    (!same).then_some("the request's Origin is not this server")
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Who the request is from: a bearer token (a wrong one is an error), or a
/// live session, or nobody. A session's request that changes something
/// must come from our own pages.
async fn identify(parts: &Parts, state: &AppState) -> Result<Option<Actor>, ApiError> {
    if let Some(token) = bearer(&parts.headers) {
        refresh(state).await;
        return match state.auth.token_owner(token) {
            Some(name) => Ok(Some(Actor {
                name,
                via: Via::Token,
                csrf: None,
            })),
            None => Err(ApiError::unauthorized(
                "the bearer token is not valid (send Authorization: Bearer TOKEN with a token \
                 from `studywatch user token NAME`)",
            )),
        };
    }
    let Some(id) = session_cookie(&parts.headers) else {
        return Ok(None);
    };
    refresh(state).await;
    let ttl = state.config.http.session_ttl;
    let Some(session) = state.auth.sessions.touch(id, state.now(), ttl) else {
        return Ok(None);
    };
    if !state.auth.user_exists(&session.user) {
        state.auth.sessions.end(id);
        return Ok(None);
    }
    if !is_safe(&parts.method) {
        if let Some(why) = cross_site(&parts.headers, &parts.uri) {
            return Err(ApiError::forbidden(why));
        }
    }
    Ok(Some(Actor {
        name: session.user,
        via: Via::Session,
        csrf: Some(session.csrf),
    }))
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Actor, ApiError> {
        identify(parts, state).await?.ok_or_else(|| {
            ApiError::unauthorized("sign in, or send Authorization: Bearer with an API token")
        })
    }
}

/// `Option<Actor>`: `None` when nobody is signed in (so a dashboard form can
/// send the browser to `/login`), but still an error for a wrong bearer
/// token or a cross-site request.
impl OptionalFromRequestParts<AppState> for Actor {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Actor>, ApiError> {
        identify(parts, state).await
    }
}

/// Who is looking at a page: the signed-in user, if any, with the CSRF token
/// the page's forms must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    pub user: Option<String>,
    pub csrf: Option<String>,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Viewer, std::convert::Infallible> {
        Ok(match identify(parts, state).await {
            Ok(Some(actor)) => Viewer {
                user: Some(actor.name),
                csrf: actor.csrf,
            },
            _ => Viewer::default(),
        })
    }
}

/// `/login` and `/logout`.
pub fn routes() -> Router<AppState> {
    login::routes()
}

/// Applies `[http] read_requires_sign_in` to every route but sign-in itself,
/// the stylesheet and scripts, and the probes: a page request (one that
/// accepts text/html) without a session goes to `/login`, anything else gets
/// 401. With the setting off, everything passes; writes still need an
/// [`Actor`].
pub fn guard(app: Router<AppState>, state: AppState) -> Router<AppState> {
    if !state.config.http.read_requires_sign_in {
        return app;
    }
    app.layer(axum::middleware::from_fn_with_state(state, require_sign_in))
}

fn open_without_sign_in(path: &str) -> bool {
    matches!(path, "/login" | "/healthz" | "/readyz" | "/metrics") || path.starts_with("/static/")
}

async fn require_sign_in(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if open_without_sign_in(request.uri().path()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match identify(&parts, &state).await {
        Ok(Some(_)) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => e.into_response(),
        Ok(None) if wants_html(&parts.headers) => {
            // Back to the same page after signing in, if it was a page.
            let back = if is_safe(&parts.method) {
                parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned()
            } else {
                "/".to_owned()
            };
            let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
            Redirect::to(&format!("/login?next={next}")).into_response()
        }
        Ok(None) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign in, or send Authorization: Bearer with an API token",
        )
        .into_response(),
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Uri};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let parsed = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        let params = argon2::Params::try_from(&parsed).unwrap();
        let default = argon2::Params::default();
        assert_eq!(parsed.algorithm, argon2::Algorithm::Argon2id.ident());
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        assert!(!files::verify_password(DUMMY_HASH, ""));
    }

    fn http(dir: &std::path::Path) -> config::Http {
        let text = format!(
            "version = 1\n[http]\nusers_file = \"{0}/users\"\ntokens_file = \"{0}/tokens\"",
            dir.display()
        );
        crate::config::Config::from_toml_str(&text).unwrap().http
    }

    #[test]
    fn load_reads_both_files_and_names_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let token = files::new_token().unwrap();
        let digest = hex::encode(files::token_digest(&token));
        std::fs::write(dir.path().join("users"), format!("alice:{DUMMY_HASH}\n")).unwrap();
        std::fs::write(dir.path().join("tokens"), format!("# bots\nris:{digest}\n")).unwrap();
        let auth = Auth::load(&http(dir.path())).unwrap();
        assert!(auth.user_exists("alice") && !auth.user_exists("bob"));
        assert_eq!(auth.token_owner(&token).as_deref(), Some("ris"));
        assert_eq!(
            auth.token_owner(&digest),
            None,
            "the digest is not the token"
        );
        assert_eq!(auth.token_owner(""), None);
        assert!(!format!("{auth:?}").contains(&digest));

        std::fs::write(dir.path().join("tokens"), "ris:xyz\n").unwrap();
        let e = Auth::load(&http(dir.path())).unwrap_err();
        assert!(
            e.starts_with("http.tokens_file: ") && e.contains("line 1"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("users")).unwrap();
        let e = Auth::load(&http(dir.path())).unwrap_err();
        assert!(e.starts_with("http.users_file: "), "{e}");
    }

    #[test]
    fn changed_files_are_reread_and_broken_ones_keep_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        std::fs::write(&users, format!("alice:{DUMMY_HASH}\n")).unwrap();
        std::fs::write(dir.path().join("tokens"), "").unwrap();
        let auth = Auth::load(&http(dir.path())).unwrap();
        let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let ttl = Duration::from_secs(3600);
        let (alice, _) = auth.sessions.start("alice", now, ttl).unwrap();

        files::set_line(&users, "bob", Some(DUMMY_HASH)).unwrap();
        auth.reload_if_changed();
        assert!(auth.user_exists("bob"));

        std::fs::write(&users, "bob:not-a-hash\n").unwrap();
        auth.reload_if_changed();
        assert!(auth.user_exists("alice") && auth.user_exists("bob"));
        assert!(auth.sessions.touch(&alice, now, ttl).is_some());

        files::set_line(&users, "bob", Some(DUMMY_HASH)).unwrap();
        auth.reload_if_changed();
        assert!(!auth.user_exists("alice"), "alice was removed");
        assert!(
            auth.sessions.touch(&alice, now, ttl).is_none(),
            "and her sessions ended"
        );
    }

    #[test]
    fn the_files_are_looked_at_at_most_every_few_seconds() {
        let auth = Auth {
            users_file: Some(PathBuf::from("/nonexistent")),
            ..Auth::default()
        };
        assert!(auth.reload_due(), "never looked at");
        assert!(!auth.reload_due(), "just looked at");
        assert!(
            !Auth::default().reload_due(),
            "no files, nothing to look at"
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[
            ("cookie", "theme=dark; studywatch_session=abc123 ; x=1"),
            ("cookie", "other=2"),
        ]);
        assert_eq!(session_cookie(&h), Some("abc123"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "studywatch_sessionx=1")])),
            None
        );
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn only_bearer_authorization_can_match_a_token() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "Basic YTpi")])),
            Some("")
        );
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let uri = Uri::from_static("/logout");
        let same = [
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[("sec-fetch-site", "none")]),
            headers(&[
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080"),
            ]),
            headers(&[("origin", "https://GW.example"), ("host", "gw.example")]),
            headers(&[]),
        ];
        for h in same {
            assert_eq!(cross_site(&h, &uri), None, "{h:?}");
        }
        let other = [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://gw.example"),
                ("host", "gw.example"),
            ]),
            headers(&[("origin", "https://evil.example"), ("host", "gw.example")]),
            headers(&[("origin", "null"), ("host", "gw.example")]),
            headers(&[("origin", "https://gw.example")]),
        ];
        for h in other {
            assert!(cross_site(&h, &uri).is_some(), "{h:?}");
        }
    }

    #[test]
    fn csrf_is_checked_for_sessions_only() {
        let session = Actor {
            name: "alice".into(),
            via: Via::Session,
            csrf: Some("a".repeat(64)),
        };
        assert!(session.check_csrf(Some(&"a".repeat(64))).is_ok());
        for bad in [None, Some(""), Some("b"), Some(&*"a".repeat(63))] {
            let e = session.check_csrf(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{bad:?}");
        }
        let token = Actor {
            name: "ris".into(),
            via: Via::Token,
            csrf: None,
        };
        assert!(token.check_csrf(None).is_ok());
    }

    #[test]
    fn probes_and_sign_in_stay_open() {
        for p in [
            "/login",
            "/healthz",
            "/readyz",
            "/metrics",
            "/static/style.css",
        ] {
            assert!(open_without_sign_in(p), "{p}");
        }
        for p in [
            "/",
            "/api/studies",
            "/logout",
            "/login/x",
            "/staticx",
            "/static",
        ] {
            assert!(!open_without_sign_in(p), "{p}");
        }
    }
}
