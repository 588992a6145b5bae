//! Integration tests: the gateway driven through the interfaces users touch
//! — DICOM on the wire from real peers (DCMTK, pynetdicom), the CLI, and
//! files on disk.

mod harness;

mod association;
mod browser;
mod cli;
mod commitment;
mod dashboard;
mod durability;
mod forward;
mod http_api;
mod http_auth;
mod ingest;
mod metrics;
mod orthanc;
mod pacs;
mod query;
mod reports;
mod safety;
mod watchdog;
mod web;
