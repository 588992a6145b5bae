//! `GET /api/alarms` and `POST /api/alarms/{id}/ack`.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;

use super::{Json, Path, Query, check_csrf, given, limit, path_id};
use crate::catalog::AlarmFilter;
use crate::http::auth::Actor;
use crate::http::{ApiError, AppState};
use crate::json;

const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    state: Option<String>,
    limit: Option<String>,
}

/// `GET /api/alarms`: alarms, newest first.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<Vec<json::Alarm>>, ApiError> {
    let alarm_state = match given(params.state) {
        None => None,
        Some(s) => match s.trim() {
            t @ ("open" | "acknowledged" | "resolved") => Some(t.to_owned()),
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "state: {s:?} is not one of open, acknowledged, resolved"
                )));
            }
        },
    };
    let filter = AlarmFilter {
        state: alarm_state,
        limit: Some(limit(params.limit, DEFAULT_LIMIT)?),
        ..AlarmFilter::default()
    };
    let rows = state
        .readers
        .read(move |store| store.alarms(&filter))
        .await?;
    Ok(axum::Json(rows.iter().map(json::Alarm::from).collect()))
}

/// The body of `POST /api/alarms/{id}/ack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    /// What is being done about it; kept in the audit log.
    reason: String,
    /// For how long (`"4h"`); absent or null: until the alarm resolves.
    #[serde(default, rename = "for")]
    for_: Option<String>,
}

/// `POST /api/alarms/{id}/ack`: a person acknowledges a live alarm, for a
/// while or until it resolves. Answers the alarm as it now is.
pub(super) async fn ack(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    Json(body): Json<AckBody>,
) -> Result<axum::Json<json::Alarm>, ApiError> {
    check_csrf(&actor, &headers)?;
    let id = path_id("alarm", &raw_id)?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() {
        return Err(ApiError::unprocessable(
            "reason: must say why (what is being done about the alarm)",
        ));
    }
    let now = state.now();
    let until = crate::watchdog::ack_until(now, body.for_.as_deref())
        .map_err(|e| ApiError::unprocessable(format!("for: {e}")))?;
    let by = actor.name;
    let outcome = state
        .catalog
        .call(move |store| {
            store.atomically(|store| {
                match store.alarm(id)? {
                    None => return Ok(Err(ApiError::not_found(format!("no alarm {id}")))),
                    Some(a) if a.state == "resolved" => {
                        return Ok(Err(ApiError::conflict(format!(
                            "alarm {id} is resolved; only an open or acknowledged alarm can be \
                             acknowledged"
                        ))));
                    }
                    Some(_) => {}
                }
                if store
                    .acknowledge_alarm(id, &by, &reason, until, now)?
                    .is_none()
                {
                    return Ok(Err(ApiError::conflict(format!("alarm {id} is not live"))));
                }
                Ok(store
                    .alarm(id)?
                    .ok_or_else(|| ApiError::not_found(format!("no alarm {id}"))))
            })
        })
        .await??;
    Ok(axum::Json(json::Alarm::from(&outcome)))
}
