//! `GET /alarms`: live alarms, each with a form to acknowledge it, and the
//! fail-safe alerts that nobody on the referrer's side has acknowledged yet.
//! `POST /alarms/{id}/ack` and `POST /reports/{id}/acknowledge` take those
//! forms.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Ctx, Nav, Page, PageError};
use super::{HtmlForm, HtmlQuery, format, here, parse_id, poster, see_other};
use crate::catalog::dashboard::AlarmCounts;
use crate::catalog::{AlarmRow, ReportRow};
use crate::http::auth::{Actor, Viewer};
use crate::http::{ApiError, AppState};

/// Alarms shown per section and page.
const PAGE: usize = 50;
/// Fail-safe alerts shown (oldest first: the most urgent to act on).
const ALERTS: usize = 100;
/// The longest reason or note kept.
const MAX_TEXT: usize = 1000;

/// How long an acknowledgement lasts: the choices of the form.
const DURATIONS: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("4h", "4 hours"),
    ("1d", "1 day"),
    ("", "Until resolved"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    /// An alarm just acknowledged (the one-off message).
    acked: Option<String>,
    /// A report whose alert was just acknowledged.
    alert_acked: Option<String>,
    /// Cursors: show open / acknowledged alarms with ids below these.
    open_before: Option<String>,
    acked_before: Option<String>,
}

struct Data {
    counts: AlarmCounts,
    open: (Vec<AlarmRow>, Option<i64>),
    acknowledged: (Vec<AlarmRow>, Option<i64>),
    alerts: (Vec<ReportRow>, u64),
    acked: Option<AlarmRow>,
    alert_acked: Option<ReportRow>,
}

/// A cursor from the query string; anything unreadable starts from the top.
fn cursor(v: &Option<String>) -> Option<i64> {
    v.as_deref().and_then(|s| s.parse().ok())
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: Uri,
    HtmlQuery(params): HtmlQuery<Params>,
) -> Result<Response, PageError> {
    let ctx = Ctx::new(&state, viewer);
    let open_before = cursor(&params.open_before);
    let acked_before = cursor(&params.acked_before);
    let acked = cursor(&params.acked);
    let alert_acked = cursor(&params.alert_acked);
    let data = state
        .readers
        .read(move |store| {
            Ok(Data {
                counts: store.alarm_counts()?,
                open: store.alarms_page("open", open_before, PAGE)?,
                acknowledged: store.alarms_page("acknowledged", acked_before, PAGE)?,
                alerts: store.failsafe_pending(ALERTS)?,
                acked: match acked {
                    Some(id) => store.alarm(id)?,
                    None => None,
                },
                alert_acked: match alert_acked {
                    Some(id) => store.report(id)?,
                    None => None,
                },
            })
        })
        .await?;
    let flash = flash(&ctx, &data);
    let here = here(&uri);
    let main = html! {
        h1 { "Alarms" }
        (ctx.sign_in_note(&here, "acknowledge alarms and alerts"))
        ul.figures {
            li.figure.(if data.counts.open > 0 { "bad" } else { "good" }) #count-open {
                span.value { (format::count(data.counts.open)) }
                span.label { "open" }
            }
            li.figure #count-acknowledged {
                span.value { (format::count(data.counts.acknowledged)) }
                span.label { "acknowledged" }
            }
            li.figure.(if data.alerts.1 > 0 { "bad" } else { "good" }) #count-alerts {
                span.value { (format::count(data.alerts.1)) }
                span.label { "fail-safe alerts awaiting acknowledgement" }
            }
        }
        section #open-alarms aria-labelledby="open-alarms-title" {
            h2 #open-alarms-title { "Open alarms" }
            @if data.open.0.is_empty() {
                p.empty { "No alarm is open." }
            } @else {
                p.lead { "Newest first. Acknowledging an alarm stops its notifications for the time you choose; it still resolves by itself when its cause clears." }
                ul.cards { @for a in &data.open.0 { (alarm_card(&ctx, a)) } }
                (pager(&uri, "open_before", open_before, data.open.1))
            }
        }
        section #failsafe-alerts aria-labelledby="failsafe-alerts-title" {
            h2 #failsafe-alerts-title { "Fail-safe alerts awaiting acknowledgement" }
            @if data.alerts.0.is_empty() {
                p.empty { "Every fail-safe alert has been acknowledged." }
            } @else {
                p.lead {
                    "Oldest first. Acknowledge an alert once the referrer's team has been told and has taken responsibility for acting on it."
                    @if data.alerts.1 > data.alerts.0.len() as u64 {
                        " Showing the oldest " (data.alerts.0.len()) " of " (format::count(data.alerts.1)) "."
                    }
                }
                ul.cards { @for r in &data.alerts.0 { (alert_card(&ctx, r)) } }
            }
        }
        section #acknowledged-alarms aria-labelledby="acknowledged-alarms-title" {
            h2 #acknowledged-alarms-title { "Acknowledged alarms" }
            @if data.acknowledged.0.is_empty() {
                p.empty { "No alarm is acknowledged." }
            } @else {
                ul.cards { @for a in &data.acknowledged.0 { (alarm_card(&ctx, a)) } }
                (pager(&uri, "acked_before", acked_before, data.acknowledged.1))
            }
        }
    };
    Ok(Page {
        title: "Alarms".to_owned(),
        nav: Nav::Alarms,
        here,
        has_input: true,
        flash,
        ctx: &ctx,
    }
    .render(main))
}

fn flash(ctx: &Ctx, data: &Data) -> Option<Markup> {
    if let Some(a) = &data.acked {
        let until = match a.acknowledged_until {
            Some(u) => html! { " until " (ctx.time(u)) },
            None => html! { " until it is resolved" },
        };
        return Some(html! {
            span data-clear="acked alert_acked" {
                "Alarm " (a.id) " (" (format::alarm_kind(&a.kind)) ") acknowledged"
                @if let Some(by) = &a.acknowledged_by { " by " (by) }
                (until) "."
            }
        });
    }
    data.alert_acked.as_ref().map(|r| {
        html! {
            span data-clear="acked alert_acked" {
                "The fail-safe alert of report " (r.id) " is acknowledged"
                @if let Some(by) = &r.alert_acknowledged_by { " by " (by) }
                "."
            }
        }
    })
}

/// "Show older" when there are more, and "Back to the newest" when paged.
fn pager(uri: &Uri, key: &str, current: Option<i64>, next: Option<i64>) -> Markup {
    html! {
        @if next.is_some() || current.is_some() {
            nav.pager aria-label="More alarms" {
                @if let Some(next) = next {
                    a.button.secondary.more href=(format!("{}?{key}={next}", uri.path())) { "Show older" }
                }
                @if current.is_some() {
                    a href=(uri.path()) { "Back to the newest" }
                }
            }
        }
    }
}

/// What an alarm is about: its study (linked), report, or subject.
fn subject(a: &AlarmRow) -> Markup {
    html! {
        @if let Some(uid) = &a.study_uid {
            a.study href=(format!("/studies/{uid}")) {
                @if let Some(acc) = &a.accession_number { "Accession " (acc) } @else { "Study " span.mono { (uid) } }
            }
            @if let Some(pid) = &a.patient_id { " · Patient ID " (pid) }
        } @else if let Some(report) = a.report_id {
            "Report " (report)
        } @else {
            span.mono { (a.subject) }
        }
    }
}

fn alarm_card(ctx: &Ctx, a: &AlarmRow) -> Markup {
    let acknowledged = a.state == "acknowledged";
    html! {
        li.alarm.(a.state) #{"alarm-" (a.id)} data-alarm-id=(a.id) {
            div.card-head {
                h3 { "Alarm " (a.id) ": " (format::alarm_kind(&a.kind)) }
                span.state.(a.state) { (if acknowledged { "◑ Acknowledged" } else { "● Open" }) }
            }
            dl.facts {
                dt { "About" } dd { (subject(a)) }
                dt { "Raised" } dd { (ctx.time_ago(a.raised_at)) }
                @if a.kind == "overdue_report" {
                    dt { "Deadline" } dd { (ctx.time(a.due_at)) " " span.ago { "(" (format::to_deadline(a.due_at, ctx.now)) ")" } }
                }
                @if let Some(rule) = &a.rule { dt { "Rule" } dd { (rule) } }
                dt { "Escalation" }
                dd {
                    @match a.next_step {
                        0 => "no step sent yet",
                        1 => "first step sent",
                        n => (format!("{n} steps sent")),
                    }
                    @if let (false, Some(next)) = (acknowledged, a.next_action_at) {
                        "; next " (ctx.time(next))
                    }
                }
                dt { "Detail" } dd { (a.detail) }
                @if acknowledged {
                    dt { "Acknowledged" }
                    dd {
                        @if let Some(by) = &a.acknowledged_by { "by " strong { (by) } " " }
                        @if let Some(at) = a.acknowledged_at { (ctx.time(at)) }
                        @match a.acknowledged_until {
                            Some(u) => { ", until " (ctx.time(u)) }
                            None => { ", until resolved" }
                        }
                    }
                    @if let Some(reason) = &a.ack_reason { dt { "Reason" } dd.reason { (reason) } }
                }
            }
            @if acknowledged {
                details {
                    summary { "Change the acknowledgement" }
                    (ack_form(ctx, a))
                }
            } @else {
                (ack_form(ctx, a))
            }
        }
    }
}

fn ack_form(ctx: &Ctx, a: &AlarmRow) -> Markup {
    let reason_id = format!("reason-{}", a.id);
    let for_id = format!("for-{}", a.id);
    html! {
        form.ack method="post" action=(format!("/alarms/{}/ack", a.id)) {
            (ctx.csrf_field())
            div.fields {
                div.field {
                    label for=(reason_id) { "Reason " span.hint { "(recorded in the audit log with your name)" } }
                    input #(reason_id) type="text" name="reason" required maxlength=(MAX_TEXT) size="40" autocomplete="off";
                }
                div.field {
                    label for=(for_id) { "For" }
                    select #(for_id) name="for" {
                        @for (value, label) in DURATIONS {
                            option value=(value) selected[value == "4h"] { (label) }
                        }
                    }
                }
                div.field { button type="submit" { "Acknowledge" } }
            }
        }
    }
}

fn alert_card(ctx: &Ctx, r: &ReportRow) -> Markup {
    let category = r.alert_category.as_deref().unwrap_or("");
    let note_id = format!("note-{}", r.id);
    let counting: Vec<_> = r.links.iter().filter(|l| l.counts()).collect();
    html! {
        li.alert #{"alert-" (r.id)} data-report-id=(r.id) data-category=(category) {
            div.card-head {
                h3 { "Report " (r.id) }
                span.state.bad { "▲ " (format::alert_category(category)) }
            }
            dl.facts {
                dt { "Received" } dd { (ctx.time_ago(r.received_at)) }
                @if let Some(acc) = &r.accession_number { dt { "Accession" } dd { (acc) } }
                @if !r.patient_ids.is_empty() {
                    dt { "Patient ID" }
                    dd { @for (i, p) in r.patient_ids.iter().enumerate() { @if i > 0 { ", " } (p.id) } }
                }
                dt { "Study" }
                dd {
                    @if counting.is_empty() {
                        "not linked to a study yet"
                    }
                    @for (i, l) in counting.iter().enumerate() {
                        @if i > 0 { ", " }
                        a href=(format!("/studies/{}", l.study_uid)) { span.mono { (l.study_uid) } }
                    }
                }
                @if let Some(p) = &r.procedure { dt { "Procedure" } dd { (p) } }
                @if let Some(a) = &r.author { dt { "Reported by" } dd { (a) } }
            }
            form.alert-ack method="post" action=(format!("/reports/{}/acknowledge", r.id)) {
                (ctx.csrf_field())
                div.fields {
                    div.field {
                        label for=(note_id) { "Who was told, and how " span.hint { "(recorded with your name)" } }
                        input #(note_id) type="text" name="note" required maxlength=(MAX_TEXT) size="40" autocomplete="off";
                    }
                    div.field { button type="submit" { "Acknowledge the alert" } }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AckForm {
    csrf: String,
    reason: String,
    #[serde(rename = "for")]
    for_: String,
}

/// The text of a required field, trimmed, or a 422 page naming it.
fn required<'a>(value: &'a str, what: &str, back: &'static str) -> Result<&'a str, PageError> {
    let text = value.trim();
    if text.is_empty() {
        return Err(PageError::unprocessable(format!("Please give {what}.")).back(back));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(PageError::unprocessable(format!(
            "{what} is too long: at most {MAX_TEXT} characters, please."
        ))
        .back(back));
    }
    Ok(text)
}

/// `POST /alarms/{id}/ack`
pub async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    actor: Result<Option<Actor>, ApiError>,
    HtmlForm(form): HtmlForm<AckForm>,
) -> Result<Response, PageError> {
    let actor = match poster(actor, &form.csrf, "/alarms") {
        Ok(actor) => actor,
        Err(answer) => return Ok(*answer),
    };
    let id = parse_id(&id, "alarm")?;
    let reason = required(&form.reason, "a reason", "/alarms")?.to_owned();
    let now = state.now();
    let until = crate::watchdog::ack_until(now, Some(&form.for_)).map_err(|e| {
        PageError::unprocessable(format!("The time to acknowledge for is not valid: {e}."))
            .back("/alarms")
    })?;
    let by = actor.name;
    let acked = state
        .catalog
        .call(move |store| store.acknowledge_alarm(id, &by, &reason, until, now))
        .await?;
    match acked {
        Some(_) => Ok(see_other(&format!("/alarms?acked={id}#alarm-{id}"))),
        None => Err(PageError::new(
            StatusCode::CONFLICT,
            format!(
                "Alarm {id} is neither open nor acknowledged: it may have been resolved meanwhile."
            ),
        )
        .back("/alarms")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AlertForm {
    csrf: String,
    note: String,
}

/// `POST /reports/{id}/acknowledge`: the referrer's side has taken the
/// fail-safe alert of report `id` on.
pub async fn acknowledge_alert(
    State(state): State<AppState>,
    Path(id): Path<String>,
    actor: Result<Option<Actor>, ApiError>,
    HtmlForm(form): HtmlForm<AlertForm>,
) -> Result<Response, PageError> {
    let actor = match poster(actor, &form.csrf, "/alarms") {
        Ok(actor) => actor,
        Err(answer) => return Ok(*answer),
    };
    let id = parse_id(&id, "report")?;
    let note = required(&form.note, "who was told", "/alarms")?.to_owned();
    let now = state.now();
    let by = actor.name;
    let done = state
        .catalog
        .call(move |store| store.acknowledge_alert(id, &by, &note, now))
        .await?;
    if done {
        Ok(see_other(&format!("/alarms?alert_acked={id}")))
    } else {
        Err(PageError::new(
            StatusCode::CONFLICT,
            format!("Report {id} has no fail-safe alert waiting for acknowledgement: it may have been acknowledged meanwhile."),
        )
        .back("/alarms"))
    }
}
