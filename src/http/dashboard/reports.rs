//! `GET /reports`: reports that need a person — probable links to confirm
//! or reject, and reports that match no study — and a form to link a
//! report by hand. `POST /reports/{id}/confirm` and `POST /reports` take
//! the forms.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Ctx, Nav, Page, PageError};
use super::{HtmlForm, HtmlQuery, format, here, parse_id, poster, see_other};
use crate::catalog::dashboard::{PendingLink, UnmatchedPage};
use crate::catalog::{ReportOrigin, ReportRow, StudyRow};
use crate::http::auth::{Actor, Viewer};
use crate::http::{ApiError, AppState};
use crate::uid::Uid;

/// Probable links shown (oldest report first).
const LINKS: usize = 50;
/// Unmatched reports per page.
const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    /// One-off messages: a report just linked by hand, a probable link of
    /// a report just confirmed or rejected.
    linked: Option<String>,
    confirmed: Option<String>,
    rejected: Option<String>,
    /// The unmatched list's cursor: `MICROSECONDS.ID` of the last report shown.
    after: Option<String>,
}

fn report_id(v: &Option<String>) -> Option<i64> {
    v.as_deref().and_then(|s| s.parse().ok())
}

fn decode_cursor(v: &Option<String>) -> Option<(Timestamp, i64)> {
    let (micros, id) = v.as_deref()?.split_once('.')?;
    let at = Timestamp::from_microsecond(micros.parse().ok()?).ok()?;
    Some((at, id.parse().ok()?))
}

fn encode_cursor((at, id): (Timestamp, i64)) -> String {
    format!("{}.{id}", at.as_microsecond())
}

struct Data {
    links: Vec<PendingLink>,
    unmatched: UnmatchedPage,
    /// The report of the one-off message, with what happened to it.
    flash: Option<(ReportRow, &'static str)>,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: Uri,
    HtmlQuery(params): HtmlQuery<Params>,
) -> Result<Response, PageError> {
    let ctx = Ctx::new(&state, viewer);
    let after = decode_cursor(&params.after);
    let flash_of = [
        (report_id(&params.linked), "linked"),
        (report_id(&params.confirmed), "confirmed"),
        (report_id(&params.rejected), "rejected"),
    ]
    .into_iter()
    .find_map(|(id, what)| id.map(|id| (id, what)));
    let data = state
        .readers
        .read(move |store| {
            let flash = match flash_of {
                Some((id, what)) => store.report(id)?.map(|r| (r, what)),
                None => None,
            };
            Ok(Data {
                links: store.pending_links(LINKS)?,
                unmatched: store.unmatched_page(after, PAGE)?,
                flash,
            })
        })
        .await?;
    let flash = data.flash.as_ref().map(|(r, what)| flash(r, what));
    let UnmatchedPage {
        reports: unmatched,
        next,
        total,
    } = &data.unmatched;
    let here = here(&uri);
    let main = html! {
        h1 { "Reports" }
        (ctx.sign_in_note(&here, "decide links and record reports"))
        ul.figures {
            li.figure.(if data.links.is_empty() { "good" } else { "warn" }) #count-probable {
                span.value { (format::count(data.links.len() as u64)) @if data.links.len() == LINKS { "+" } }
                span.label { "probable links to decide" }
            }
            li.figure.(if *total == 0 { "good" } else { "warn" }) #count-unmatched {
                span.value { (format::count(*total)) }
                span.label { "reports matching no study" }
            }
        }
        section #probable-links aria-labelledby="probable-links-title" {
            h2 #probable-links-title { "Probable links awaiting confirmation" }
            @if data.links.is_empty() {
                p.empty { "No probable link waits for a decision." }
            } @else {
                p.lead { "These reports match a study only by patient ID and date. They do not count as reports until a person confirms that they belong to the study." }
                ul.cards { @for l in &data.links { (link_card(&ctx, l)) } }
            }
        }
        section #unmatched-reports aria-labelledby="unmatched-reports-title" {
            h2 #unmatched-reports-title { "Reports that match no study" }
            @if unmatched.is_empty() {
                p.empty { "Every report is linked to its study." }
            } @else {
                p.lead { "Oldest first. A report whose images have not arrived yet links by itself when they do; one that names a wrong accession or UID needs linking by hand below." }
                div.table-wrap {
                    table.stack #unmatched {
                        thead { tr {
                            th scope="col" { "Report" } th scope="col" { "Received" } th scope="col" { "Status" }
                            th scope="col" { "Accession" } th scope="col" { "Patient ID" } th scope="col" { "Study UID named" }
                            th scope="col" { "Procedure" } th scope="col" { "From" }
                        } }
                        tbody {
                            @for r in unmatched {
                                tr #{"report-" (r.id)} data-report-id=(r.id) {
                                    td data-label="Report" { (r.id) }
                                    td data-label="Received" { (ctx.time_ago(r.received_at)) }
                                    td data-label="Status" { (r.status.as_str()) @if r.withdrawn { " (withdrawn)" } }
                                    td data-label="Accession" { (r.accession_number.as_deref().unwrap_or("—")) }
                                    td data-label="Patient ID" { (patient_ids(r)) }
                                    td.mono data-label="Study UID named" { (r.study_uid.as_deref().unwrap_or("—")) }
                                    td data-label="Procedure" { (r.procedure.as_deref().unwrap_or("—")) }
                                    td data-label="From" { (format::origin(r.origin.as_str())) }
                                }
                            }
                        }
                    }
                }
                @if next.is_some() || after.is_some() {
                    nav.pager aria-label="More unmatched reports" {
                        @if let Some(next) = next {
                            a.button.secondary.more href=(format!("/reports?after={}", encode_cursor(*next))) { "Show more" }
                        }
                        @if after.is_some() { a href="/reports" { "Back to the oldest" } }
                    }
                }
            }
        }
        section #manual-link aria-labelledby="manual-link-title" {
            h2 #manual-link-title { "Link a report by hand" }
            p.lead { "For a report the RIS never sent, or one that names the wrong study. It is recorded with your name as entered by hand." }
            (manual_form(&ctx))
        }
    };
    Ok(Page {
        title: "Reports".to_owned(),
        nav: Nav::Reports,
        here,
        has_input: true,
        flash,
        ctx: &ctx,
    }
    .render(main))
}

fn flash(r: &ReportRow, what: &str) -> Markup {
    let counting: Vec<_> = r.links.iter().filter(|l| l.counts()).collect();
    html! {
        span data-clear="linked confirmed rejected" {
            @match what {
                "confirmed" => { "The probable link of report " (r.id) " is confirmed: it now counts for its study." }
                "rejected" => { "The probable link of report " (r.id) " is rejected: it will never count for that study." }
                _ => {
                    "Report " (r.id) " recorded"
                    @if counting.is_empty() {
                        "; it matches no study yet and waits on the list below."
                    } @else {
                        " and linked to "
                        @for (i, l) in counting.iter().enumerate() {
                            @if i > 0 { ", " }
                            a href=(format!("/studies/{}", l.study_uid)) { "study " span.mono { (l.study_uid) } }
                        }
                        "."
                    }
                }
            }
        }
    }
}

fn patient_ids(r: &ReportRow) -> Markup {
    html! {
        @if r.patient_ids.is_empty() { "—" }
        @for (i, p) in r.patient_ids.iter().enumerate() { @if i > 0 { ", " } (p.id) }
    }
}

fn study_facts(ctx: &Ctx, uid: &str, s: Option<&StudyRow>) -> Markup {
    html! {
        dl.facts {
            dt { "Study" } dd { a href=(format!("/studies/{uid}")) { span.mono { (uid) } } }
            @if let Some(s) = s {
                dt { "Patient ID" } dd { (s.patient_id.as_deref().unwrap_or("—")) }
                dt { "Accession" } dd { (s.accession_number.as_deref().unwrap_or("—")) }
                dt { "Study date" } dd { (format::dicom_date_time(s.study_date.as_deref(), s.study_time.as_deref())) }
                dt { "Modality" } dd { (s.modalities.join(", ")) }
                dt { "Description" } dd { (s.study_description.as_deref().unwrap_or("—")) }
                dt { "Received" } dd { (ctx.time_ago(s.first_received_at)) }
            }
        }
    }
}

fn link_card(ctx: &Ctx, l: &PendingLink) -> Markup {
    let r = &l.report;
    html! {
        li.pending-link data-report-id=(r.id) data-study-uid=(l.study_uid) {
            div.card-head {
                h3 { "Report " (r.id) " → study " (l.study.as_ref().and_then(|s| s.accession_number.as_deref()).unwrap_or(&l.study_uid)) }
                span.state.warn { "? Probable" }
            }
            div.columns {
                div {
                    h4 { "The report" }
                    dl.facts {
                        dt { "Status" } dd { (r.status.as_str()) }
                        dt { "Received" } dd { (ctx.time_ago(r.received_at)) }
                        @if let Some(t) = r.exam_at { dt { "Exam time" } dd { (ctx.time(t)) } }
                        dt { "Patient ID" } dd { (patient_ids(r)) }
                        dt { "Accession" } dd { (r.accession_number.as_deref().unwrap_or("—")) }
                        @if let Some(p) = &r.procedure { dt { "Procedure" } dd { (p) } }
                        @if let Some(a) = &r.author { dt { "Reported by" } dd { (a) } }
                    }
                }
                div {
                    h4 { "The study it may belong to" }
                    (study_facts(ctx, &l.study_uid, l.study.as_ref()))
                }
            }
            form.decide-link method="post" action=(format!("/reports/{}/confirm", r.id)) {
                (ctx.csrf_field())
                input type="hidden" name="study_uid" value=(l.study_uid);
                div.decide {
                    button type="submit" name="decision" value="confirm" { "Confirm: it belongs to this study" }
                    button.danger type="submit" name="decision" value="reject" { "Reject: not this study" }
                }
            }
        }
    }
}

fn manual_form(ctx: &Ctx) -> Markup {
    html! {
        form.manual-link #manual-link-form method="post" action="/reports" {
            (ctx.csrf_field())
            div.fields {
                div.field {
                    label for="link-accession" { "Accession number" }
                    input #link-accession type="text" name="accession" maxlength="64" autocomplete="off";
                }
                div.field {
                    label for="link-study-uid" { "or Study Instance UID" }
                    input #link-study-uid type="text" name="study_uid" maxlength="64" size="40" autocomplete="off" inputmode="decimal";
                }
                div.field {
                    label for="link-status" { "Status" }
                    select #link-status name="status" {
                        option value="final" selected { "Final" }
                        option value="corrected" { "Corrected" }
                        option value="preliminary" { "Preliminary (does not stop the clock)" }
                        option value="cancelled" { "Order cancelled" }
                    }
                }
                div.field {
                    label for="link-author" { "Reported by " span.hint { "(optional)" } }
                    input #link-author type="text" name="author" maxlength="200" autocomplete="off";
                }
                div.field {
                    label for="link-time" { "Reported at " span.hint { "(optional; now when empty)" } }
                    input #link-time type="datetime-local" name="time";
                }
                div.field { button type="submit" { "Record the report" } }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DecideForm {
    csrf: String,
    study_uid: String,
    /// `confirm` or `reject`.
    decision: String,
}

/// `POST /reports/{id}/confirm`: a person decides a probable link.
pub async fn confirm(
    State(state): State<AppState>,
    Path(id): Path<String>,
    actor: Result<Option<Actor>, ApiError>,
    HtmlForm(form): HtmlForm<DecideForm>,
) -> Result<Response, PageError> {
    let actor = match poster(actor, &form.csrf, "/reports") {
        Ok(actor) => actor,
        Err(answer) => return Ok(*answer),
    };
    let id = parse_id(&id, "report")?;
    let uid = Uid::parse(form.study_uid.trim())
        .map_err(|e| {
            PageError::unprocessable(format!("The study UID is not valid: {e}.")).back("/reports")
        })?
        .to_string();
    let confirm = match form.decision.as_str() {
        "confirm" => true,
        "reject" => false,
        _ => {
            return Err(
                PageError::unprocessable("Choose whether to confirm or reject the link.")
                    .back("/reports"),
            );
        }
    };
    let now = state.now();
    let by = actor.name;
    let study = uid.clone();
    let decided = state
        .catalog
        .call(move |store| store.decide_link(id, &study, confirm, &by, now))
        .await?;
    if !decided {
        return Err(PageError::new(
            StatusCode::CONFLICT,
            format!("Report {id} has no probable link to study {uid} waiting for a decision."),
        )
        .back("/reports"));
    }
    let key = if confirm { "confirmed" } else { "rejected" };
    Ok(see_other(&format!("/reports?{key}={id}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LinkForm {
    csrf: String,
    accession: String,
    study_uid: String,
    status: String,
    author: String,
    time: String,
}

/// `POST /reports`: a report entered by hand, linked like any other.
pub async fn link(
    State(state): State<AppState>,
    actor: Result<Option<Actor>, ApiError>,
    HtmlForm(form): HtmlForm<LinkForm>,
) -> Result<Response, PageError> {
    let actor = match poster(actor, &form.csrf, "/reports") {
        Ok(actor) => actor,
        Err(answer) => return Ok(*answer),
    };
    let now = state.now();
    let report = crate::reports::manual::manual_report(
        ReportOrigin::Manual,
        Some(&form.accession),
        Some(&form.study_uid),
        &form.status,
        Some(&form.time),
        Some(&form.author),
        &actor.name,
        &state.config.site.timezone,
        now,
    )
    .map_err(|e| {
        PageError::unprocessable(format!("The report was not recorded: {e}.")).back("/reports")
    })?;
    let (id, _links) = state
        .catalog
        .call(move |store| store.record_report(&report))
        .await?;
    Ok(see_other(&format!("/reports?linked={id}")))
}
