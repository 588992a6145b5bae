//! `GET /api/studies`, `GET /api/studies/{uid}` and `GET /api/stats/backlog`.

use axum::extract::State;
use serde::Deserialize;

use super::{Path, Query, given, limit};
use crate::catalog::views::{StudyCursor, StudyQuery};
use crate::catalog::{AlarmFilter, StudyState};
use crate::http::{ApiError, AppState};
use crate::json;
use crate::uid::Uid;

/// A page holds this many studies unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;

/// The query string of `GET /api/studies`. Values are read as text and
/// checked here, so that a bad one is answered naming its parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    state: Option<String>,
    modality: Option<String>,
    source: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListParams {
    fn query(self) -> Result<StudyQuery, ApiError> {
        let state = match given(self.state) {
            None => None,
            Some(s) => Some(StudyState::parse(s.trim()).ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "state: {s:?} is not one of unreported, overdue, reported, no_report_needed"
                ))
            })?),
        };
        let modality = match given(self.modality) {
            None => None,
            Some(m) => {
                let m = m.trim().to_ascii_uppercase();
                // A DICOM code string: at most 16 of A-Z, 0-9, space, underscore.
                let code = m.len() <= 16
                    && m.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if !code {
                    return Err(ApiError::unprocessable(format!(
                        "modality: {m:?} is not a DICOM modality code (e.g. CT, MR, DX)"
                    )));
                }
                Some(m)
            }
        };
        let source = given(self.source).map(|s| s.trim().to_owned());
        if source.as_ref().is_some_and(|s| s.len() > 256) {
            return Err(ApiError::unprocessable(
                "source: longer than any configured source label",
            ));
        }
        let after = match given(self.cursor) {
            None => None,
            Some(c) => Some(StudyCursor::decode(c.trim()).ok_or_else(|| {
                ApiError::unprocessable(
                    "cursor: not a cursor this server gave out (use next_cursor from the \
                     previous page as it is)",
                )
            })?),
        };
        Ok(StudyQuery {
            state,
            modality,
            source,
            limit: limit(self.limit, DEFAULT_PAGE)?,
            after,
        })
    }
}

/// `GET /api/studies`: one page of the worklist.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<json::StudyPage>, ApiError> {
    let query = params.query()?;
    let now = state.now();
    let (rows, next) = state
        .readers
        .read(move |store| store.studies_page(&query, now))
        .await?;
    Ok(axum::Json(json::StudyPage::new(&rows, next.as_ref(), now)))
}

/// `GET /api/studies/{uid}`: everything about one study, with its alarms.
pub(super) async fn detail(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<axum::Json<json::StudyDetail>, ApiError> {
    // The grammar first: nothing that is not a UID reaches the catalog.
    let uid = Uid::parse(&raw)
        .map_err(|e| ApiError::unprocessable(format!("study UID {raw:?} is not valid: it {e}")))?;
    let key = uid.as_str().to_owned();
    let found = state
        .readers
        .read(move |store| {
            let Some(detail) = store.study(&key)? else {
                return Ok(None);
            };
            let alarms = store.alarms(&AlarmFilter {
                study_uid: Some(key),
                ..AlarmFilter::default()
            })?;
            Ok(Some((detail, alarms)))
        })
        .await?;
    let Some((detail, alarms)) = found else {
        return Err(ApiError::not_found(format!(
            "no study {uid} in the catalog"
        )));
    };
    Ok(axum::Json(json::StudyDetail::from_detail(
        &detail,
        &alarms,
        state.now(),
    )))
}

/// `GET /api/stats/backlog`: the studies waiting for a report, counted.
pub(super) async fn backlog(
    State(state): State<AppState>,
    Query(NoParams {}): Query<NoParams>,
) -> Result<axum::Json<json::Backlog>, ApiError> {
    let now = state.now();
    let stats = state
        .readers
        .read(move |store| store.backlog_stats(now))
        .await?;
    Ok(axum::Json(json::Backlog::from(&stats)))
}

/// An endpoint without parameters refuses any, rather than ignore a typo.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoParams {}
