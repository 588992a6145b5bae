//! HL7 v2: MLLP framing, message parsing and field extraction, acknowledgements.
//!
//! A pure library: no sockets, no catalog, no clock, no I/O.
//!
//! - [`mllp`] turns received bytes into frames ([`mllp::Framer`]) with bounded
//!   memory, and reports junk, abandoned, oversized and truncated frames;
//!   [`mllp::encode`] frames an outgoing message.
//! - [`message`] parses one frame ([`parse`]) into a [`Parsed`] report or
//!   order — MSH header, patient IDs, one [`Request`] per OBR with its link
//!   keys, status, times, author, text and abnormal flags — or into a
//!   [`Rejected`] with the AE/AR code and a reason fit for MSA-3.
//! - [`mod@ack`] builds the ACK in the sender's own separators ([`ack()`]).
//! - [`alert`] classifies a report's flags and text into RCR fail-safe
//!   alert categories ([`AlertRules::classify`]).
//!
//! Deliberately left to the caller: committing the message to the catalog
//! *before* sending the ACK (a success ACK means durable); validating Study
//! Instance UIDs against the DICOM UID grammar (this module only trims
//! them); detecting duplicates on MSH-3 + MSH-4 + MSH-10 (acknowledged
//! again, processed once); linking requests to studies; and choosing the
//! control ID and the clock for the ACK.

pub mod ack;
pub mod alert;
pub mod message;
pub mod mllp;

pub use ack::ack;
pub use alert::{AlertRules, Category};
pub use message::{
    AckCode, Fields, Header, Kind, Location, LocationError, Parsed, PatientId, Rejected, Request,
    ResultStatus, parse,
};
pub use mllp::{Event, Framer};

/// The jiff types this module's API takes, re-exported so that callers
/// (and the fuzz targets) need not name jiff themselves.
pub use jiff::{Timestamp, tz::TimeZone};

#[cfg(test)]
mod tests;
