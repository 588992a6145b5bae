//! The dashboard: server-rendered HTML pages for the people who keep the
//! backlog down — the worklist of unreported studies, alarms, reports that
//! need a person, ingest health, one study's story, and the backlog chart.
//!
//! Pages are built with `maud`, which escapes every value it writes: no
//! page is ever assembled by pasting strings together. There is no
//! JavaScript build: `/static/app.js` only refreshes pages (pausing while a
//! form is being filled in) and submits filter choices at once; everything
//! works without it. Every page reads a bounded number of rows through
//! indexed queries (see `catalog::dashboard` and `catalog::views`), so it
//! renders in well under 200 ms on a catalog of a million studies.
//!
//! Writes (acknowledging an alarm or an alert, deciding a probable link,
//! linking a report by hand) are ordinary form posts. They need a signed-in
//! user whose session CSRF token the form carries, or a bearer token; a post
//! without either is sent to `/login` and back. Each answers `303 See
//! Other` to the page it came from, with a one-off message.
//!
//! - `layout` — the frame of every page, and the HTML error page.
//! - `format` — times, durations, sizes and labels for people.
//! - `worklist` — `GET /`.
//! - `backlog` — the 30-day backlog chart (inline and `GET /backlog.svg`).
//! - `alarms` — `GET /alarms`, `POST /alarms/{id}/ack`,
//!   `POST /reports/{id}/acknowledge`.
//! - `reports` — `GET /reports`, `POST /reports`, `POST /reports/{id}/confirm`.
//! - `health` — `GET /health`.
//! - `study` — `GET /studies/{uid}`.
//! - `assets` — `GET /static/style.css`, `GET /static/app.js`.

mod alarms;
mod assets;
mod backlog;
mod format;
mod health;
mod layout;

pub use layout::PageError;
mod reports;
mod study;
mod worklist;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::auth::Actor;
use super::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(worklist::page))
        .route("/backlog.svg", get(backlog::svg))
        .route("/alarms", get(alarms::page))
        .route("/alarms/{id}/ack", post(alarms::acknowledge))
        .route("/reports", get(reports::page).post(reports::link))
        .route("/reports/{id}/confirm", post(reports::confirm))
        .route("/reports/{id}/acknowledge", post(alarms::acknowledge_alert))
        .route("/health", get(health::page))
        .route("/studies/{uid}", get(study::page))
        .route("/static/style.css", get(assets::style))
        .route("/static/app.js", get(assets::script))
}

/// A URL-encoded form whose rejection is an HTML error page rather than
/// axum's plain text.
pub struct HtmlForm<T>(pub T);

impl<T, S> FromRequest<S> for HtmlForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(HtmlForm(value)),
            Err(e) => Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("The form could not be read: {}", e.body_text()),
            )),
        }
    }
}

/// A query string whose rejection is an HTML error page.
pub struct HtmlQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for HtmlQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(HtmlQuery(value)),
            Err(e) => Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("The address could not be read: {}", e.body_text()),
            )),
        }
    }
}

/// Who is posting a form, or the answer to give instead: a trip to
/// `/login` (and back to `back`) when nobody is signed in; an error page
/// for a wrong bearer token, a cross-site post, or a missing or stale CSRF
/// token.
fn poster(
    actor: Result<Option<Actor>, ApiError>,
    csrf: &str,
    back: &'static str,
) -> Result<Actor, Box<Response>> {
    let answer = match actor {
        Ok(Some(actor)) => match actor.check_csrf(Some(csrf)) {
            Ok(()) => return Ok(actor),
            Err(e) => PageError::new(
                e.status,
                format!(
                    "{} The form may be from before you last signed in: reload the page and try again.",
                    e.message
                ),
            )
            .back(back)
            .into_response(),
        },
        Ok(None) => Redirect::to(&layout::login_href(back)).into_response(),
        Err(e) => PageError::from(e).back(back).into_response(),
    };
    Err(Box::new(answer))
}

/// The path and query of this request, for "Sign in" to come back to.
fn here(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

/// `303 See Other` to `to`: the answer to a form post that worked.
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A positive id from a path segment, or a 404 page.
fn parse_id(text: &str, what: &str) -> Result<i64, PageError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError::not_found(format!("There is no {what} {text}.")))
}
