//! Readings of senders' clocks, for the watchdog's `clock_skew` alarm.
//!
//! Every HL7 message and DICOM instance says when its sender made it (MSH-7;
//! Instance Creation or Acquisition Date/Time). A time ahead of the moment we
//! received it can only come from a clock that runs fast; a time behind says
//! nothing (old studies and queued messages carry past times). The table
//! keeps one row per sender, written in the same transaction that records
//! the message or instance, so no extra commit or fsync is paid for it.
//!
//! To keep the ingest and HL7 paths cheap the row is rewritten only when it
//! matters: when the new reading is ahead by more than the threshold, when
//! the stored one is (so that a sender back in line is recorded and its alarm
//! resolves), or when the stored one is over an hour old. Otherwise the write
//! is a primary-key lookup that changes nothing. Either way the stored row is
//! ahead by more than the threshold exactly when the sender's latest reading
//! is, which is all the watchdog asks.

use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::store::{cached_exec, collect, fmt_ts, parse_ts};
use super::{Error, Store};

/// How old a stored reading may grow before a reading within the threshold
/// replaces it anyway, so that the row stays a recent sample.
const REFRESH: Duration = Duration::from_secs(3600);

/// One reading of a sender's clock, recorded with the message or instance
/// that carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockReading {
    /// `hl7` or `dicom`.
    pub via: &'static str,
    /// MSH-3^MSH-4 for HL7, the calling AE title for DICOM.
    pub sender: String,
    /// The time the message or instance says it was made.
    pub sender_time: Timestamp,
    /// Our clock when it arrived.
    pub received_at: Timestamp,
    /// `[watchdog] clock_skew_after`: the reading is written when it, or the
    /// stored one, is ahead by more than this.
    pub threshold: Duration,
}

/// A stored reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockRow {
    pub via: String,
    pub sender: String,
    pub received_at: Timestamp,
    pub sender_time: Timestamp,
    /// `sender_time - received_at`, in milliseconds: positive when the
    /// sender's clock is ahead of ours.
    pub ahead_ms: i64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes a reading inside the caller's transaction (see the module
/// documentation for when it is skipped).
pub(super) fn record(conn: &Connection, r: &ClockReading) -> Result<(), Error> {
    let ahead = r.sender_time.duration_since(r.received_at).as_millis();
    let ahead = i64::try_from(ahead).unwrap_or(if ahead < 0 { i64::MIN } else { i64::MAX });
    let refresh_before = r
        .received_at
        .checked_sub(jiff::SignedDuration::try_from(REFRESH).unwrap_or_default())
        .unwrap_or(Timestamp::MIN);
    cached_exec(
        conn,
        "INSERT INTO clock_observations (via, sender, received_at, sender_time, ahead_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (via, sender) DO UPDATE SET received_at = excluded.received_at, \
         sender_time = excluded.sender_time, ahead_ms = excluded.ahead_ms \
         WHERE excluded.received_at >= clock_observations.received_at \
         AND (excluded.ahead_ms > ?6 OR clock_observations.ahead_ms > ?6 \
              OR clock_observations.received_at < ?7)",
        params![
            r.via,
            r.sender,
            fmt_ts(r.received_at),
            fmt_ts(r.sender_time),
            ahead,
            millis(r.threshold),
            fmt_ts(refresh_before)
        ],
    )?;
    Ok(())
}

fn clock_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClockRow> {
    Ok(ClockRow {
        via: r.get(0)?,
        sender: r.get(1)?,
        received_at: parse_ts(r, 2)?,
        sender_time: parse_ts(r, 3)?,
        ahead_ms: r.get(4)?,
    })
}

impl Store {
    /// Senders whose latest reading, received at or after `since`, is ahead
    /// of our clock by more than `threshold`; by sender.
    pub fn clocks_ahead(
        &self,
        since: Timestamp,
        threshold: Duration,
    ) -> Result<Vec<ClockRow>, Error> {
        collect(
            &self.conn,
            "SELECT via, sender, received_at, sender_time, ahead_ms FROM clock_observations \
             WHERE ahead_ms > ?1 AND received_at >= ?2 ORDER BY sender, via",
            params![millis(threshold), fmt_ts(since)],
            clock_from_row,
        )
    }

    /// Every sender's stored reading, by sender.
    pub fn clock_readings(&self) -> Result<Vec<ClockRow>, Error> {
        collect(
            &self.conn,
            "SELECT via, sender, received_at, sender_time, ahead_ms FROM clock_observations \
             ORDER BY sender, via",
            [],
            clock_from_row,
        )
    }
}
