//! HL7 orders that wait for their images (schema v12).
//!
//! When the RIS reports an examination complete (an order message with
//! ORC-5 `CM`) and no study of that order's accession number (same issuer,
//! when both name one) or Study Instance UID has arrived after
//! `[watchdog] order_without_images_after`, the watchdog raises
//! `order_without_images`: the images were sent somewhere else, or not at
//! all, and without the alarm nothing would ever be due for them. A later
//! message that cancels or discontinues the order (ORC-1 `CA`, `OC`, `CR`,
//! `DC`, `OD`; ORC-5 `CA`, `DC`) stops it, as does the study's arrival.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::store::{cached_exec, cached_row, collect, fmt_ts, parse_ts};
use super::{Error, Store};

/// The alarm kind.
pub const KIND: &str = "order_without_images";

/// The subject of the alarm for the order row `id`.
pub fn subject(id: i64) -> String {
    format!("order:{id}")
}

/// True for an order row `o` whose study has not arrived and that no later
/// message cancelled.
const WITHOUT_IMAGES: &str = "\
    NOT EXISTS (SELECT 1 FROM studies s WHERE s.study_uid = o.study_uid) \
    AND NOT EXISTS (SELECT 1 FROM studies s WHERE s.accession_number = o.accession_number \
        AND (s.issuer_of_accession IS NULL OR o.issuer_of_accession IS NULL \
             OR s.issuer_of_accession = o.issuer_of_accession)) \
    AND NOT EXISTS (SELECT 1 FROM orders c WHERE c.id > o.id \
        AND (c.accession_number = o.accession_number OR c.study_uid = o.study_uid) \
        AND (c.order_control IN ('CA', 'OC', 'CR', 'DC', 'OD') \
             OR c.order_status IN ('CA', 'DC')))";

/// True for an order row `o` one of whose orders (same accession or study
/// UID) already has a live alarm.
const ALARMED: &str = "\
    EXISTS (SELECT 1 FROM orders p JOIN alarms a \
        ON a.kind = 'order_without_images' AND a.subject = 'order:' || p.id \
           AND a.state <> 'resolved' \
        WHERE p.accession_number = o.accession_number OR p.study_uid = o.study_uid)";

/// A completed order the watchdog is due to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwaitedOrder {
    pub id: i64,
    /// When the message that reported it complete arrived.
    pub completed_at: Timestamp,
    pub accession_number: Option<String>,
    pub study_uid: Option<String>,
    pub procedure: Option<String>,
    /// Its study has not arrived, and no later message cancelled it.
    pub without_images: bool,
    /// An order of the same accession or study already has a live alarm.
    pub alarmed: bool,
}

impl Store {
    /// Orders reported complete at or before `before` that the watchdog has
    /// not looked at yet, oldest first.
    pub fn orders_awaiting_images(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<AwaitedOrder>, Error> {
        let sql = format!(
            "SELECT o.id, o.received_at, o.accession_number, o.study_uid, o.procedure, \
             {WITHOUT_IMAGES}, {ALARMED} \
             FROM orders o WHERE o.images_due = 1 AND o.received_at <= ?1 \
             ORDER BY o.received_at, o.id LIMIT ?2"
        );
        collect(
            &self.conn,
            &sql,
            params![fmt_ts(before), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(AwaitedOrder {
                    id: r.get(0)?,
                    completed_at: parse_ts(r, 1)?,
                    accession_number: r.get(2)?,
                    study_uid: r.get(3)?,
                    procedure: r.get(4)?,
                    without_images: r.get(5)?,
                    alarmed: r.get(6)?,
                })
            },
        )
    }

    /// The earliest time a completed order not yet looked at arrived.
    pub fn earliest_awaiting_images(&self) -> Result<Option<Timestamp>, Error> {
        Ok(cached_row(
            &self.conn,
            "SELECT received_at FROM orders WHERE images_due = 1 ORDER BY received_at LIMIT 1",
            [],
            |r| parse_ts(r, 0),
        )
        .optional()?)
    }

    /// Marks orders as looked at: their alarm, if they needed one, is raised.
    pub fn orders_images_checked(&mut self, ids: &[i64]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|conn| {
            for id in ids {
                cached_exec(conn, "UPDATE orders SET images_due = 0 WHERE id = ?1", [id])?;
            }
            Ok(())
        })
    }

    /// The subjects of live `order_without_images` alarms whose order still
    /// waits for its images.
    pub fn orders_still_without_images(&self) -> Result<Vec<String>, Error> {
        let live: Vec<String> = collect(
            &self.conn,
            "SELECT subject FROM alarms WHERE kind = ?1 AND state <> 'resolved'",
            [KIND],
            |r| r.get(0),
        )?;
        let mut holding = Vec::new();
        for subject in live {
            if order_awaits_images(&self.conn, &subject)? == Some(true) {
                holding.push(subject);
            }
        }
        Ok(holding)
    }
}

/// Whether the order an alarm's `subject` names still waits for its images;
/// `None` when it names no stored order.
pub(super) fn order_awaits_images(conn: &Connection, subject: &str) -> Result<Option<bool>, Error> {
    let Some(id) = subject
        .strip_prefix("order:")
        .and_then(|id| id.parse::<i64>().ok())
    else {
        return Ok(None);
    };
    let sql = format!("SELECT {WITHOUT_IMAGES} FROM orders o WHERE o.id = ?1");
    Ok(cached_row(conn, &sql, [id], |r| r.get(0)).optional()?)
}
