//! The backlog chart: how many studies were waiting for a report at the
//! end of each of the last 30 days (the last point is now), as SVG drawn on
//! the server — inline on the worklist, and alone at `GET /backlog.svg`.
//!
//! A study counts at a day's end when it had been received by then, needed
//! a report, and was not formally reported by then. Days are the site's
//! local days. The chart carries a title and a description for screen
//! readers, and the worklist shows its figures as a table too.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use maud::{Markup, html};

use super::format;
use super::layout::{Ctx, PageError};
use crate::catalog::Error;
use crate::http::AppState;

/// Points on the chart: the ends of the 29 days before today, and now.
pub const DAYS: usize = 30;

/// The chart's data.
#[derive(Clone, Debug)]
pub struct History {
    /// `(end of the day, the day's date, count)`, oldest first; the last
    /// point is now. `None`: not counted yet (being counted in the
    /// background).
    pub points: Vec<(Timestamp, jiff::civil::Date, Option<u64>)>,
}

/// The times the chart counts at, oldest first: local midnight ending each
/// of the 29 days before today, then `now`.
pub fn day_ends(now: Timestamp, tz: &TimeZone) -> Vec<Timestamp> {
    let today = now
        .to_zoned(tz.clone())
        .start_of_day()
        .unwrap_or_else(|_| now.to_zoned(tz.clone()));
    let mut ends: Vec<Timestamp> = (1..DAYS)
        .rev()
        .map(|back| {
            // Calendar days in the site's zone: DST changes keep midnight.
            let days = i64::try_from(back - 1).unwrap_or(0);
            today
                .checked_sub(jiff::Span::new().days(days))
                .map_or(now, |z| z.timestamp())
        })
        .collect();
    ends.push(now);
    ends
}

/// How long a past day's count is shown before it is counted again. The
/// past changes only when a report is back-dated or withdrawn, or a rule
/// changes; such a change shows on the chart within this time.
const FRESH: Duration = Duration::from_secs(600);
/// How long a page may spend counting; what is left is counted in the
/// background and shown at the next refresh.
const BUDGET: Duration = Duration::from_millis(50);

/// Past days' counts, per catalog file: a day's count needs a read of every
/// study reported since, which at a million studies takes longer than a
/// page may. Counts of whole days are kept here and refreshed in the
/// background; the last point (now) is always counted afresh.
static COUNTED: Mutex<Vec<Counted>> = Mutex::new(Vec::new());

struct Counted {
    catalog: PathBuf,
    points: BTreeMap<Timestamp, (u64, Instant)>,
    refreshing: bool,
}

fn counted() -> MutexGuard<'static, Vec<Counted>> {
    COUNTED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cached counts at `ends`, and whether any is missing or old.
fn cached(catalog: &Path, ends: &[Timestamp]) -> (Vec<Option<u64>>, bool) {
    let all = counted();
    let Some(c) = all.iter().find(|c| c.catalog == catalog) else {
        return (vec![None; ends.len()], true);
    };
    let mut stale = false;
    let counts = ends
        .iter()
        .map(|e| {
            let hit = c.points.get(e);
            stale |= hit.is_none_or(|(_, at)| at.elapsed() > FRESH);
            hit.map(|(n, _)| *n)
        })
        .collect();
    (counts, stale)
}

fn remember(catalog: &Path, ends: &[Timestamp], counts: &[Option<u64>]) {
    let mut all = counted();
    let at = Instant::now();
    let i = match all.iter().position(|c| c.catalog == catalog) {
        Some(i) => i,
        None => {
            all.push(Counted {
                catalog: catalog.to_path_buf(),
                points: BTreeMap::new(),
                refreshing: false,
            });
            all.len() - 1
        }
    };
    let c = &mut all[i];
    for (end, n) in ends.iter().zip(counts) {
        if let Some(n) = n {
            c.points.insert(*end, (*n, at));
        }
    }
    // Only the last 30 days are ever shown.
    if let Some(oldest) = ends.first() {
        c.points.retain(|end, _| end >= oldest);
    }
}

/// Counts `ends` in the background, unless that is already under way.
fn refresh(state: &AppState, ends: Vec<Timestamp>) {
    let catalog = state.config.catalog.path.clone();
    {
        let mut all = counted();
        match all.iter_mut().find(|c| c.catalog == catalog) {
            Some(c) if c.refreshing => return,
            Some(c) => c.refreshing = true,
            None => all.push(Counted {
                catalog: catalog.clone(),
                points: BTreeMap::new(),
                refreshing: true,
            }),
        }
    }
    let readers = state.readers.clone();
    tokio::spawn(async move {
        // Cleared however this task ends (even cancelled or panicking), so
        // that a later page can start another count.
        let _done = Refreshing(catalog.clone());
        let wanted = ends.clone();
        match readers
            .read(move |store| store.backlog_history(&wanted, None))
            .await
        {
            Ok(counts) => remember(&catalog, &ends, &counts),
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: counting the backlog's history failed");
            }
        }
    });
}

/// Marks the end of a background count for its catalog when dropped.
struct Refreshing(PathBuf);

impl Drop for Refreshing {
    fn drop(&mut self) {
        if let Some(c) = counted().iter_mut().find(|c| c.catalog == self.0) {
            c.refreshing = false;
        }
    }
}

/// The chart's points as of `now`: past days from the cache where known,
/// the rest counted within [`BUDGET`], now always counted; anything still
/// missing or old is counted in the background.
pub async fn history(state: &AppState, now: Timestamp, tz: &TimeZone) -> Result<History, Error> {
    let ends = day_ends(now, tz);
    let past = ends[..ends.len() - 1].to_vec();
    let catalog = state.config.catalog.path.clone();
    let (known, stale) = cached(&catalog, &past);
    let complete = known.iter().all(Option::is_some);
    // Only now when every past day is known; otherwise every end, the
    // latest first, for as long as the budget allows.
    let wanted = if complete { vec![now] } else { ends.clone() };
    let counts = state
        .readers
        .read(move |store| store.backlog_history(&wanted, Some(BUDGET)))
        .await?;
    let (counted_past, counted_now) = match counts.split_last() {
        Some((last, rest)) => (rest.to_vec(), *last),
        None => (Vec::new(), None),
    };
    let mut values = known;
    if !complete {
        remember(&catalog, &past, &counted_past);
        for (v, c) in values.iter_mut().zip(&counted_past) {
            if c.is_some() {
                *v = *c;
            }
        }
    }
    if stale || values.iter().any(Option::is_none) {
        refresh(state, past);
    }
    values.push(counted_now);
    let n = ends.len();
    Ok(History {
        points: ends
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, (end, count))| {
                // A point at local midnight stands for the day that ended.
                let within = if i + 1 == n {
                    *end
                } else {
                    end.checked_sub(jiff::SignedDuration::from_secs(1))
                        .unwrap_or(*end)
                };
                (*end, within.to_zoned(tz.clone()).date(), count)
            })
            .collect(),
    })
}

/// The chart inside a `<figure>`, with its figures as a table for whoever
/// cannot see it.
pub fn figure(h: &History, ctx: &Ctx) -> Markup {
    html! {
        figure.chart #backlog {
            (svg_markup(h))
            figcaption { "Studies waiting for a report at the end of each day (" (ctx.tz.iana_name().unwrap_or("UTC")) "), the last 30 days; the last point is now." }
            details {
                summary { "The figures" }
                div.table-wrap {
                    table #backlog-table {
                        thead { tr { th scope="col" { "Day" } th scope="col" class="num" { "Waiting at its end" } } }
                        tbody {
                            @for (i, (_, date, n)) in h.points.iter().enumerate() {
                                tr {
                                    td { (date.strftime("%a %-d %b").to_string()) @if i + 1 == h.points.len() { " (now)" } }
                                    td.num {
                                        @match n { Some(n) => { (format::count(*n)) } None => { "being counted" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /backlog.svg`: the chart alone.
pub async fn svg(State(state): State<AppState>) -> Result<Response, PageError> {
    let tz = state.config.site.timezone.clone();
    let h = history(&state, state.now(), &tz).await?;
    let markup = svg_markup(&h);
    let mut response = (StatusCode::OK, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml; charset=utf-8"),
    );
    Ok(response)
}

/// A round top for the y axis at or above `max`, and its tick step.
fn scale(max: u64) -> (u64, u64) {
    if max <= 4 {
        return (4, 1);
    }
    let raw = max.div_ceil(4);
    let mut magnitude = 1u64;
    while magnitude.saturating_mul(10) <= raw {
        magnitude *= 10;
    }
    let step = [1, 2, 5, 10]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10 * magnitude);
    (max.div_ceil(step) * step, step)
}

// Geometry of the drawing, in its own units.
const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;

/// The chart as an SVG element. Every element is written with an end tag,
/// so it is well-formed XML as well as HTML.
fn svg_markup(h: &History) -> Markup {
    let n = h.points.len();
    let max = h.points.iter().filter_map(|p| p.2).max().unwrap_or(0);
    let (top, step) = scale(max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| {
        if n <= 1 {
            LEFT
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / top as f64;
    // The line joins the points counted (all of them, but for days still
    // being counted after a start).
    let known: Vec<(usize, u64)> = h
        .points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.2.map(|v| (i, v)))
        .collect();
    let line: Vec<String> = known
        .iter()
        .map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v)))
        .collect();
    let area = match (known.first(), known.last()) {
        (Some((a, _)), Some((b, _))) => format!(
            "{:.1},{:.1} {} {:.1},{:.1}",
            x(*a),
            y(0),
            line.join(" "),
            x(*b),
            y(0)
        ),
        _ => String::new(),
    };
    let ticks: Vec<u64> = (0..=top / step).map(|k| k * step).collect();
    let pending = h.points.iter().filter(|p| p.2.is_none()).count();
    let desc = match (known.first(), h.points.last()) {
        (Some((i, first)), Some((_, _, Some(last)))) => format!(
            "{} studies were waiting at the end of {}; {} are waiting now. The highest was {}.{}",
            format::count(*first),
            h.points[*i].1.strftime("%-d %B"),
            format::count(*last),
            format::count(max),
            if pending > 0 {
                " The earlier days are still being counted."
            } else {
                ""
            }
        ),
        _ => "Not counted yet.".to_owned(),
    };
    html! {
        svg #backlog-chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}"))
            role="img" aria-labelledby="backlog-title backlog-desc"
            font-family="system-ui, sans-serif" font-size="13" {
            title #backlog-title { "Studies waiting for a report, last 30 days" }
            desc #backlog-desc { (desc) }
            text x=(LEFT) y="22" font-size="15" font-weight="700" fill="#1b1f24" { "Studies waiting for a report" }
            g.grid {
                @for t in &ticks {
                    line x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(*t))) y2=(format!("{:.1}", y(*t)))
                        stroke=(if *t == 0 { "#1b1f24" } else { "#d5dbe1" }) stroke-width="1" {}
                    text x=(LEFT - 8.0) y=(format!("{:.1}", y(*t) + 4.0)) text-anchor="end" fill="#4a5560" { (format::count(*t)) }
                }
            }
            line x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(TOP + plot_h) stroke="#1b1f24" stroke-width="1" {}
            g.x-labels {
                @for (i, p) in h.points.iter().enumerate() {
                    // One label a week, counted back from today, so today has one.
                    @if (n - 1 - i) % 7 == 0 {
                        line x1=(format!("{:.1}", x(i))) x2=(format!("{:.1}", x(i))) y1=(TOP + plot_h) y2=(TOP + plot_h + 5.0) stroke="#1b1f24" {}
                        text x=(format!("{:.1}", x(i))) y=(TOP + plot_h + 20.0) text-anchor="middle" fill="#4a5560" {
                            @if i + 1 == n { "now" } @else { (p.1.strftime("%-d %b").to_string()) }
                        }
                    }
                }
            }
            text x=(LEFT + plot_w / 2.0) y=(H - 10.0) text-anchor="middle" fill="#4a5560" {
                "End of each day" @if pending > 0 { " (earlier days still being counted)" }
            }
            @if !area.is_empty() {
                polygon points=(area) fill="#0b4f8a" fill-opacity="0.12" stroke="none" {}
                polyline points=(line.join(" ")) fill="none" stroke="#0b4f8a" stroke-width="3" stroke-linejoin="round" {}
            }
            g.points {
                @for (i, p) in h.points.iter().enumerate() {
                    @let when = if i + 1 == n { "Now".to_owned() } else { p.1.strftime("%a %-d %b").to_string() };
                    @match p.2 {
                        Some(v) => {
                            circle.point cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(v))) r="4" fill="#ffffff" stroke="#0b4f8a" stroke-width="2" data-count=(v) {
                                title { (when) ": " (format::count(v)) " waiting" }
                            }
                        }
                        None => {
                            circle.pending cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(0))) r="3" fill="#d5dbe1" stroke="none" {
                                title { (when) ": still being counted" }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round() {
        assert_eq!(scale(0), (4, 1));
        assert_eq!(scale(3), (4, 1));
        assert_eq!(scale(7), (8, 2));
        assert_eq!(scale(10_000), (10_000, 5_000));
        for max in [5, 9, 99, 101, 1_234, 10_431, 999_999] {
            let (top, step) = scale(max);
            assert!(top >= max && top % step == 0, "{max}: {top} {step}");
            assert!((2..=8).contains(&(top / step)), "{max}: {top} {step}");
        }
    }

    #[test]
    fn day_ends_are_local_midnights_across_dst() {
        let tz = TimeZone::get("Europe/London").expect("zone");
        // The clocks went back on 25 October 2026.
        let now: Timestamp = "2026-11-10T12:00:00Z".parse().expect("time");
        let ends = day_ends(now, &tz);
        assert_eq!(ends.len(), DAYS);
        assert_eq!(ends[DAYS - 1], now);
        for end in &ends[..DAYS - 1] {
            let local = end.to_zoned(tz.clone());
            assert_eq!((local.hour(), local.minute()), (0, 0), "{local}");
        }
        // Midnight starting 13 October (BST) is 23:00 UTC on the 12th.
        assert_eq!(ends[0].to_string(), "2026-10-12T23:00:00Z");
        assert_eq!(ends[DAYS - 2].to_string(), "2026-11-10T00:00:00Z");
    }
}
