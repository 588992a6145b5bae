//! `GET /api/reports`, `GET /api/reports/{id}`, `POST /api/reports` and a
//! person's decisions on a report: `POST /api/reports/{id}/confirm` (a
//! probable link) and `POST /api/reports/{id}/acknowledge` (a fail-safe
//! alert).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Json, Path, Query, check_csrf, given, limit, path_id};
use crate::catalog::ReportOrigin;
use crate::http::auth::Actor;
use crate::http::{ApiError, AppState};
use crate::json;
use crate::reports::manual::manual_report;
use crate::uid::Uid;

const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    unmatched: Option<String>,
    limit: Option<String>,
}

/// `GET /api/reports`: the latest reports, or (`unmatched=true`) the current
/// reports that count for no study, oldest first.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<Vec<json::Report>>, ApiError> {
    let unmatched = match given(params.unmatched).as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "unmatched: {other:?} is not true or false"
            )));
        }
    };
    let limit = Some(limit(params.limit, DEFAULT_LIMIT)?);
    let rows = state
        .readers
        .read(move |store| {
            if unmatched {
                store.unmatched_reports(limit)
            } else {
                store.recent_reports(limit)
            }
        })
        .await?;
    Ok(axum::Json(rows.iter().map(json::Report::from).collect()))
}

/// `GET /api/reports/{id}`: one report with its links.
pub(super) async fn one(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<axum::Json<json::Report>, ApiError> {
    let id = path_id("report", &raw_id)?;
    match state.readers.read(move |store| store.report(id)).await? {
        Some(row) => Ok(axum::Json(json::Report::from(&row))),
        None => Err(ApiError::not_found(format!("no report {id}"))),
    }
}

/// The body of `POST /api/reports`: what `studywatch report link` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewReportBody {
    #[serde(default)]
    accession_number: Option<String>,
    #[serde(default)]
    study_uid: Option<String>,
    /// `final | preliminary | corrected | cancelled`.
    status: String,
    #[serde(default)]
    author: Option<String>,
    /// RFC 3339, or a local date/time in the site's zone; default now.
    #[serde(default)]
    time: Option<String>,
}

/// `POST /api/reports`: records a report entered by a person and links it,
/// exactly as `report link` does (origin `manual`, recorded by the actor).
/// Answers 201 with the report and the links made (none when its study has
/// not arrived: it waits on the unmatched list).
pub(super) async fn create(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Json(body): Json<NewReportBody>,
) -> Result<Response, ApiError> {
    check_csrf(&actor, &headers)?;
    let now = state.now();
    // manual_report's messages name the field that is wrong.
    let report = manual_report(
        ReportOrigin::Manual,
        body.accession_number.as_deref(),
        body.study_uid.as_deref(),
        &body.status,
        body.time.as_deref(),
        body.author.as_deref(),
        &actor.name,
        &state.config.site.timezone,
        now,
    )
    .map_err(ApiError::unprocessable)?;
    let row = state
        .catalog
        .call(move |store| {
            store.atomically(|store| {
                let (id, _links) = store.record_report(&report)?;
                store.report(id)
            })
        })
        .await?
        .ok_or_else(|| ApiError::internal("the recorded report could not be read back", "gone"))?;
    let location = HeaderValue::from_str(&format!("/api/reports/{}", row.id))
        .map_err(|e| ApiError::internal("building the Location header", e))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(json::Report::from(&row)),
    )
        .into_response())
}

/// The body of `POST /api/reports/{id}/confirm`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfirmBody {
    study_uid: String,
    /// true: the link counts from now on; false: it never counts.
    accept: bool,
}

/// `POST /api/reports/{id}/confirm`: a person's decision on a probable link
/// (patient ID and date), as `report confirm` makes it.
pub(super) async fn confirm(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Json(body): Json<ConfirmBody>,
) -> Result<axum::Json<json::Report>, ApiError> {
    check_csrf(&actor, &headers)?;
    let id = path_id("report", &raw_id)?;
    let uid = Uid::parse(body.study_uid.trim()).map_err(|e| {
        ApiError::unprocessable(format!(
            "study_uid: {:?} is not a valid UID: it {e}",
            body.study_uid
        ))
    })?;
    let now = state.now();
    let by = actor.name;
    let accept = body.accept;
    let row = state
        .catalog
        .call(move |store| {
            store.atomically(|store| {
                if store.report(id)?.is_none() {
                    return Ok(Err(ApiError::not_found(format!("no report {id}"))));
                }
                if !store.decide_link(id, uid.as_str(), accept, &by, now)? {
                    return Ok(Err(ApiError::conflict(format!(
                        "report {id} has no probable link to study {uid}"
                    ))));
                }
                Ok(store
                    .report(id)?
                    .ok_or_else(|| ApiError::not_found(format!("no report {id}"))))
            })
        })
        .await??;
    Ok(axum::Json(json::Report::from(&row)))
}

/// The body of `POST /api/reports/{id}/acknowledge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AcknowledgeBody {
    /// What was done, e.g. "patient recalled, seen in ED".
    note: String,
}

/// `POST /api/reports/{id}/acknowledge`: the referrer's side acknowledges a
/// report's fail-safe alert (critical, urgent, significant unexpected,
/// suspected cancer), as `report acknowledge` does.
pub(super) async fn acknowledge(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Json(body): Json<AcknowledgeBody>,
) -> Result<axum::Json<json::Report>, ApiError> {
    check_csrf(&actor, &headers)?;
    let id = path_id("report", &raw_id)?;
    let note = body.note.trim().to_owned();
    if note.is_empty() {
        return Err(ApiError::unprocessable(
            "note: must say what was done about the alert",
        ));
    }
    let now = state.now();
    let by = actor.name;
    let row = state
        .catalog
        .call(move |store| {
            store.atomically(|store| {
                if store.report(id)?.is_none() {
                    return Ok(Err(ApiError::not_found(format!("no report {id}"))));
                }
                if !store.acknowledge_alert(id, &by, &note, now)? {
                    return Ok(Err(ApiError::conflict(format!(
                        "report {id} has no unacknowledged fail-safe alert"
                    ))));
                }
                Ok(store
                    .report(id)?
                    .ok_or_else(|| ApiError::not_found(format!("no report {id}"))))
            })
        })
        .await??;
    Ok(axum::Json(json::Report::from(&row)))
}
