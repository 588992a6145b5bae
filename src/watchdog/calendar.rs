//! Working hours and bank holidays: when a working-time deadline falls.
//!
//! This module is pure arithmetic on explicit instants. It owns three things:
//! [`WorkingHours`] (the weekly working periods from config), [`Calendar`] (bank
//! holidays from a data file under `conf/calendars/`) and [`Clock`], which combines
//! them with the site time zone to answer "is this instant working time?" and "when
//! does a deadline of this much working time fall?".
//!
//! It must never read the system clock: every function takes the times it works
//! on, so that deadline arithmetic is tested with explicit times (STYLE.md). The
//! only I/O is [`Calendar::load`], which reads one file. No input makes it panic or
//! loop without bound: every scan over days is capped (see [`MAX_IDLE_DAYS`]).
//!
//! Working periods are local wall-clock times in the site zone. A local time that
//! does not exist (in a spring-forward gap) or exists twice (in an autumn fold) is
//! resolved with jiff's `compatible` rule, as RFC 5545 and Temporal do: a time in a
//! gap moves forward by the gap's length, a time in a fold takes its first (earlier)
//! occurrence. A period that a DST change makes shorter or longer counts its real
//! elapsed length.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

/// How many consecutive days without any working time a [`Clock`] looks ahead
/// before it concludes that no working time is coming (all days closed, or a run
/// of holidays longer than any real one).
pub const MAX_IDLE_DAYS: i32 = 400;

/// How far ahead the bank-holiday calendar must have data: the watchdog
/// raises `calendar_expiring` when any day of the next 90 is not covered, so
/// that a year is added a whole quarter before deadlines would start to count
/// its bank holidays as working days.
pub const CALENDAR_HORIZON_DAYS: i32 = 90;

/// The most days any one scan of a [`Clock`] looks at (about 109 years), so that
/// even an absurd duration ends in bounded time.
const MAX_SCAN_DAYS: i32 = 40_000;

/// The most working days [`Clock::add_working_days`] counts before it falls back to
/// calendar days (about 80 years of Monday-to-Friday).
const MAX_WORKING_DAYS: u32 = 20_000;

/// Config and render names of the weekdays, Monday first.
const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Full names of the weekdays, Monday first, for error messages.
const DAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const MINUTES_PER_DAY: u16 = 24 * 60;

/// One working period of a day: local wall-clock minutes since midnight,
/// `start < end <= 1440` (an end of 1440 is written "24:00").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Period {
    start: u16,
    end: u16,
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (start, end) = (self.start, self.end);
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            start / 60,
            start % 60,
            end / 60,
            end % 60
        )
    }
}

/// The working periods of each weekday, in the site's local wall-clock time.
///
/// Written in config as a table whose keys name days and whose values list
/// periods, e.g. `{ mon-fri = "08:00-12:30,13:30-18:00", sat = "09:00-12:00" }`;
/// days not named are closed. A value always has some working time in the week:
/// [`WorkingHours::parse`] refuses a week with none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkingHours {
    /// Sorted, non-overlapping periods per weekday, Monday first.
    days: [Vec<Period>; 7],
}

impl Default for WorkingHours {
    /// Monday to Friday, 08:00 to 18:00.
    fn default() -> Self {
        let mut days: [Vec<Period>; 7] = Default::default();
        for day in days.iter_mut().take(5) {
            day.push(Period {
                start: 8 * 60,
                end: 18 * 60,
            });
        }
        WorkingHours { days }
    }
}

impl WorkingHours {
    /// Parses a config table of working hours.
    ///
    /// Keys name a day (`mon` .. `sun`), a range of days (`mon-fri`; a range may
    /// wrap past Sunday, `sun-thu`), or a comma list of either (`sat,sun`). Values
    /// are one or more `HH:MM-HH:MM` periods separated by commas
    /// (`"08:00-12:30,13:30-18:00"`), or `"closed"` / `""`. A period cannot cross
    /// midnight (write `"22:00-24:00"` and `"00:00-06:00"` on the next day); periods
    /// of a day must not overlap (touching is fine). Days not named are closed.
    ///
    /// Errors name the key and the problem: a day named by two keys (which day, and
    /// both keys), an unknown day, a malformed or overlapping period, or a week with
    /// no working time at all (a working-hours deadline could then never fall).
    pub fn parse(table: &BTreeMap<String, String>) -> Result<WorkingHours, String> {
        let mut given: [Option<(&str, Vec<Period>)>; 7] = Default::default();
        for (key, value) in table {
            let periods =
                parse_periods(value).map_err(|e| format!("working hours `{key}`: {e}"))?;
            let days = parse_days(key).map_err(|e| format!("working hours `{key}`: {e}"))?;
            for day in days {
                let slot = given.get_mut(day).ok_or("internal: weekday out of range")?;
                if let Some((earlier, _)) = slot {
                    return Err(format!(
                        "working hours: {} is given twice, by `{earlier}` and by `{key}`",
                        day_name(day)
                    ));
                }
                *slot = Some((key, periods.clone()));
            }
        }
        let hours = WorkingHours {
            days: given.map(|day| day.map(|(_, periods)| periods).unwrap_or_default()),
        };
        if !hours.has_working_time() {
            return Err(
                "working hours: no day has any working time, so a working-hours \
                        deadline could never fall"
                    .to_owned(),
            );
        }
        Ok(hours)
    }

    /// The table form of these hours, as `check-config` prints the effective config.
    /// [`WorkingHours::parse`] accepts it back and returns an equal value. Days with
    /// the same periods share one key (`mon-fri` for three or more consecutive
    /// days, otherwise a comma list); closed days are listed as `"closed"`.
    pub fn render(&self) -> BTreeMap<String, String> {
        let mut groups: BTreeMap<&[Period], Vec<usize>> = BTreeMap::new();
        for (day, periods) in self.days.iter().enumerate() {
            groups.entry(periods.as_slice()).or_default().push(day);
        }
        groups
            .into_iter()
            .map(|(periods, days)| (render_days(&days), render_periods(periods)))
            .collect()
    }

    /// Whether any weekday has a working period.
    pub fn has_working_time(&self) -> bool {
        self.days.iter().any(|periods| !periods.is_empty())
    }

    /// The periods of `date`'s weekday.
    fn periods(&self, date: Date) -> &[Period] {
        let index = usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        self.days.get(index).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn day_name(day: usize) -> &'static str {
    DAY_NAMES.get(day).copied().unwrap_or("?")
}

/// Parses a key such as `mon`, `mon-fri`, `sat,sun` or `mon-wed,fri` into weekday
/// indexes (Monday = 0), refusing a day named twice within the key.
fn parse_days(key: &str) -> Result<Vec<usize>, String> {
    let mut days = Vec::new();
    for item in key.split(',') {
        let item_days = match item.split_once('-') {
            Some((first, last)) => day_range(parse_day(first)?, parse_day(last)?),
            None => vec![parse_day(item)?],
        };
        for day in item_days {
            if days.contains(&day) {
                return Err(format!("names {} twice", day_name(day)));
            }
            days.push(day);
        }
    }
    Ok(days)
}

fn parse_day(name: &str) -> Result<usize, String> {
    let name = name.trim();
    DAY_KEYS
        .iter()
        .position(|key| key.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            format!(
                "`{name}` is not a day; use mon, tue, wed, thu, fri, sat, sun, \
                 a range such as mon-fri, or a list such as sat,sun"
            )
        })
}

/// The days from `first` to `last` inclusive, wrapping past Sunday.
fn day_range(first: usize, last: usize) -> Vec<usize> {
    let len = (last + 7 - first) % 7 + 1;
    (0..len).map(|i| (first + i) % 7).collect()
}

/// Parses `"08:00-12:30,13:30-18:00"`, `"closed"` or `""` into sorted,
/// non-overlapping periods.
fn parse_periods(value: &str) -> Result<Vec<Period>, String> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    let mut periods = value
        .split(',')
        .map(parse_period)
        .collect::<Result<Vec<_>, _>>()?;
    periods.sort();
    for (earlier, later) in periods.iter().zip(periods.iter().skip(1)) {
        if earlier.end > later.start {
            return Err(format!("periods `{earlier}` and `{later}` overlap"));
        }
    }
    Ok(periods)
}

fn parse_period(text: &str) -> Result<Period, String> {
    let text = text.trim();
    let (start, end) = text.split_once('-').ok_or_else(|| {
        format!("`{text}` is not a period; write HH:MM-HH:MM, e.g. 08:00-18:00, or \"closed\"")
    })?;
    let (start, end) = (parse_minutes(start)?, parse_minutes(end)?);
    if start >= MINUTES_PER_DAY {
        return Err(format!("`{text}`: 24:00 can only end a period"));
    }
    if start >= end {
        return Err(format!(
            "`{text}` does not end after it starts; a period cannot cross midnight \
             (write ..-24:00 on one day and 00:00-.. on the next)"
        ));
    }
    Ok(Period { start, end })
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes since midnight.
fn parse_minutes(text: &str) -> Result<u16, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a time of day; write HH:MM, from 00:00 to 24:00");
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return Err(bad());
    }
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// Renders sorted weekday indexes as a key: runs of three or more consecutive days
/// as `mon-fri`, other days one by one, joined by commas.
fn render_days(days: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &day in days {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == day => *last = day,
            _ => runs.push((day, day)),
        }
    }
    let key = |day: usize| DAY_KEYS.get(day).copied().unwrap_or("?");
    let mut parts = Vec::new();
    for (first, last) in runs {
        if last >= first + 2 {
            parts.push(format!("{}-{}", key(first), key(last)));
        } else {
            parts.extend((first..=last).map(|day| key(day).to_owned()));
        }
    }
    parts.join(",")
}

fn render_periods(periods: &[Period]) -> String {
    if periods.is_empty() {
        return "closed".to_owned();
    }
    let mut text = String::new();
    for (i, period) in periods.iter().enumerate() {
        let separator = if i == 0 { "" } else { "," };
        let _ = write!(text, "{separator}{period}");
    }
    text
}

/// Bank holidays of one region, for the years a data file covers.
///
/// A date outside the covered years is never a holiday here, which is why
/// [`Clock::data_warning`] warns when the current or next year is not covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    name: String,
    source: String,
    /// `first_year..=last_year`, or `None` for [`Calendar::empty`].
    years: Option<(i16, i16)>,
    holidays: BTreeMap<Date, String>,
}

/// The on-disk shape of a calendar file (see `conf/calendars/`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    name: String,
    source: String,
    first_year: i16,
    last_year: i16,
    holidays: BTreeMap<String, String>,
}

impl Calendar {
    /// Parses a calendar data file:
    ///
    /// ```toml
    /// name = "England and Wales"
    /// source = "how the dates were derived"
    /// first_year = 2024
    /// last_year = 2027
    /// [holidays]
    /// "2024-01-01" = "New Year's Day"
    /// ```
    ///
    /// Dates are written `YYYY-MM-DD` exactly. Refuses unknown keys, a date that is
    /// not a real date, a date outside `first_year..=last_year`, a date given twice,
    /// and `first_year > last_year`.
    pub fn parse(text: &str) -> Result<Calendar, String> {
        let file: CalendarFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.name.trim().is_empty() {
            return Err("`name` is empty".to_owned());
        }
        if file.first_year > file.last_year {
            return Err(format!(
                "first_year {} is after last_year {}",
                file.first_year, file.last_year
            ));
        }
        let years = file.first_year..=file.last_year;
        let mut holidays = BTreeMap::new();
        for (key, name) in file.holidays {
            let date = parse_holiday_date(&key)?;
            if !years.contains(&date.year()) {
                return Err(format!(
                    "holiday {key} is outside first_year..last_year ({}..{})",
                    file.first_year, file.last_year
                ));
            }
            if holidays.insert(date, name).is_some() {
                return Err(format!("holiday {key} is given twice"));
            }
        }
        Ok(Calendar {
            name: file.name,
            source: file.source,
            years: Some((file.first_year, file.last_year)),
            holidays,
        })
    }

    /// Reads and parses the calendar file at `path`; an error names the file.
    pub fn load(path: &Path) -> Result<Calendar, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("bank-holiday calendar {}: {e}", path.display()))?;
        Calendar::parse(&text).map_err(|e| format!("bank-holiday calendar {}: {e}", path.display()))
    }

    /// A calendar with no holidays that covers no year: working time then ignores
    /// bank holidays, and [`Clock::data_warning`] always says so.
    pub fn empty() -> Calendar {
        Calendar {
            name: "no bank holidays".to_owned(),
            source: String::new(),
            years: None,
            holidays: BTreeMap::new(),
        }
    }

    /// Whether `date` is a bank holiday in this calendar.
    pub fn is_holiday(&self, date: Date) -> bool {
        self.holidays.contains_key(&date)
    }

    /// Whether this calendar has data for `year` (between its first and last year).
    pub fn covers(&self, year: i16) -> bool {
        self.years
            .is_some_and(|(first, last)| (first..=last).contains(&year))
    }

    /// The first year this calendar covers, if any.
    pub fn first_year(&self) -> Option<i16> {
        self.years.map(|(first, _)| first)
    }

    /// The last year this calendar covers, if any.
    pub fn last_year(&self) -> Option<i16> {
        self.years.map(|(_, last)| last)
    }

    /// The calendar's name, e.g. "England and Wales".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the file says its dates were derived.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every holiday with its name, in date order.
    pub fn holidays(&self) -> impl Iterator<Item = (Date, &str)> {
        self.holidays
            .iter()
            .map(|(date, name)| (*date, name.as_str()))
    }
}

/// Parses a holiday key, accepting only the canonical `YYYY-MM-DD` form so that
/// two spellings of one date cannot both appear.
fn parse_holiday_date(key: &str) -> Result<Date, String> {
    let bad = || format!("holiday `{key}` is not a date; write YYYY-MM-DD");
    let date: Date = key.parse().map_err(|_| bad())?;
    if date.to_string() != key {
        return Err(bad());
    }
    Ok(date)
}

/// The site's working clock: time zone, weekly working hours and bank holidays.
///
/// Every method is a pure function of its arguments. Working time is the union of
/// the working periods of non-holiday days, each period a half-open interval
/// `[start, end)` of real instants obtained from its local wall-clock times (see
/// the module documentation for gaps and folds).
#[derive(Clone, Debug)]
pub struct Clock {
    /// The site time zone in which working periods and holiday dates are read.
    pub tz: TimeZone,
    /// The weekly working periods.
    pub hours: WorkingHours,
    /// The bank holidays, on which no period is worked.
    pub calendar: Calendar,
}

/// One working interval of real time, and the local date whose schedule made it.
#[derive(Clone, Copy, Debug)]
struct Interval {
    date: Date,
    start: Timestamp,
    end: Timestamp,
}

impl Interval {
    fn len(&self) -> SignedDuration {
        self.end.duration_since(self.start)
    }
}

impl Clock {
    /// Whether `t` is working time: inside a working period of a day that is not a
    /// bank holiday, in local time. A period's end is not working time.
    pub fn is_working(&self, t: Timestamp) -> bool {
        self.next_working_start(t) == Some(t)
    }

    /// The first working instant at or after `t` (`t` itself when `t` is working
    /// time), or `None` when no working time exists within [`MAX_IDLE_DAYS`] days.
    pub fn next_working_start(&self, t: Timestamp) -> Option<Timestamp> {
        self.intervals_from(t).next().map(|interval| interval.start)
    }

    /// The instant at which `d` of working time has elapsed since `start`.
    ///
    /// Only working time counts; a `start` outside working time begins counting at
    /// the next working period. A zero `d` gives `start` when it is working time,
    /// otherwise the next working start. When `d` ends exactly at the end of a
    /// period, the result is that end (not the next period's start). Periods count
    /// their real elapsed length, so a period lengthened or shortened by a DST
    /// change counts as such.
    ///
    /// Fallback: when working time runs out before `d` is counted (no working time
    /// within [`MAX_IDLE_DAYS`] days, or the scan passes about a century), the
    /// result is [`Clock::add_calendar`]`(start, d)`. That is never later than a
    /// working-time deadline could be, so the watchdog errs toward alarming early.
    pub fn add_working(&self, start: Timestamp, d: Duration) -> Timestamp {
        let Ok(mut left) = SignedDuration::try_from(d) else {
            return self.add_calendar(start, d);
        };
        for interval in self.intervals_from(start) {
            let len = interval.len();
            if left <= len {
                return interval.start.checked_add(left).unwrap_or(interval.end);
            }
            left = left.checked_sub(len).unwrap_or(SignedDuration::ZERO);
        }
        self.add_calendar(start, d)
    }

    /// The deadline `days` working days after `start`, at the same working-clock
    /// time ("Nd" under working hours).
    ///
    /// The rule, precisely:
    /// 1. The effective start is [`Clock::next_working_start`]`(start)`: `start`
    ///    itself when it is working time, otherwise the start of the next working
    ///    period. Its day (day 0) is the local date whose working period holds it.
    /// 2. The working-clock position is the working time of day 0 that elapsed
    ///    before the effective start (0 when it is the day's first period).
    /// 3. The deadline day is the `days`-th working day after day 0, where a
    ///    working day is a non-holiday date with working time; `days = 0` is day 0.
    /// 4. The deadline is the instant on that day at which the same working time
    ///    has elapsed; if that day has less working time, the end of its last period.
    ///    A position on the boundary between two periods (a start in a lunch break)
    ///    gives the later period's start.
    ///
    /// Under Monday to Friday 08:00-18:00: received Saturday, 2 days, gives
    /// Wednesday 08:00 (Monday 08:00 is the effective start and day 0); received
    /// Friday 17:00, 2 days, gives Tuesday 17:00; a bank holiday is not a working
    /// day, so it is skipped. A start at the exact end of a period (Friday 18:00) is
    /// outside working time and so counts from the next period (Monday 08:00, giving
    /// Wednesday 08:00, which is the same working-clock time as Tuesday 18:00).
    ///
    /// Fallback: when no working day is found within [`MAX_IDLE_DAYS`] days, or
    /// `days` exceeds 20,000, the result is `days` × 24 h of calendar time after
    /// `start` (at most a DST hour per day later than the earliest working-day
    /// deadline could be, and in practice far earlier: it errs toward alarming early).
    pub fn add_working_days(&self, start: Timestamp, days: u32) -> Timestamp {
        let fallback = || self.add_calendar(start, Duration::from_secs(86_400 * u64::from(days)));
        let Some(first) = self.intervals_from(start).next() else {
            return fallback();
        };
        let position = elapsed_before(&self.day_intervals(first.date), first.start);
        let Some(day) = self.nth_working_day_after(first.date, days) else {
            return fallback();
        };
        instant_at(&self.day_intervals(day), position).unwrap_or_else(fallback)
    }

    /// `start` plus `d` of elapsed time, saturating at the latest representable
    /// instant (the `hours = "calendar"` counterpart of [`Clock::add_working`]).
    pub fn add_calendar(&self, start: Timestamp, d: Duration) -> Timestamp {
        start.saturating_add(d).unwrap_or(Timestamp::MAX)
    }

    /// The working time in `[a, b)`; zero when `b <= a`. Counts at most about a
    /// century after `a`, and stops early after [`MAX_IDLE_DAYS`] days without
    /// working time.
    pub fn working_time_between(&self, a: Timestamp, b: Timestamp) -> Duration {
        let mut total = SignedDuration::ZERO;
        for interval in self.intervals_from(a) {
            if interval.start >= b {
                break;
            }
            let end = interval.end.min(b);
            total = total.saturating_add(end.duration_since(interval.start));
        }
        Duration::try_from(total).unwrap_or_default()
    }

    /// A warning when the bank-holiday calendar has no data for the year of `now`
    /// (in the site zone) or for the next year: working-hours deadlines in those
    /// years would treat bank holidays as working days. `None` when both are
    /// covered.
    pub fn data_warning(&self, now: Timestamp) -> Option<String> {
        let year = self.tz.to_datetime(now).year();
        let missing: Vec<i16> = [Some(year), year.checked_add(1)]
            .into_iter()
            .flatten()
            .filter(|year| !self.calendar.covers(*year))
            .collect();
        let years = match missing.as_slice() {
            [] => return None,
            [one] => one.to_string(),
            [first, second, ..] => format!("{first} and {second}"),
        };
        let covered = match (self.calendar.first_year(), self.calendar.last_year()) {
            (Some(first), Some(last)) => format!("it covers {first} to {last}"),
            _ => "it covers no year".to_owned(),
        };
        Some(format!(
            "bank-holiday calendar \"{}\" has no dates for {years} ({covered}): \
             working-hours deadlines in {years} will count bank holidays as working \
             days; add {years} to the calendar file",
            self.calendar.name()
        ))
    }

    /// The first local date (in the site zone) from the day of `now` through
    /// `days` days later for which the bank-holiday calendar has no data, or
    /// `None` when it covers them all. The calendar covers whole years, so the
    /// answer is either today or the 1st of January of a later year. The
    /// watchdog raises `calendar_expiring` while this is `Some` for
    /// [`CALENDAR_HORIZON_DAYS`].
    pub fn first_uncovered_date(&self, now: Timestamp, days: i32) -> Option<Date> {
        let today = self.tz.to_datetime(now).date();
        let last = today
            .checked_add(jiff::Span::new().days(days.max(0)))
            .unwrap_or(today);
        (today.year()..=last.year())
            .find(|year| !self.calendar.covers(*year))
            .map(|year| {
                if year == today.year() {
                    today
                } else {
                    Date::new(year, 1, 1).unwrap_or(today)
                }
            })
    }

    /// The real instant of local wall-clock `minute` (0..=1440) on `date`, gaps and
    /// folds resolved with the `compatible` rule.
    fn local_instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let datetime = if minute >= MINUTES_PER_DAY {
            date.tomorrow().ok()?.to_datetime(Time::midnight())
        } else {
            let time = Time::new(
                i8::try_from(minute / 60).ok()?,
                i8::try_from(minute % 60).ok()?,
                0,
                0,
            )
            .ok()?;
            date.to_datetime(time)
        };
        self.tz.to_ambiguous_timestamp(datetime).compatible().ok()
    }

    /// The working intervals of `date` in real time, in order and non-overlapping:
    /// none on a bank holiday; a period that DST resolution made empty or inverted
    /// is dropped or trimmed to start where the previous one ended.
    fn day_intervals(&self, date: Date) -> Vec<Interval> {
        if self.calendar.is_holiday(date) {
            return Vec::new();
        }
        let mut intervals: Vec<Interval> = Vec::new();
        for period in self.hours.periods(date) {
            let (Some(start), Some(end)) = (
                self.local_instant(date, period.start),
                self.local_instant(date, period.end),
            ) else {
                continue;
            };
            let start = intervals.last().map_or(start, |prev| start.max(prev.end));
            if end > start {
                intervals.push(Interval { date, start, end });
            }
        }
        intervals
    }

    /// Working intervals from `t` on, the first one trimmed to start at `t`.
    fn intervals_from(&self, t: Timestamp) -> Intervals<'_> {
        let date = self.tz.to_datetime(t).date();
        Intervals {
            clock: self,
            // The day before is looked at too: in odd zones its last period may
            // still run at `t`.
            next_date: Some(date.yesterday().unwrap_or(date)),
            pending: Vec::new().into_iter(),
            cursor: t,
            idle_days: -1,
            scanned_days: 0,
        }
    }

    /// The `n`-th working day after `date` (`date` itself for 0), or `None` past
    /// the scan bounds.
    fn nth_working_day_after(&self, mut date: Date, n: u32) -> Option<Date> {
        if n > MAX_WORKING_DAYS {
            return None;
        }
        for _ in 0..n {
            date = self.next_working_day_after(date)?;
        }
        Some(date)
    }

    /// The first date after `date` with working time, within [`MAX_IDLE_DAYS`].
    fn next_working_day_after(&self, mut date: Date) -> Option<Date> {
        for _ in 0..MAX_IDLE_DAYS {
            date = date.tomorrow().ok()?;
            if !self.day_intervals(date).is_empty() {
                return Some(date);
            }
        }
        None
    }
}

/// The working time in `intervals` (one day's) that lies before `t`.
fn elapsed_before(intervals: &[Interval], t: Timestamp) -> SignedDuration {
    intervals
        .iter()
        .filter(|interval| interval.start < t)
        .map(|interval| interval.end.min(t).duration_since(interval.start))
        .fold(SignedDuration::ZERO, SignedDuration::saturating_add)
}

/// The instant in `intervals` (one day's) at which `position` of working time has
/// elapsed; the end of the last interval if the day has less; `None` if the day
/// has no working time. A position on the boundary between two periods gives the
/// later period's start, because such a position always comes from a start at a
/// period's start (a period's end is not working time).
fn instant_at(intervals: &[Interval], mut position: SignedDuration) -> Option<Timestamp> {
    for interval in intervals {
        let len = interval.len();
        if position < len {
            return interval.start.checked_add(position).ok();
        }
        position = position.checked_sub(len)?;
    }
    intervals.last().map(|interval| interval.end)
}

/// Iterator over working intervals in time order, starting at a cursor instant.
/// It stops after [`MAX_IDLE_DAYS`] consecutive days without working time or
/// after [`MAX_SCAN_DAYS`] days in all.
struct Intervals<'a> {
    clock: &'a Clock,
    next_date: Option<Date>,
    pending: std::vec::IntoIter<Interval>,
    /// No interval yielded starts before this: the start instant, then the end of
    /// the last interval yielded.
    cursor: Timestamp,
    idle_days: i32,
    scanned_days: i32,
}

impl Iterator for Intervals<'_> {
    type Item = Interval;

    fn next(&mut self) -> Option<Interval> {
        loop {
            for interval in self.pending.by_ref() {
                let start = interval.start.max(self.cursor);
                if interval.end > start {
                    self.cursor = interval.end;
                    self.idle_days = 0;
                    return Some(Interval { start, ..interval });
                }
            }
            if self.idle_days >= MAX_IDLE_DAYS || self.scanned_days >= MAX_SCAN_DAYS {
                return None;
            }
            let date = self.next_date?;
            self.next_date = date.tomorrow().ok();
            self.pending = self.clock.day_intervals(date).into_iter();
            self.idle_days += 1;
            self.scanned_days += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use jiff::civil::{DateTime, Weekday, date};
    use proptest::prelude::*;

    const ENGLAND_AND_WALES: &str = include_str!("../../conf/calendars/england-and-wales.toml");
    const SCOTLAND: &str = include_str!("../../conf/calendars/scotland.toml");
    const NORTHERN_IRELAND: &str = include_str!("../../conf/calendars/northern-ireland.toml");

    // ---- helpers -------------------------------------------------------------

    fn london() -> TimeZone {
        TimeZone::get("Europe/London").unwrap()
    }

    fn table(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn hours_of(entries: &[(&str, &str)]) -> WorkingHours {
        WorkingHours::parse(&table(entries)).unwrap()
    }

    /// Europe/London, the given hours, England and Wales bank holidays.
    fn clock_with(hours: WorkingHours) -> Clock {
        Clock {
            tz: london(),
            hours,
            calendar: Calendar::parse(ENGLAND_AND_WALES).unwrap(),
        }
    }

    /// Europe/London, Monday to Friday 08:00-18:00, England and Wales.
    fn office() -> Clock {
        clock_with(WorkingHours::default())
    }

    /// The instant of a London wall-clock time such as "2026-03-06T17:00".
    fn at(local: &str) -> Timestamp {
        let datetime: DateTime = local.parse().unwrap();
        london()
            .to_ambiguous_timestamp(datetime)
            .compatible()
            .unwrap()
    }

    /// The London wall-clock time of an instant, e.g. "2026-03-10T17:00:00".
    fn local(t: Timestamp) -> String {
        london().to_datetime(t).to_string()
    }

    fn hours(n: u64) -> Duration {
        Duration::from_secs(n * 3600)
    }

    fn minutes(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    // ---- the rules the shipped calendars must follow ---------------------------

    /// Easter Sunday by the anonymous Gregorian algorithm (Meeus/Jones/Butcher).
    fn easter_sunday(year: i16) -> Date {
        let y = i32::from(year);
        let (a, b, c) = (y % 19, y / 100, y % 100);
        let (d, e) = (b / 4, b % 4);
        let f = (b + 8) / 25;
        let g = (b - f + 1) / 3;
        let h = (19 * a + b - d - g + 15) % 30;
        let (i, k) = (c / 4, c % 4);
        let l = (32 + 2 * e + 2 * i - h - k) % 7;
        let m = (a + 11 * h + 22 * l) / 451;
        let month = (h + l - 7 * m + 114) / 31;
        let day = (h + l - 7 * m + 114) % 31 + 1;
        date(year, month as i8, day as i8)
    }

    /// The `nth` Monday of a month; -1 is the last.
    fn monday(year: i16, month: i8, nth: i8) -> Date {
        date(year, month, 1)
            .nth_weekday_of_month(nth, Weekday::Monday)
            .unwrap()
    }

    fn is_weekend(day: Date) -> bool {
        matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
    }

    /// Fixed-date holidays with substitutes: each one on a weekend moves to the
    /// next weekday that is not already a holiday of the group, in order.
    fn with_substitutes(fixed: &[Date]) -> Vec<Date> {
        let mut taken: Vec<Date> = fixed.iter().copied().filter(|d| !is_weekend(*d)).collect();
        for day in fixed.iter().copied().filter(|d| is_weekend(*d)) {
            let mut substitute = day;
            while is_weekend(substitute) || taken.contains(&substitute) {
                substitute = substitute.tomorrow().unwrap();
            }
            taken.push(substitute);
        }
        taken
    }

    fn england_and_wales(year: i16) -> BTreeSet<Date> {
        let easter = easter_sunday(year);
        let mut days = with_substitutes(&[date(year, 1, 1)]);
        days.extend(with_substitutes(&[date(year, 12, 25), date(year, 12, 26)]));
        days.extend([
            easter.yesterday().unwrap().yesterday().unwrap(),
            easter.tomorrow().unwrap(),
            monday(year, 5, 1),
            monday(year, 5, -1),
            monday(year, 8, -1),
        ]);
        days.into_iter().collect()
    }

    fn scotland(year: i16) -> BTreeSet<Date> {
        let easter = easter_sunday(year);
        let mut days = with_substitutes(&[date(year, 1, 1), date(year, 1, 2)]);
        days.extend(with_substitutes(&[date(year, 11, 30)]));
        days.extend(with_substitutes(&[date(year, 12, 25), date(year, 12, 26)]));
        days.extend([
            easter.yesterday().unwrap().yesterday().unwrap(),
            monday(year, 5, 1),
            monday(year, 5, -1),
            monday(year, 8, 1),
        ]);
        days.into_iter().collect()
    }

    fn northern_ireland(year: i16) -> BTreeSet<Date> {
        let mut days = england_and_wales(year);
        days.extend(with_substitutes(&[date(year, 3, 17)]));
        days.extend(with_substitutes(&[date(year, 7, 12)]));
        days
    }

    fn holidays_in(calendar: &Calendar, year: i16) -> BTreeSet<Date> {
        calendar
            .holidays()
            .map(|(day, _)| day)
            .filter(|day| day.year() == year)
            .collect()
    }

    fn assert_file_follows_rules(text: &str, rules: fn(i16) -> BTreeSet<Date>) {
        let calendar = Calendar::parse(text).unwrap();
        assert_eq!(calendar.first_year(), Some(2024), "{}", calendar.name());
        assert_eq!(calendar.last_year(), Some(2027), "{}", calendar.name());
        for year in 2024..=2027 {
            assert_eq!(
                holidays_in(&calendar, year),
                rules(year),
                "{} {year}",
                calendar.name()
            );
        }
    }

    #[test]
    fn england_and_wales_file_holds_exactly_the_rule_dates() {
        assert_file_follows_rules(ENGLAND_AND_WALES, england_and_wales);
    }

    #[test]
    fn scotland_file_holds_exactly_the_rule_dates() {
        assert_file_follows_rules(SCOTLAND, scotland);
    }

    #[test]
    fn northern_ireland_file_holds_exactly_the_rule_dates() {
        assert_file_follows_rules(NORTHERN_IRELAND, northern_ireland);
    }

    #[test]
    fn easter_sundays_are_the_published_ones() {
        assert_eq!(easter_sunday(2024), date(2024, 3, 31));
        assert_eq!(easter_sunday(2025), date(2025, 4, 20));
        assert_eq!(easter_sunday(2026), date(2026, 4, 5));
        assert_eq!(easter_sunday(2027), date(2027, 3, 28));
    }

    #[test]
    fn well_known_substitute_days_are_in_the_files() {
        let ew = Calendar::parse(ENGLAND_AND_WALES).unwrap();
        // Christmas 2027 is a Saturday: Monday 27 and Tuesday 28 are the holidays.
        assert_eq!(date(2027, 12, 25).weekday(), Weekday::Saturday);
        assert!(!ew.is_holiday(date(2027, 12, 25)));
        assert!(ew.is_holiday(date(2027, 12, 27)));
        assert!(ew.is_holiday(date(2027, 12, 28)));
        // Boxing Day 2026 is a Saturday: Monday 28 instead.
        assert!(ew.is_holiday(date(2026, 12, 28)));
        assert!(ew.is_holiday(date(2026, 4, 3)) && ew.is_holiday(date(2026, 4, 6)));

        let scotland = Calendar::parse(SCOTLAND).unwrap();
        assert!(
            scotland.is_holiday(date(2024, 12, 2)),
            "St Andrew's on a Saturday"
        );
        assert!(
            scotland.is_holiday(date(2027, 1, 4)),
            "2 January on a Saturday"
        );
        assert!(
            scotland.is_holiday(date(2026, 8, 3)),
            "first Monday of August"
        );
        assert!(!scotland.is_holiday(date(2026, 4, 6)), "no Easter Monday");

        let ni = Calendar::parse(NORTHERN_IRELAND).unwrap();
        assert!(ni.is_holiday(date(2024, 3, 18)), "St Patrick's on a Sunday");
        assert!(ni.is_holiday(date(2025, 7, 14)), "12 July on a Saturday");
        assert!(ni.is_holiday(date(2026, 7, 13)), "12 July on a Sunday");
    }

    // ---- Calendar parsing ------------------------------------------------------

    fn calendar_text(years: (i16, i16), holidays: &str) -> String {
        format!(
            "name = \"Test\"\nsource = \"test\"\nfirst_year = {}\nlast_year = {}\n\
             [holidays]\n{holidays}",
            years.0, years.1
        )
    }

    #[test]
    fn calendar_parse_errors_say_what_is_wrong() {
        let cases = [
            (
                calendar_text((2024, 2024), "\"2025-01-01\" = \"x\""),
                "outside",
            ),
            (
                calendar_text((2024, 2024), "\"2024-02-30\" = \"x\""),
                "2024-02-30",
            ),
            (
                calendar_text((2024, 2024), "\"2024-1-01\" = \"x\""),
                "YYYY-MM-DD",
            ),
            (calendar_text((2025, 2024), ""), "after last_year"),
            (
                calendar_text(
                    (2024, 2024),
                    "\"2024-01-01\" = \"a\"\n\"2024-01-01\" = \"b\"",
                ),
                "duplicate",
            ),
            (calendar_text((2024, 2024), "") + "\nextra = 1", "extra"),
            ("name = \"x\"".to_owned(), "missing field"),
        ];
        for (text, fragment) in cases {
            let err = Calendar::parse(&text).unwrap_err();
            assert!(err.contains(fragment), "{fragment:?} not in {err:?}");
        }
    }

    #[test]
    fn calendar_covers_only_its_years() {
        let calendar = Calendar::parse(&calendar_text((2024, 2025), "")).unwrap();
        assert!(!calendar.covers(2023));
        assert!(calendar.covers(2024) && calendar.covers(2025));
        assert!(!calendar.covers(2026));
        assert_eq!(calendar.last_year(), Some(2025));
        assert_eq!(calendar.name(), "Test");
    }

    #[test]
    fn empty_calendar_covers_nothing_and_has_no_holidays() {
        let empty = Calendar::empty();
        assert!(!empty.covers(2026));
        assert!(!empty.is_holiday(date(2026, 12, 25)));
        assert_eq!(empty.last_year(), None);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let err = Calendar::load(&missing).unwrap_err();
        assert!(err.contains("missing.toml"), "{err}");

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, calendar_text((2024, 2024), "\"2024-13-01\" = \"x\"")).unwrap();
        let err = Calendar::load(&bad).unwrap_err();
        assert!(
            err.contains("bad.toml") && err.contains("2024-13-01"),
            "{err}"
        );
    }

    #[test]
    fn load_reads_a_shipped_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/calendars/scotland.toml");
        let calendar = Calendar::load(&path).unwrap();
        assert_eq!(calendar.name(), "Scotland");
        assert!(calendar.is_holiday(date(2026, 11, 30)));
    }

    // ---- WorkingHours parsing and rendering --------------------------------------

    #[test]
    fn default_is_monday_to_friday_eight_to_six() {
        assert_eq!(
            hours_of(&[("mon-fri", "08:00-18:00")]),
            WorkingHours::default()
        );
        assert_eq!(
            WorkingHours::default().render(),
            table(&[("mon-fri", "08:00-18:00"), ("sat,sun", "closed")])
        );
    }

    #[test]
    fn parse_accepts_lists_ranges_wraps_and_closed() {
        let hours = hours_of(&[
            ("sun-tue", "13:30-18:00, 08:00-12:30"),
            ("wed,fri", "09:00-24:00"),
            ("thu", ""),
            ("sat", "CLOSED"),
        ]);
        assert_eq!(
            hours.render(),
            table(&[
                ("mon,tue,sun", "08:00-12:30,13:30-18:00"),
                ("thu,sat", "closed"),
                ("wed,fri", "09:00-24:00"),
            ])
        );
    }

    #[test]
    fn a_day_given_twice_is_an_error_naming_the_day() {
        let err = WorkingHours::parse(&table(&[
            ("mon-fri", "08:00-18:00"),
            ("fri", "08:00-12:00"),
        ]))
        .unwrap_err();
        assert!(
            err.contains("Friday") && err.contains("`fri`") && err.contains("`mon-fri`"),
            "{err}"
        );
        let err = WorkingHours::parse(&table(&[("mon,mon", "08:00-18:00")])).unwrap_err();
        assert!(err.contains("Monday twice"), "{err}");
    }

    #[test]
    fn parse_errors_name_the_key_and_the_problem() {
        let cases = [
            ("funday", "08:00-18:00", "`funday` is not a day"),
            ("mon", "8:00-18:00", "`8:00`"),
            ("mon", "08:00-25:00", "`25:00`"),
            ("mon", "08:60-18:00", "`08:60`"),
            ("mon", "24:00-24:00", "24:00 can only end"),
            ("mon", "18:00-08:00", "cannot cross midnight"),
            ("mon", "08:00-18:00,12:00-13:00", "overlap"),
            ("mon", "08:00", "not a period"),
            ("mon", "08:00-18:00,", "not a period"),
            ("mon", "ï:ü-x", "not a time of day"),
        ];
        for (key, value, fragment) in cases {
            let err = WorkingHours::parse(&table(&[(key, value)])).unwrap_err();
            assert!(err.contains(&format!("`{key}`")), "key not in {err:?}");
            assert!(err.contains(fragment), "{fragment:?} not in {err:?}");
        }
    }

    #[test]
    fn a_week_without_working_time_is_refused() {
        let err = WorkingHours::parse(&table(&[("mon-sun", "closed")])).unwrap_err();
        assert!(err.contains("no day has any working time"), "{err}");
        assert!(WorkingHours::parse(&BTreeMap::new()).is_err());
    }

    #[test]
    fn touching_periods_are_allowed() {
        let hours = hours_of(&[("mon", "08:00-12:00,12:00-18:00"), ("sun", "00:00-24:00")]);
        assert_eq!(WorkingHours::parse(&hours.render()), Ok(hours));
    }

    /// Any week: per day, a sorted set of distinct boundaries paired into periods.
    fn any_hours() -> impl Strategy<Value = WorkingHours> {
        let day = proptest::collection::btree_set(0u16..=MINUTES_PER_DAY, 0..8).prop_map(|set| {
            let bounds: Vec<u16> = set.into_iter().collect();
            bounds
                .chunks_exact(2)
                .map(|pair| Period {
                    start: pair[0],
                    end: pair[1],
                })
                .collect::<Vec<_>>()
        });
        proptest::array::uniform7(day)
            .prop_map(|days| WorkingHours { days })
            .prop_filter("some working time", WorkingHours::has_working_time)
    }

    proptest! {
        #[test]
        fn render_round_trips(hours in any_hours()) {
            prop_assert_eq!(WorkingHours::parse(&hours.render()), Ok(hours));
        }

        #[test]
        fn parsers_never_panic(key in "\\PC{0,12}", value in "\\PC{0,30}") {
            let _ = WorkingHours::parse(&table(&[(&key, &value)]));
            let _ = Calendar::parse(&format!("{key} = {value}"));
        }
    }

    // ---- Clock: calendar time, working time, working days --------------------------

    #[test]
    fn calendar_hours_ignore_weekends_and_holidays() {
        let c = office();
        assert_eq!(
            local(c.add_calendar(at("2026-03-06T17:00"), hours(24))),
            "2026-03-07T17:00:00"
        );
        // Across the spring change 24 elapsed hours end an hour later on the wall.
        assert_eq!(
            local(c.add_calendar(at("2026-03-28T12:00"), hours(24))),
            "2026-03-29T13:00:00"
        );
    }

    #[test]
    fn working_hours_skip_the_weekend() {
        let c = office();
        assert_eq!(
            local(c.add_working(at("2026-03-06T17:00"), hours(3))),
            "2026-03-09T10:00:00"
        );
        assert_eq!(
            c.working_time_between(at("2026-03-06T17:00"), at("2026-03-09T10:00")),
            hours(3)
        );
    }

    #[test]
    fn working_hours_skip_easter_2026() {
        let c = office();
        assert!(!c.is_working(at("2026-04-03T10:00")), "Good Friday");
        assert!(!c.is_working(at("2026-04-06T10:00")), "Easter Monday");
        assert!(c.is_working(at("2026-04-07T10:00")));
        assert_eq!(
            local(c.add_working(at("2026-04-02T17:00"), hours(2))),
            "2026-04-07T09:00:00"
        );
        assert_eq!(
            local(c.add_working_days(at("2026-04-02T10:00"), 1)),
            "2026-04-07T10:00:00"
        );
    }

    #[test]
    fn working_hours_count_wall_clock_across_spring_change() {
        let c = office();
        let (friday, monday) = (at("2026-03-27T08:00"), at("2026-03-30T18:00"));
        assert_eq!(
            monday.duration_since(friday),
            SignedDuration::from_hours(81)
        );
        assert_eq!(c.working_time_between(friday, monday), hours(20));
        assert_eq!(
            local(c.add_working(at("2026-03-27T17:00"), hours(3))),
            "2026-03-30T10:00:00"
        );
        assert_eq!(
            local(c.add_working(at("2026-03-26T08:00"), hours(24))),
            "2026-03-30T12:00:00"
        );
    }

    #[test]
    fn working_hours_count_wall_clock_across_autumn_change() {
        let c = office();
        let (friday, monday) = (at("2026-10-23T08:00"), at("2026-10-26T18:00"));
        assert_eq!(
            monday.duration_since(friday),
            SignedDuration::from_hours(83)
        );
        assert_eq!(c.working_time_between(friday, monday), hours(20));
        assert_eq!(
            local(c.add_working(at("2026-10-23T17:00"), hours(3))),
            "2026-10-26T10:00:00"
        );
    }

    #[test]
    fn a_period_spanning_a_change_counts_its_real_length() {
        let c = clock_with(hours_of(&[("sun", "00:00-24:00")]));
        let whole_day = |day: &str, next: &str| c.working_time_between(at(day), at(next));
        assert_eq!(whole_day("2026-03-29T00:00", "2026-03-30T00:00"), hours(23));
        assert_eq!(whole_day("2026-10-25T00:00", "2026-10-26T00:00"), hours(25));
        assert_eq!(whole_day("2026-03-22T00:00", "2026-03-23T00:00"), hours(24));
    }

    #[test]
    fn gap_and_fold_times_resolve_compatibly() {
        // 01:30 does not exist on 29 March 2026: it becomes 02:30 BST (01:30 UTC).
        let c = clock_with(hours_of(&[("sun", "01:30-03:00")]));
        let start = c.next_working_start(at("2026-03-28T12:00")).unwrap();
        assert_eq!(start, "2026-03-29T01:30:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(
            c.working_time_between(at("2026-03-28T12:00"), at("2026-03-30T00:00")),
            minutes(30)
        );
        // 01:00 happens twice on 25 October 2026: the first (BST) one is taken.
        let c = clock_with(hours_of(&[("sun", "01:00-02:00")]));
        let start = c.next_working_start(at("2026-10-24T12:00")).unwrap();
        assert_eq!(start, "2026-10-25T00:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(
            c.working_time_between(at("2026-10-24T12:00"), at("2026-10-26T00:00")),
            hours(2)
        );
    }

    #[test]
    fn received_saturday_two_working_days_is_wednesday_morning() {
        let c = office();
        assert_eq!(
            local(c.add_working_days(at("2026-03-07T10:00"), 2)),
            "2026-03-11T08:00:00"
        );
    }

    #[test]
    fn received_friday_five_pm_two_working_days_is_tuesday_five_pm() {
        let c = office();
        assert_eq!(
            local(c.add_working_days(at("2026-03-06T17:00"), 2)),
            "2026-03-10T17:00:00"
        );
    }

    #[test]
    fn working_days_skip_a_bank_holiday_monday() {
        // Monday 25 May 2026 is the Spring bank holiday.
        let c = office();
        assert_eq!(
            local(c.add_working_days(at("2026-05-22T17:00"), 2)),
            "2026-05-27T17:00:00"
        );
    }

    #[test]
    fn zero_working_days_is_the_effective_start() {
        let c = office();
        assert_eq!(
            local(c.add_working_days(at("2026-03-10T11:15"), 0)),
            "2026-03-10T11:15:00"
        );
        assert_eq!(
            local(c.add_working_days(at("2026-03-07T10:00"), 0)),
            "2026-03-09T08:00:00"
        );
        assert_eq!(
            local(c.add_working_days(at("2026-03-06T18:00"), 2)),
            "2026-03-11T08:00:00"
        );
    }

    #[test]
    fn zero_working_time_is_the_next_working_instant() {
        let c = office();
        assert_eq!(
            local(c.add_working(at("2026-03-10T11:15"), Duration::ZERO)),
            "2026-03-10T11:15:00"
        );
        assert_eq!(
            local(c.add_working(at("2026-03-10T19:00"), Duration::ZERO)),
            "2026-03-11T08:00:00"
        );
        assert_eq!(
            local(c.add_working(at("2026-03-09T08:00"), hours(10))),
            "2026-03-09T18:00:00"
        );
    }

    #[test]
    fn lunch_break_is_not_working_time() {
        let c = clock_with(hours_of(&[("mon-fri", "08:00-12:30,13:30-18:00")]));
        assert!(!c.is_working(at("2026-03-09T12:45")));
        assert!(c.is_working(at("2026-03-09T12:29")));
        assert_eq!(
            local(c.add_working(at("2026-03-09T12:00"), hours(1))),
            "2026-03-09T14:00:00"
        );
        // Received in the lunch break: counts from 13:30, 4.5 h into the day.
        assert_eq!(
            local(c.add_working_days(at("2026-03-10T13:00"), 1)),
            "2026-03-11T13:30:00"
        );
        assert_eq!(
            local(c.add_working_days(at("2026-03-10T14:00"), 1)),
            "2026-03-11T14:00:00"
        );
        assert_eq!(
            c.working_time_between(at("2026-03-09T00:00"), at("2026-03-10T00:00")),
            hours(9)
        );
    }

    #[test]
    fn a_shorter_deadline_day_ends_at_its_last_period() {
        let c = clock_with(hours_of(&[
            ("mon-thu", "08:00-18:00"),
            ("fri", "08:00-12:00"),
        ]));
        assert_eq!(
            local(c.add_working_days(at("2026-03-12T17:00"), 1)),
            "2026-03-13T12:00:00"
        );
    }

    #[test]
    fn twenty_four_working_hours_are_two_point_four_working_days() {
        let c = office();
        let d = crate::config::parse_duration("24h").unwrap();
        let deadline = c.add_working(at("2026-03-09T08:00"), d);
        assert_eq!(local(deadline), "2026-03-11T12:00:00");
        assert_eq!(
            c.working_time_between(at("2026-03-09T08:00"), deadline),
            hours(24)
        );
    }

    // ---- Clock: no working time, extremes, data warnings ---------------------------

    /// A calendar in which every day of 2026 and 2027 is a holiday.
    fn every_day_a_holiday() -> Calendar {
        let mut text = calendar_text((2026, 2027), "");
        let mut day = date(2026, 1, 1);
        while day.year() < 2028 {
            text.push_str(&format!("\"{day}\" = \"holiday\"\n"));
            day = day.tomorrow().unwrap();
        }
        Calendar::parse(&text).unwrap()
    }

    #[test]
    fn without_working_time_deadlines_fall_back_to_calendar_time() {
        let c = Clock {
            calendar: every_day_a_holiday(),
            ..office()
        };
        let start = at("2026-01-05T10:00");
        assert_eq!(c.next_working_start(start), None);
        assert!(!c.is_working(start));
        assert_eq!(
            c.add_working(start, hours(5)),
            start + SignedDuration::from_hours(5)
        );
        assert_eq!(
            c.add_working_days(start, 2),
            start + SignedDuration::from_hours(48)
        );
        assert_eq!(
            c.working_time_between(start, at("2026-06-01T00:00")),
            Duration::ZERO
        );
    }

    #[test]
    fn all_days_closed_falls_back_to_calendar_time() {
        let c = clock_with(WorkingHours {
            days: Default::default(),
        });
        let start = at("2026-01-05T10:00");
        assert_eq!(c.next_working_start(start), None);
        assert_eq!(
            c.add_working(start, hours(5)),
            start + SignedDuration::from_hours(5)
        );
    }

    #[test]
    fn extreme_inputs_end_without_panicking() {
        let c = office();
        let start = at("2026-01-05T10:00");
        assert_eq!(c.add_working(start, Duration::MAX), Timestamp::MAX);
        assert_eq!(c.add_working_days(start, u32::MAX), Timestamp::MAX);
        assert_eq!(c.add_working(Timestamp::MAX, hours(1)), Timestamp::MAX);
        assert_eq!(c.add_calendar(Timestamp::MAX, hours(1)), Timestamp::MAX);
        assert!(c.next_working_start(Timestamp::MIN).is_some());
        assert_eq!(
            c.working_time_between(Timestamp::MAX, Timestamp::MIN),
            Duration::ZERO
        );
        // A million working hours is centuries away: past the scan bound, calendar.
        let far = c.add_working(start, hours(1_000_000));
        assert_eq!(far, start + SignedDuration::from_hours(1_000_000));
    }

    #[test]
    fn data_warning_when_this_or_next_year_is_not_covered() {
        let c = office();
        assert_eq!(c.data_warning(at("2026-06-01T12:00")), None);
        let warning = c.data_warning(at("2027-06-01T12:00")).unwrap();
        assert!(
            warning.contains("England and Wales") && warning.contains("2028"),
            "{warning}"
        );
        let warning = c.data_warning(at("2028-01-02T12:00")).unwrap();
        assert!(warning.contains("2028 and 2029"), "{warning}");
        let warning = c.data_warning(at("2023-12-31T23:30")).unwrap();
        assert!(warning.contains("no dates for 2023 ("), "{warning}");
    }

    #[test]
    fn data_warning_for_an_empty_calendar() {
        let c = Clock {
            calendar: Calendar::empty(),
            ..office()
        };
        let warning = c.data_warning(at("2026-06-01T12:00")).unwrap();
        assert!(warning.contains("covers no year"), "{warning}");
    }

    #[test]
    fn first_uncovered_date_looks_90_days_ahead() {
        // England and Wales covers 2024 to 2027.
        let c = office();
        let ahead = CALENDAR_HORIZON_DAYS;
        assert_eq!(c.first_uncovered_date(at("2026-06-01T12:00"), ahead), None);
        // 2 October 2027 + 90 days is still 2027; 3 October reaches 2028.
        assert_eq!(c.first_uncovered_date(at("2027-10-02T12:00"), ahead), None);
        assert_eq!(
            c.first_uncovered_date(at("2027-10-03T12:00"), ahead),
            Some(date(2028, 1, 1))
        );
        // Local dates: 23:30 UTC on 2 October 2027 is already 3 October in London.
        let late: Timestamp = "2027-10-02T23:30:00Z".parse().unwrap();
        assert_eq!(c.first_uncovered_date(late, ahead), Some(date(2028, 1, 1)));
        // Inside an uncovered year the gap starts today.
        assert_eq!(
            c.first_uncovered_date(at("2023-12-01T09:00"), ahead),
            Some(date(2023, 12, 1))
        );
        let empty = Clock {
            calendar: Calendar::empty(),
            ..office()
        };
        assert_eq!(
            empty.first_uncovered_date(at("2026-06-01T12:00"), ahead),
            Some(date(2026, 6, 1))
        );
    }

    fn any_start() -> impl Strategy<Value = Timestamp> {
        // 2024-01-01 to 2027-12-31 UTC, to the second.
        (1_704_067_200i64..1_830_297_600).prop_map(|s| Timestamp::from_second(s).unwrap())
    }

    proptest! {
        #[test]
        fn add_working_counts_exactly_the_working_time(start in any_start(), mins in 0u64..20_000) {
            let c = office();
            let deadline = c.add_working(start, minutes(mins));
            prop_assert!(deadline >= start);
            prop_assert_eq!(c.working_time_between(start, deadline), minutes(mins));
        }

        #[test]
        fn each_working_day_moves_the_deadline_later(start in any_start(), days in 0u32..30) {
            let c = office();
            let deadline = c.add_working_days(start, days);
            let next = c.add_working_days(start, days + 1);
            prop_assert!(next > deadline);
            prop_assert_eq!(c.working_time_between(deadline, next), hours(10));
        }
    }
}
