//! studywatch: a DICOM image-store gateway that receives studies, proves
//! every image arrived intact, records every study in a catalog, and makes
//! sure none goes unreported silently.
//!
//! # Layout
//! - [`app`] — wires the subsystems together and runs `serve`.
//! - [`config`] — the TOML file, validated into a typed [`config::Config`].
//! - [`scp`] — DICOM associations: C-ECHO, C-STORE, limits, shutdown.
//! - [`dimse`] — DIMSE command sets: decode requests, encode responses.
//! - [`ingest`] — a received data set → verified, durable, catalogued instance.
//! - [`storage`] — files on disk: temp files, durable rename, quarantine.
//! - [`catalog`] — the SQLite catalog; the only module that writes SQL.
//! - [`json`] — the JSON shapes shared by the CLI's `--json` and the HTTP API.
//! - [`metrics`] — Prometheus counters and gauges.
//! - [`reports`] — the HL7 MLLP listener; HL7 messages into catalog reports.
//! - [`scu`] — the C-STORE/C-ECHO SCU behind `echo`, `send` and forwarding.
//! - [`forward`] — one sender per destination working through the forward queue.
//! - [`query`] — the C-FIND SCU: how many instances a peer holds of a study and its series.
//! - [`retention`] — prunes local files every destination has.
//! - [`stability`] — notices stable studies; checks their completeness with the sender.
//! - [`hl7`] — HL7 v2: MLLP framing, parsing and field extraction, ACKs.
//! - [`commit`] — storage commitment both ways: messages, associations, tasks.
//! - [`cli`] — the command-line commands other than `serve`.
//! - [`uid`] — the DICOM UID grammar, checked before any UID is trusted.
//! - [`watchdog`] — rules, deadlines (calendars, working hours), alarms.
//! - [`notify`] — delivering notifications by email (SMTP) and webhook.
//! - [`http`] — the dashboard, the JSON API, `/metrics` and health probes.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod commit;
pub mod config;
pub mod dimse;
pub mod forward;
pub mod hl7;
pub mod http;
pub mod ingest;
pub mod json;
pub mod metrics;
pub mod notify;
pub mod query;
pub mod reports;
pub mod retention;
pub mod scp;
pub mod scu;
pub mod stability;
pub mod storage;
pub mod uid;
pub mod watchdog;
