//! The JSON API under `/api/`: the same shapes as the CLI's `--json`
//! ([`crate::json`]), over the same catalog.
//!
//! - reads go to [`crate::catalog::Readers`] (a read connection on a blocking
//!   thread), so they never queue behind ingest's commits;
//! - writes go through the catalog thread ([`crate::catalog::Catalog::call`]),
//!   ordered with everything else the server writes, each in one
//!   transaction, and each made by an [`Actor`] whose name the audit log
//!   records. A write by session must carry its CSRF token in `X-CSRF-Token`;
//!   a bearer token needs none;
//! - every error is an [`ApiError`] (JSON with status and message): 400 when
//!   the request cannot be read, 422 naming the parameter or field whose
//!   value is wrong, 404 for an unknown study, alarm or report, 409 when the
//!   thing exists but the change does not apply to it (a resolved alarm).
//!
//! docs/api.md describes every endpoint for users. What this module never
//! does: build SQL (the catalog does), or look up a study by a UID that did
//! not pass [`crate::uid::Uid::parse`].

mod alarms;
mod extract;
mod reports;
mod studies;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};

use super::auth::Actor;
use super::{ApiError, AppState};
use crate::catalog::views::MAX_PAGE;

pub use extract::{Json, Path, Query};

/// The API's routes, nested at `/api` by [`crate::http::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/studies", get(studies::list))
        .route("/studies/{uid}", get(studies::detail))
        .route("/stats/backlog", get(studies::backlog))
        .route("/alarms", get(alarms::list))
        .route("/alarms/{id}/ack", post(alarms::ack))
        .route("/reports", get(reports::list).post(reports::create))
        .route("/reports/{id}", get(reports::one))
        .route("/reports/{id}/confirm", post(reports::confirm))
        .route("/reports/{id}/acknowledge", post(reports::acknowledge))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method (see docs/api.md)",
            )
        })
        .fallback(|| async { ApiError::not_found("no such API endpoint (see docs/api.md)") })
}

/// A query parameter's value, with an empty value (`?modality=`, as an HTML
/// form sends an unset field) taken as absent.
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// `limit`: a whole number from 1 to [`MAX_PAGE`]; `default` when absent.
fn limit(raw: Option<String>, default: usize) -> Result<usize, ApiError> {
    let Some(raw) = given(raw) else {
        return Ok(default);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(ApiError::unprocessable(format!(
            "limit: {raw:?} is not a whole number from 1 to {MAX_PAGE}"
        ))),
    }
}

/// A numeric id from the path. One that is not a number names nothing: 404,
/// like an id that does not exist.
fn path_id(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::not_found(format!("no {what} {raw:?}: {what} ids are numbers")))
}

/// A write by session must carry the session's CSRF token in `X-CSRF-Token`.
fn check_csrf(actor: &Actor, headers: &HeaderMap) -> Result<(), ApiError> {
    let submitted = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    actor.check_csrf(submitted)
}
