//! Storage Commitment Push Model (PS3.4 Annex J, SOP Class
//! 1.2.840.10008.1.20.1), both ways: asking a destination (a PACS) to take
//! responsibility for the instances forwarded to it and hearing back which
//! ones it has, and answering peers that ask the same of us.
//!
//! - [`wire`] — the N-ACTION and N-EVENT-REPORT command sets and the data
//!   sets they carry, encoded and decoded; no sockets.
//! - [`link`] — the associations we open for it (to a destination with
//!   default roles; to a peer in the SCP role, by role selection).
//! - [`service`] — [`Commitments`]: what the SCP's associations do with
//!   these messages, the reporter (reports owed to peers) and the
//!   requesters (one per destination that commits).

pub mod link;
pub mod service;
pub mod wire;

pub use service::Commitments;
