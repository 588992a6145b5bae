//! `GET /health`: is everything arriving, and is every warning getting out?
//! Instances received today and refused (by status), integrity conflicts,
//! storage space against its floor, the DICOM and HL7 peers heard from in
//! the last 24 hours, and the notification outbox. A failure to deliver a
//! notification must never be silent: it shows here.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use maud::{Markup, html};

use super::layout::{Ctx, Nav, Page, PageError};
use super::{format, here};
use crate::catalog::ConflictRow;
use crate::catalog::dashboard::{CallerSeen, Hl7Sender, IngestToday, OutboxHealth};
use crate::http::AppState;
use crate::http::auth::Viewer;

/// Peers are listed when heard from within this window.
const WINDOW_HOURS: i64 = 24;

struct Data {
    today: IngestToday,
    conflicts: (Vec<ConflictRow>, u64),
    callers: Vec<CallerSeen>,
    last_hl7: Option<Timestamp>,
    senders: Vec<Hl7Sender>,
    outbox: OutboxHealth,
    free: Result<u64, String>,
}

/// The start of the site's local day containing `now`.
fn start_of_day(now: Timestamp, tz: &jiff::tz::TimeZone) -> Timestamp {
    now.to_zoned(tz.clone())
        .start_of_day()
        .map_or(now, |z| z.timestamp())
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    uri: Uri,
) -> Result<Response, PageError> {
    let ctx = Ctx::new(&state, viewer);
    let midnight = start_of_day(ctx.now, &ctx.tz);
    let window = ctx
        .now
        .checked_sub(SignedDuration::from_hours(WINDOW_HOURS))
        .unwrap_or(ctx.now);
    let storage = state.config.storage.path.clone();
    // Two halves on two read connections at once: the DICOM side and the
    // HL7 and notification side each read a day of rows.
    let dicom = state.readers.read(move |store| {
        Ok((
            store.ingest_since(midnight, 10)?,
            store.recent_conflicts(5)?,
            store.callers_since(window)?,
            // statvfs blocks briefly: it runs here, on the reader's
            // blocking thread, too.
            crate::storage::free_bytes(&storage).map_err(|e| e.to_string()),
        ))
    });
    let feeds = state.readers.read(move |store| {
        Ok((
            store.last_hl7_message_at()?,
            store.hl7_senders_since(window)?,
            store.outbox_health(5)?,
        ))
    });
    let (dicom, feeds) = tokio::join!(dicom, feeds);
    let ((today, conflicts, callers, free), (last_hl7, senders, outbox_health)) = (dicom?, feeds?);
    let data = Data {
        today,
        conflicts,
        callers,
        last_hl7,
        senders,
        outbox: outbox_health,
        free,
    };
    let floor = state.config.storage.min_free_bytes;
    let peers = &state.config.dicom.peers;
    let silent: Vec<_> = peers
        .iter()
        .filter(|p| !data.callers.iter().any(|c| c.calling_ae == p.ae_title))
        .collect();
    let main = html! {
        h1 { "Health" }
        p.lead { "What arrived today, what was refused, and whether warnings are getting out." }
        ul.figures {
            li.figure.good #instances-today {
                span.value { (format::count(data.today.instances)) }
                span.label { "instances received today" }
            }
            li.figure #studies-today {
                span.value { (format::count(data.today.studies)) }
                span.label { "studies that received instances today (" (format::count(data.today.new_studies)) " new)" }
            }
            li.figure.(if data.today.rejected > 0 { "bad" } else { "good" }) #rejected-today {
                span.value { (format::count(data.today.rejected)) }
                span.label { "instances refused today" }
            }
            li.figure.(if data.outbox.failed > 0 { "bad" } else if data.outbox.pending > 0 { "warn" } else { "good" }) #outbox-figure {
                span.value { (format::count(data.outbox.pending)) }
                span.label { "notifications waiting to be sent" }
            }
            (storage_figure(&data.free, floor))
        }
        section.panel #rejections aria-labelledby="rejections-title" {
            h2 #rejections-title { "Instances refused today" }
            @if data.today.rejections.is_empty() {
                p.empty { "None." }
            } @else {
                div.table-wrap {
                    table.stack {
                        thead { tr {
                            th scope="col" { "Status" } th scope="col" class="num" { "Count" }
                            th scope="col" { "Latest" } th scope="col" { "Latest reason" } th scope="col" { "Calling AE" }
                        } }
                        tbody {
                            @for g in &data.today.rejections {
                                tr data-status=(format!("{:04X}", g.status)) {
                                    td data-label="Status" { span.mono { (format!("0x{:04X}", g.status)) } " " (crate::scp::status_name(g.status)) }
                                    td.num data-label="Count" { (format::count(g.count)) }
                                    td data-label="Latest" { (ctx.time_ago(g.last_at)) }
                                    td data-label="Latest reason" { (g.latest_reason) }
                                    td data-label="Calling AE" { (g.calling_aes.join(", ")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.panel #conflicts aria-labelledby="conflicts-title" {
            h2 #conflicts-title { "Integrity conflicts" }
            @if data.conflicts.0.is_empty() {
                p.empty { "No instance has ever been resent with different content." }
            } @else {
                p { (format::count(data.conflicts.1)) " in all: an instance resent under a stored SOP Instance UID with different content. The new content is kept aside, never stored over the old. The latest:" }
                ul {
                    @for c in &data.conflicts.0 {
                        li {
                            (ctx.time_ago(c.at)) ": SOP instance " span.mono { (c.sop_instance_uid) } " from " (c.calling_ae)
                            @if let Some(uid) = &c.study_uid { " in " a href=(format!("/studies/{uid}")) { "its study" } }
                        }
                    }
                }
            }
        }
        section.panel #peers aria-labelledby="peers-title" {
            h2 #peers-title { "DICOM senders in the last 24 hours" }
            @if data.callers.is_empty() {
                p.empty { "No instance has arrived in the last 24 hours." }
            } @else {
                div.table-wrap {
                    table.stack #callers {
                        thead { tr {
                            th scope="col" { "Calling AE" } th scope="col" { "Source" }
                            th scope="col" { "Last instance" } th scope="col" class="num" { "Studies" }
                        } }
                        tbody {
                            @for c in &data.callers {
                                tr data-calling-ae=(c.calling_ae) {
                                    td data-label="Calling AE" { span.mono { (c.calling_ae) } }
                                    td data-label="Source" { (c.source) }
                                    td data-label="Last instance" { (ctx.time_ago(c.last_received_at)) }
                                    td.num data-label="Studies" { (format::count(c.studies)) }
                                }
                            }
                        }
                    }
                }
                p.hint { "Each study counts under the AE that sent its first instance." }
            }
            @if !silent.is_empty() {
                h3 { "Known peers not heard from in 24 hours" }
                ul #silent-peers {
                    @for p in &silent {
                        li { span.state.warn { "! Silent" } " " span.mono { (p.ae_title) } " (" (p.source) ")" }
                    }
                }
            }
        }
        section.panel #hl7 aria-labelledby="hl7-title" {
            h2 #hl7-title { "HL7 reports feed" }
            p #hl7-last {
                "Last message: "
                @match data.last_hl7 {
                    Some(t) => { (ctx.time_ago(t)) }
                    None => { "none received yet." }
                }
            }
            @if !data.senders.is_empty() {
                div.table-wrap {
                    table.stack #hl7-senders {
                        thead { tr {
                            th scope="col" { "Application" } th scope="col" { "Facility" }
                            th scope="col" class="num" { "Messages (24 h)" } th scope="col" class="num" { "Refused" }
                            th scope="col" { "Last" }
                        } }
                        tbody {
                            @for s in &data.senders {
                                tr {
                                    td data-label="Application" { (s.application) }
                                    td data-label="Facility" { (s.facility) }
                                    td.num data-label="Messages (24 h)" { (format::count(s.messages)) }
                                    td.num data-label="Refused" {
                                        @if s.refused > 0 { span.state.bad { (format::count(s.refused)) } } @else { "0" }
                                    }
                                    td data-label="Last" { (ctx.time_ago(s.last_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        (outbox(&ctx, &data.outbox))
    };
    Ok(Page {
        title: "Health".to_owned(),
        nav: Nav::Health,
        here: here(&uri),
        has_input: false,
        flash: None,
        ctx: &ctx,
    }
    .render(main))
}

fn storage_figure(free: &Result<u64, String>, floor: u64) -> Markup {
    match free {
        Ok(free) => {
            // The watchdog raises storage_low below twice the floor; below
            // the floor itself every store is refused (0xA700).
            let (class, state) = if *free < floor {
                ("bad", "▲ Full: instances are being refused")
            } else if *free < floor.saturating_mul(2) {
                ("warn", "! Low")
            } else {
                ("good", "✓ OK")
            };
            html! {
                li.figure.(class) #storage data-free-bytes=(free) data-floor-bytes=(floor) {
                    span.value { (format::bytes(*free)) }
                    span.label { "free for storage (floor " (format::bytes(floor)) "): " strong { (state) } }
                }
            }
        }
        Err(e) => html! {
            li.figure.bad #storage {
                span.value { "?" }
                span.label { "free space unknown: " (e) }
            }
        },
    }
}

fn outbox(ctx: &Ctx, o: &OutboxHealth) -> Markup {
    html! {
        section.panel #outbox aria-labelledby="outbox-title" {
            h2 #outbox-title { "Notifications" }
            dl.facts {
                dt { "Waiting to be sent" } dd #outbox-pending { (format::count(o.pending)) }
                @if let Some(t) = o.oldest_pending {
                    dt { "Oldest waiting since" } dd { (ctx.time_ago(t)) }
                }
                dt { "Given up" }
                dd #outbox-failed {
                    @if o.failed > 0 { span.state.bad { "▲ " (format::count(o.failed)) } } @else { "0" }
                }
            }
            @if !o.recent_failed.is_empty() {
                h3 { "Latest notifications given up" }
                ul #outbox-failures {
                    @for n in &o.recent_failed {
                        li {
                            (ctx.time(n.created_at)) " to " strong { (n.channel) }
                            @if let Some(a) = n.alarm_id { " for " a href="/alarms" { "alarm " (a) } }
                            " after " (n.attempts) " attempts: "
                            span.detail { (n.last_error.as_deref().unwrap_or("no error recorded")) }
                        }
                    }
                }
            }
        }
    }
}
