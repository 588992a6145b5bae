//! `GET /`: the worklist — every study still waiting for its report, the
//! one whose deadline is nearest (or longest past) first, a page at a time.
//!
//! Each row says in words, with a matching colour, where the study stands:
//! escalated (its overdue alarm has gone past its first escalation step),
//! overdue, due soon (deadline within [`DUE_SOON`]), or waiting. At the top:
//! how big the backlog is and how old, and how it has moved over 30 days.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use maud::{Markup, html};
use serde::Deserialize;

use super::backlog;
use super::layout::{Ctx, Nav, Page, PageError};
use super::{HtmlQuery, format, here};
use crate::catalog::dashboard::StudyAlarm;
use crate::catalog::views::{BacklogStats, StudyCursor, StudyQuery};
use crate::catalog::{StudyRow, StudyState};
use crate::http::AppState;
use crate::http::auth::Viewer;

/// Studies per page.
const PAGE: usize = 100;
/// A deadline within this is "due soon".
pub const DUE_SOON: SignedDuration = SignedDuration::from_hours(2);

/// Where a study stands, as the worklist shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowState {
    Escalated,
    Overdue,
    DueSoon,
    Waiting,
    Reported,
    NoReportNeeded,
}

impl RowState {
    /// The class its row and label carry.
    pub fn class(self) -> &'static str {
        match self {
            RowState::Escalated => "escalated",
            RowState::Overdue => "overdue",
            RowState::DueSoon => "due-soon",
            RowState::Waiting => "waiting",
            RowState::Reported => "reported",
            RowState::NoReportNeeded => "no-report-needed",
        }
    }

    /// The words (and a symbol, so that the state reads without colour).
    pub fn label(self) -> &'static str {
        match self {
            RowState::Escalated => "▲ Escalated",
            RowState::Overdue => "● Overdue",
            RowState::DueSoon => "◔ Due soon",
            RowState::Waiting => "○ Waiting",
            RowState::Reported => "✓ Reported",
            RowState::NoReportNeeded => "– No report needed",
        }
    }
}

/// Where `study` stands at `now`, given its live overdue alarm if any.
pub fn classify(study: &StudyRow, alarm: Option<&StudyAlarm>, now: Timestamp) -> RowState {
    match study.state(now) {
        StudyState::Reported => RowState::Reported,
        StudyState::NoReportNeeded => RowState::NoReportNeeded,
        StudyState::Overdue => {
            if alarm.is_some_and(|a| a.state == "open" && a.steps_fired >= 2) {
                RowState::Escalated
            } else {
                RowState::Overdue
            }
        }
        StudyState::Unreported => match study.deadline {
            Some(d) if d.duration_since(now) <= DUE_SOON => RowState::DueSoon,
            _ => RowState::Waiting,
        },
    }
}

/// The state label of a study, with "acknowledged" when its alarm is.
pub fn state_label(state: RowState, alarm: Option<&StudyAlarm>) -> Markup {
    html! {
        span.state.(state.class()) { (state.label()) }
        @if let Some(a) = alarm.filter(|a| a.state == "acknowledged") {
            " " span.acked { "acknowledged" @if let Some(by) = &a.acknowledged_by { " by " (by) } }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    modality: Option<String>,
    source: Option<String>,
    /// `overdue` for overdue studies only; anything else: every waiting one.
    state: Option<String>,
    /// The cursor of the page to show.
    after: Option<String>,
}

/// An empty form value means "any".
fn chosen(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

struct Data {
    stats: BacklogStats,
    rows: Vec<StudyRow>,
    alarms: Vec<StudyAlarm>,
    next: Option<StudyCursor>,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: Uri,
    HtmlQuery(params): HtmlQuery<Params>,
) -> Result<Response, PageError> {
    let ctx = Ctx::new(&state, viewer);
    let overdue_only = params.state.as_deref() == Some("overdue");
    let after = params.after.as_deref().and_then(StudyCursor::decode);
    let query = StudyQuery {
        state: Some(if overdue_only {
            StudyState::Overdue
        } else {
            StudyState::Unreported
        }),
        modality: chosen(&params.modality),
        source: chosen(&params.source),
        limit: PAGE,
        after: after.clone(),
    };
    let now = ctx.now;
    let q = query.clone();
    let read = state.readers.read(move |store| {
        let (rows, next) = store.studies_page(&q, now)?;
        let uids: Vec<String> = rows.iter().map(|r| r.study_uid.clone()).collect();
        Ok(Data {
            stats: store.backlog_stats(now)?,
            alarms: store.study_alarms(&uids)?,
            rows,
            next,
        })
    });
    // The chart is counted on another read connection at the same time.
    let (data, history) = tokio::join!(read, backlog::history(&state, now, &ctx.tz));
    let (data, history) = (data?, history?);
    let main = html! {
        h1 { "Worklist" }
        p.lead { "Every study still waiting for its formal report, the nearest deadline first." }
        (figures(&data.stats))
        (filters(&query, &data.stats, overdue_only))
        (table(&ctx, &data.rows, &data.alarms))
        (pager(&query, overdue_only, data.next.as_ref(), after.is_some()))
        h2 #backlog-heading { "How the backlog has moved" }
        (backlog::figure(&history, &ctx))
    };
    Ok(Page {
        title: "Worklist".to_owned(),
        nav: Nav::Worklist,
        here: here(&uri),
        has_input: false,
        flash: None,
        ctx: &ctx,
    }
    .render(main))
}

fn figures(s: &BacklogStats) -> Markup {
    let [_, d1, d7, d28] = s.by_age.map(|(_, n)| n);
    let older = |n: u64| if n > 0 { "bad" } else { "good" };
    html! {
        ul.figures #backlog-figures aria-label="The backlog" {
            li.figure.(if s.unreported > 0 { "warn" } else { "good" }) #count-waiting {
                span.value { (format::count(s.unreported)) }
                span.label { "waiting for a report" }
            }
            li.figure.(older(s.overdue)) #count-overdue {
                span.value { (format::count(s.overdue)) }
                span.label { "overdue" }
            }
            li.figure.(if d1 + d7 + d28 > 0 { "warn" } else { "good" }) #age-24h {
                span.value { (format::count(d1 + d7 + d28)) }
                span.label { "waiting more than 24 hours" }
            }
            li.figure.(older(d7 + d28)) #age-7d {
                span.value { (format::count(d7 + d28)) }
                span.label { "waiting more than 7 days" }
            }
            li.figure.(older(d28)) #age-28d {
                span.value { (format::count(d28)) }
                span.label { "waiting more than 28 days" }
            }
            @if s.no_deadline > 0 {
                li.figure.warn #count-no-deadline {
                    span.value { (format::count(s.no_deadline)) }
                    span.label { "without a deadline yet" }
                }
            }
        }
    }
}

fn filters(q: &StudyQuery, s: &BacklogStats, overdue_only: bool) -> Markup {
    let modality = q.modality.as_deref().unwrap_or("");
    let source = q.source.as_deref().unwrap_or("");
    let listed_modality = s
        .by_modality
        .iter()
        .any(|(m, _)| m.as_deref() == Some(modality));
    let listed_source = s.by_source.iter().any(|(src, _)| src == source);
    html! {
        form.filters #filters method="get" action="/" data-autosubmit {
            div.fields {
                div.field {
                    label for="filter-modality" { "Modality" }
                    select #filter-modality name="modality" {
                        option value="" selected[modality.is_empty()] { "Any" }
                        @for (m, n) in &s.by_modality {
                            @if let Some(m) = m {
                                option value=(m) selected[m == modality] { (m) " (" (format::count(*n)) ")" }
                            }
                        }
                        @if !modality.is_empty() && !listed_modality {
                            option value=(modality) selected { (modality) " (0)" }
                        }
                    }
                }
                div.field {
                    label for="filter-source" { "Source" }
                    select #filter-source name="source" {
                        option value="" selected[source.is_empty()] { "Any" }
                        @for (src, n) in &s.by_source {
                            option value=(src) selected[src == source] { (src) " (" (format::count(*n)) ")" }
                        }
                        @if !source.is_empty() && !listed_source {
                            option value=(source) selected { (source) " (0)" }
                        }
                    }
                }
                div.field {
                    label for="filter-state" { "Show" }
                    select #filter-state name="state" {
                        option value="" selected[!overdue_only] { "All waiting" }
                        option value="overdue" selected[overdue_only] { "Overdue only" }
                    }
                }
                div.field { button type="submit" { "Apply" } }
                @if !modality.is_empty() || !source.is_empty() || overdue_only {
                    div.field { a.button.secondary href="/" { "Clear" } }
                }
            }
            @if !modality.is_empty() || !source.is_empty() || overdue_only {
                p.hint #filtered { "The list is filtered; the figures above and the chart are for the whole backlog." }
            }
        }
    }
}

fn table(ctx: &Ctx, rows: &[StudyRow], alarms: &[StudyAlarm]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty #worklist-empty { "No study is waiting for a report." }
        } @else {
            div.table-wrap {
                table.stack #worklist {
                    caption.visually-hidden { "Studies waiting for a report, nearest deadline first" }
                    thead { tr {
                        th scope="col" { "State" }
                        th scope="col" { "Deadline" }
                        th scope="col" { "Accession" }
                        th scope="col" { "Patient ID" }
                        th scope="col" { "Modality" }
                        th scope="col" { "Description" }
                        th scope="col" { "Source" }
                        th scope="col" { "Received" }
                    } }
                    tbody {
                        @for s in rows {
                            @let alarm = alarms.iter().find(|a| a.study_uid == s.study_uid);
                            @let state = classify(s, alarm, ctx.now);
                            tr.row.(state.class()) data-study-uid=(s.study_uid) data-state=(state.class()) {
                                td data-label="State" { (state_label(state, alarm)) }
                                td.deadline data-label="Deadline" {
                                    @match s.deadline {
                                        Some(d) => { span title=(format::full(d, &ctx.tz)) { (format::to_deadline(d, ctx.now)) } }
                                        None => { span.muted { "no deadline yet" } }
                                    }
                                }
                                td data-label="Accession" {
                                    a.study href=(format!("/studies/{}", s.study_uid)) {
                                        (s.accession_number.as_deref().unwrap_or("(none)"))
                                    }
                                }
                                td data-label="Patient ID" { (s.patient_id.as_deref().unwrap_or("—")) }
                                td data-label="Modality" { (s.modalities.join(", ")) }
                                td data-label="Description" { (s.study_description.as_deref().unwrap_or("—")) }
                                td data-label="Source" { (s.source) }
                                td data-label="Received" { (ctx.time_ago(s.first_received_at)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn pager(q: &StudyQuery, overdue_only: bool, next: Option<&StudyCursor>, paged: bool) -> Markup {
    let mut base = url::form_urlencoded::Serializer::new(String::new());
    if let Some(m) = &q.modality {
        base.append_pair("modality", m);
    }
    if let Some(s) = &q.source {
        base.append_pair("source", s);
    }
    if overdue_only {
        base.append_pair("state", "overdue");
    }
    let filters = base.finish();
    let first = if filters.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{filters}")
    };
    html! {
        @if next.is_some() || paged {
            nav.pager aria-label="More studies" {
                @if let Some(c) = next {
                    @let sep = if filters.is_empty() { "" } else { "&" };
                    a.button.secondary.more #show-more href=(format!("/?{filters}{sep}after={}", c.encode())) { "Show the next " (PAGE) }
                }
                @if paged { a #back-to-top href=(first) { "Back to the first page" } }
            }
        }
    }
}
