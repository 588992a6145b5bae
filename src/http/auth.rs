//! Who may write, and who is writing: users with argon2 password hashes,
//! sessions, CSRF tokens, bearer tokens, and sign-in rate limits.
//!
//! SKELETON: the types and signatures other modules use. Everything here
//! refuses until the real implementation lands.

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::config;

/// Users, tokens and live sessions.
#[derive(Debug, Default)]
pub struct Auth {}

impl Auth {
    /// Reads the users and tokens files named in `[http]`.
    pub fn load(_http: &config::Http) -> Result<Auth, String> {
        Ok(Auth {})
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
/// records. Extracting it fails with 401 when nobody is signed in.
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
    pub fn check_csrf(&self, _submitted: Option<&str>) -> Result<(), ApiError> {
        Err(ApiError::forbidden("not implemented"))
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;
    async fn from_request_parts(_parts: &mut Parts, _state: &AppState) -> Result<Actor, ApiError> {
        Err(ApiError::unauthorized(
            "sign in, or send Authorization: Bearer with an API token",
        ))
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
        _parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Viewer, std::convert::Infallible> {
        Ok(Viewer::default())
    }
}

/// `/login` and `/logout`.
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// Applies `[http] read_requires_sign_in` to every route but sign-in itself
/// and the probes.
pub fn guard(app: Router<AppState>, _state: AppState) -> Router<AppState> {
    app
}
