//! `GET /studies/{uid}`: one study's story — where it stands against its
//! deadline and rule, its reports and how each was linked, its alarms, a
//! timeline of everything that happened to it (from the audit log), what
//! arrived by series, and any integrity problem.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use jiff::Timestamp;
use maud::{Markup, html};

use super::layout::{Ctx, Nav, Page, PageError};
use super::worklist::{classify, state_label};
use super::{format, here};
use crate::catalog::dashboard::StudyAlarm;
use crate::catalog::{AlarmFilter, AlarmRow, ConflictRow, StudyDetail};
use crate::http::AppState;
use crate::http::auth::Viewer;
use crate::uid::Uid;

/// Timeline entries shown (the latest).
const TIMELINE: usize = 300;
/// Alarms, failures and conflicts shown.
const LIST: usize = 50;

struct Data {
    detail: StudyDetail,
    alarms: Vec<AlarmRow>,
    live: Option<StudyAlarm>,
    conflicts: Vec<ConflictRow>,
}

/// One event on the timeline.
struct Event {
    at: Timestamp,
    /// `alarm`, `report`, `person` or `system`: the dot's colour.
    class: &'static str,
    what: String,
    who: Option<String>,
    detail: String,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: Uri,
    Path(uid): Path<String>,
) -> Result<Response, PageError> {
    let uid = Uid::parse(&uid)
        .map_err(|_| PageError::not_found("That is not a valid Study Instance UID."))?
        .to_string();
    let ctx = Ctx::new(&state, viewer);
    let wanted = uid.clone();
    let data = state
        .readers
        .read(move |store| {
            let Some(detail) = store.study(&wanted)? else {
                return Ok(None);
            };
            let alarms = store.alarms(&AlarmFilter {
                study_uid: Some(wanted.clone()),
                limit: Some(LIST),
                ..AlarmFilter::default()
            })?;
            let live = store
                .study_alarms(std::slice::from_ref(&wanted))?
                .into_iter()
                .next();
            let conflicts = store.study_conflicts(&wanted, LIST)?;
            Ok(Some(Data {
                detail,
                alarms,
                live,
                conflicts,
            }))
        })
        .await?
        .ok_or_else(|| PageError::not_found(format!("No study {uid} is in the catalog.")))?;
    let s = &data.detail.study;
    let title = match &s.accession_number {
        Some(acc) => format!("Study {acc}"),
        None => "Study".to_owned(),
    };
    let row_state = classify(s, data.live.as_ref(), ctx.now);
    let main = html! {
        div.card-head {
            h1 { (title) }
            span #study-state { (state_label(row_state, data.live.as_ref())) }
        }
        p.lead.mono #study-uid { (s.study_uid) }
        div.columns {
            section.panel #deadline aria-labelledby="deadline-title" {
                h2 #deadline-title { "Deadline" }
                dl.facts {
                    dt { "State" } dd { (s.state(ctx.now).as_str().replace('_', " ")) }
                    dt { "Deadline" }
                    dd {
                        @match s.deadline {
                            Some(d) => { (ctx.time(d)) " " span.ago { "(" (format::to_deadline(d, ctx.now)) ")" } }
                            None => { "not computed yet" }
                        }
                    }
                    dt { "Rule" }
                    dd {
                        @match &s.rule {
                            Some(r) => { (r) }
                            None => { "none matched: reported within 28 days at the latest" }
                        }
                        @if s.no_report_needed { " (needs no report)" }
                    }
                    dt { "Formally reported" }
                    dd {
                        @match s.reported_at {
                            Some(t) => { (ctx.time(t)) }
                            None => { "not yet" }
                        }
                    }
                    @if let Some(st) = &s.report_status { dt { "Latest report" } dd { (st) } }
                }
            }
            section.panel #study-facts aria-labelledby="facts-title" {
                h2 #facts-title { "The study" }
                dl.facts {
                    dt { "Patient ID" }
                    dd {
                        (s.patient_id.as_deref().unwrap_or("—"))
                        @if let Some(i) = &s.issuer_of_patient_id { " (" (i) ")" }
                    }
                    dt { "Accession" }
                    dd {
                        (s.accession_number.as_deref().unwrap_or("—"))
                        @if let Some(i) = &s.issuer_of_accession { " (" (i) ")" }
                    }
                    dt { "Study date" } dd { (format::dicom_date_time(s.study_date.as_deref(), s.study_time.as_deref())) }
                    dt { "Description" } dd #study-description { (s.study_description.as_deref().unwrap_or("—")) }
                    dt { "Modality" } dd { (s.modalities.join(", ")) }
                    dt { "Source" } dd { (s.source) " (calling AE " span.mono { (s.calling_ae) } ")" }
                    @if let Some(i) = &s.institution_name { dt { "Institution" } dd { (i) } }
                    @if let Some(r) = &s.referring_physician { dt { "Referrer" } dd { (r) } }
                    dt { "First received" } dd { (ctx.time_ago(s.first_received_at)) }
                    dt { "Last received" } dd { (ctx.time_ago(s.last_received_at)) }
                    dt { "Received" } dd { (format::plural(s.instance_count, "instance", "instances")) " in " (format::count(s.series_count)) " series" }
                }
            }
        }
        (reports(&ctx, &data.detail))
        (alarms(&ctx, &data.alarms))
        (timeline(&ctx, &data.detail))
        (series(&ctx, &data.detail))
        (delivery(&ctx, &data.detail))
        (integrity(&ctx, &data.detail, &data.conflicts))
    };
    Ok(Page {
        title,
        nav: Nav::None,
        here: here(&uri),
        has_input: false,
        flash: None,
        ctx: &ctx,
    }
    .render(main))
}

fn reports(ctx: &Ctx, d: &StudyDetail) -> Markup {
    let uid = &d.study.study_uid;
    html! {
        section #study-reports aria-labelledby="reports-title" {
            h2 #reports-title { "Reports" }
            @if d.reports.is_empty() {
                p.empty { "No report is linked to this study." }
            } @else {
                div.table-wrap {
                    table.stack {
                        thead { tr {
                            th scope="col" { "Report" } th scope="col" { "Status" } th scope="col" { "Counts?" }
                            th scope="col" { "Linked" } th scope="col" { "From" } th scope="col" { "Received" }
                            th scope="col" { "Reported" } th scope="col" { "By" }
                        } }
                        tbody {
                            @for r in &d.reports {
                                @let link = r.links.iter().find(|l| &l.study_uid == uid);
                                tr data-report-id=(r.id) {
                                    td data-label="Report" { (r.id) }
                                    td data-label="Status" {
                                        (r.status.as_str())
                                        @if r.withdrawn { " (withdrawn)" }
                                        @if r.superseded_by.is_some() { " (replaced by a later report)" }
                                        @if let Some(c) = &r.alert_category {
                                            " " span.state.bad { "▲ " (format::alert_category(c)) }
                                            @if let Some(by) = &r.alert_acknowledged_by { " acknowledged by " (by) }
                                        }
                                    }
                                    td data-label="Counts?" {
                                        @if link.is_some_and(|l| l.counts()) && r.superseded_by.is_none() && !r.withdrawn && r.status.is_formal() { "yes" } @else { "no" }
                                    }
                                    td data-label="Linked" {
                                        @if let Some(l) = link {
                                            (format::link_rule(l.rule.as_str()))
                                            @match l.confirmation.as_deref() {
                                                Some("confirmed") => { ", confirmed" @if let Some(by) = &l.confirmed_by { " by " (by) } }
                                                Some("rejected") => { ", rejected" @if let Some(by) = &l.confirmed_by { " by " (by) } }
                                                _ => { @if l.probable { ", " a href="/reports" { "awaiting confirmation" } } }
                                            }
                                        }
                                    }
                                    td data-label="From" {
                                        (format::origin(r.origin.as_str()))
                                        @if let Some(by) = &r.recorded_by { " by " (by) }
                                    }
                                    td data-label="Received" { (ctx.time(r.received_at)) }
                                    td data-label="Reported" { @if let Some(t) = r.reported_at { (ctx.time(t)) } @else { "—" } }
                                    td data-label="By" { (r.author.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn alarms(ctx: &Ctx, alarms: &[AlarmRow]) -> Markup {
    html! {
        section #study-alarms aria-labelledby="alarms-title" {
            h2 #alarms-title { "Alarms" }
            @if alarms.is_empty() {
                p.empty { "This study has never alarmed." }
            } @else {
                ul.cards {
                    @for a in alarms {
                        li.(a.state) #{"alarm-" (a.id)} {
                            div.card-head {
                                h3 { a href=(format!("/alarms#alarm-{}", a.id)) { "Alarm " (a.id) } ": " (format::alarm_kind(&a.kind)) }
                                span.state.(a.state) { (a.state) }
                            }
                            dl.facts {
                                dt { "Raised" } dd { (ctx.time(a.raised_at)) }
                                dt { "Steps sent" } dd { (a.next_step) }
                                @if let Some(at) = a.acknowledged_at {
                                    dt { "Acknowledged" }
                                    dd {
                                        (ctx.time(at))
                                        @if let Some(by) = &a.acknowledged_by { " by " (by) }
                                        @if let Some(reason) = &a.ack_reason { ": " (reason) }
                                    }
                                }
                                @if let Some(at) = a.resolved_at {
                                    dt { "Resolved" }
                                    dd { (ctx.time(at)) @if let Some(why) = &a.resolved_reason { ": " (why) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn timeline(ctx: &Ctx, d: &StudyDetail) -> Markup {
    let s = &d.study;
    let mut events: Vec<Event> = d
        .audit
        .iter()
        .map(|a| {
            let person = a.actor != "system";
            Event {
                at: a.at,
                class: if person {
                    "person"
                } else if a.action.starts_with("alarm") || a.action.starts_with("notif") {
                    "alarm"
                } else if a.action.contains("report") || a.action.starts_with("link") {
                    "report"
                } else {
                    "system"
                },
                what: format::action(&a.action).to_owned(),
                who: person.then(|| a.actor.clone()),
                detail: a.detail.clone(),
            }
        })
        .collect();
    if s.last_received_at > s.first_received_at {
        events.push(Event {
            at: s.last_received_at,
            class: "system",
            what: "Last instance received".to_owned(),
            who: None,
            detail: format!(
                "{} instances in {} series so far",
                s.instance_count, s.series_count
            ),
        });
    }
    // A report's arrival is audited without its study (it may have none
    // yet): add the arrivals of the reports linked here.
    for r in &d.reports {
        events.push(Event {
            at: r.received_at,
            class: "report",
            what: format!("Report {} received: {}", r.id, r.status.as_str()),
            who: r.recorded_by.clone(),
            detail: format!(
                "{}{}",
                format::origin(r.origin.as_str()),
                r.author
                    .as_deref()
                    .map(|a| format!(", reported by {a}"))
                    .unwrap_or_default()
            ),
        });
    }
    events.sort_by_key(|e| e.at);
    let hidden = events.len().saturating_sub(TIMELINE);
    html! {
        section #timeline-section aria-labelledby="timeline-title" {
            h2 #timeline-title { "Timeline" }
            @if hidden > 0 {
                p.hint { "The " (format::count(hidden as u64)) " earliest entries are not shown; `studywatch audit --study " (s.study_uid) "` lists them all." }
            }
            ol.timeline #timeline {
                @for e in events.iter().skip(hidden) {
                    li.(e.class) {
                        (ctx.time(e.at)) " "
                        span.what { (e.what) }
                        @if let Some(who) = &e.who { " by " strong.who { (who) } }
                        @if !e.detail.is_empty() { br; span.detail { (e.detail) } }
                    }
                }
            }
        }
    }
}

fn series(ctx: &Ctx, d: &StudyDetail) -> Markup {
    html! {
        section #series aria-labelledby="series-title" {
            h2 #series-title { "Series" }
            div.table-wrap {
                table.stack {
                    thead { tr {
                        th scope="col" { "Number" } th scope="col" { "Modality" } th scope="col" { "Description" }
                        th scope="col" class="num" { "Instances" } th scope="col" class="num" { "Size" }
                        th scope="col" { "Transfer syntax" } th scope="col" { "Received" }
                    } }
                    tbody {
                        @for se in &d.series {
                            @let instances: Vec<_> = d.instances.iter().filter(|i| i.series_uid == se.series_uid).collect();
                            @let size: u64 = instances.iter().map(|i| i.size_bytes).sum();
                            @let syntaxes: BTreeSet<&str> = instances.iter().map(|i| i.transfer_syntax.as_str()).collect();
                            tr data-series-uid=(se.series_uid) {
                                td data-label="Number" { @if let Some(n) = se.series_number { (n) } @else { "—" } }
                                td data-label="Modality" { (se.modality.as_deref().unwrap_or("—")) }
                                td data-label="Description" { (se.series_description.as_deref().unwrap_or("—")) }
                                td.num data-label="Instances" { (format::count(se.instance_count)) }
                                td.num data-label="Size" { (format::bytes(size)) }
                                td.mono data-label="Transfer syntax" { (syntaxes.into_iter().collect::<Vec<_>>().join(", ")) }
                                td data-label="Received" {
                                    (ctx.time(se.first_received_at))
                                    @if se.last_received_at > se.first_received_at { " to " (ctx.time(se.last_received_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Received → verified → forwarded → committed in PACS, per destination,
/// with stability, completeness and local pruning.
fn delivery(ctx: &Ctx, d: &StudyDetail) -> Markup {
    let t = &d.transfer;
    let destinations = crate::json::forwarding(&d.delivery);
    let pruned = d.instances.iter().filter(|i| i.pruned_at.is_some()).count() as u64;
    html! {
        section #delivery aria-labelledby="delivery-title" {
            h2 #delivery-title { "Delivery" }
            dl.facts {
                dt { "Received and verified" } dd { (format::plural(d.study.instance_count, "instance", "instances")) }
                dt { "Stable" }
                dd #study-stable {
                    @match t.stable_at {
                        Some(at) => { "since " (ctx.time(at)) }
                        None => { "no: instances may still arrive" }
                    }
                }
                dt { "Complete at the sender" }
                dd #study-completeness {
                    @match t.completeness.as_deref() {
                        None => { "not checked (the sender is not set up for query/retrieve)" }
                        Some("checking") => { "being checked" }
                        Some(state) => {
                            span.state.good[state == "complete"].bad[state == "incomplete"] { (state) }
                            @if let Some(detail) = &t.completeness_detail { ": " (detail) }
                        }
                    }
                }
                @if pruned > 0 {
                    dt { "Local copies" } dd { (format::plural(pruned, "instance", "instances")) " pruned after every destination had them" }
                }
            }
            @if destinations.is_empty() {
                p.empty { "No forward destination takes this study." }
            } @else {
                div.table-wrap {
                    table.stack #study-forwarding {
                        thead { tr {
                            th scope="col" { "Destination" } th scope="col" class="num" { "Waiting" }
                            th scope="col" class="num" { "Forwarded" } th scope="col" class="num" { "Failed" }
                            th scope="col" class="num" { "Committed in PACS" } th scope="col" { "Last committed" }
                        } }
                        tbody {
                            @for f in &destinations {
                                tr data-destination=(f.destination) {
                                    td data-label="Destination" { (f.destination) }
                                    td.num data-label="Waiting" { (format::count(f.pending)) }
                                    td.num data-label="Forwarded" { (format::count(f.sent)) }
                                    td.num data-label="Failed" { (format::count(f.failed)) }
                                    td.num data-label="Committed in PACS" {
                                        @if f.commits {
                                            (format::count(f.committed))
                                            @if f.commit_failed > 0 { " (" (format::count(f.commit_failed)) " refused)" }
                                        } @else { "—" }
                                    }
                                    td data-label="Last committed" { (f.last_committed_at.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn integrity(ctx: &Ctx, d: &StudyDetail, conflicts: &[ConflictRow]) -> Markup {
    html! {
        section #integrity aria-labelledby="integrity-title" {
            h2 #integrity-title { "Integrity" }
            @if d.failures.is_empty() && conflicts.is_empty() {
                p.empty { span.state.good { "✓ Intact" } " Every instance offered for this study was stored; none was refused or resent with different content." }
            }
            @if !d.failures.is_empty() {
                h3 { "Refused instances" }
                ul #study-failures {
                    @for f in d.failures.iter().take(LIST) {
                        li {
                            (ctx.time(f.at)) ": " span.mono { (format!("0x{:04X}", f.status)) } " from " (f.calling_ae) ": " (f.reason)
                        }
                    }
                }
            }
            @if !conflicts.is_empty() {
                h3 { "Resent with different content" }
                ul #study-conflicts {
                    @for c in conflicts {
                        li {
                            (ctx.time(c.at)) ": SOP instance " span.mono { (c.sop_instance_uid) } " from " (c.calling_ae)
                            "; the new content is kept aside, the stored file is unchanged."
                        }
                    }
                }
            }
        }
    }
}
