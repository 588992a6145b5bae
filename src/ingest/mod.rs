//! Ingest: turns one received C-STORE data set into a durable, verified,
//! catalogued instance — or into a refusal with a reason.
//!
//! The SCP hands each data set over as a stream of P-DATA fragments. A
//! dedicated blocking task writes them to a temp file (hashing as it goes),
//! so an association's memory stays bounded by a few PDUs whatever the
//! instance size. When the last fragment is in, the task makes the file
//! durable, walks it ([`parse`]), applies the checks ([`verify`]), moves it
//! into place and commits its catalog row — and only then returns
//! [`Outcome::Stored`], which the SCP answers with 0x0000.
//!
//! Ingest knows nothing of the network: no PDUs, no sockets. It never
//! answers success for a file that is not fsynced (when fsync is on),
//! renamed into place, its directory fsynced and its row committed.

pub mod clock;
pub mod parse;
pub mod sr;
pub mod verify;

use std::collections::HashSet;
use std::io::{self, Read, Seek, Write};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::catalog::{self, Catalog, NewConflict, NewFailure, NewInstance};
use crate::dimse::status;
use crate::metrics::Metrics;
use crate::storage::{Storage, TempFile};
use crate::uid::{self, Uid};
use parse::{Encoding, SeekSource, StreamSource, Summary};
use verify::{Identity, Refusal};

/// Fragments in flight between an association and its writer: the bound
/// on an association's memory is this many PDUs.
const CHANNEL_DEPTH: usize = 4;
/// How much received data accumulates before its writeback is started.
const WRITEBACK_STEP: u64 = 256 * 1024;

/// The implementation identity written into each file's meta header.
pub const IMPLEMENTATION_CLASS_UID: &str = "1.2.826.0.1.3680043.10.1661.1";
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("STUDYWATCH_", env!("CARGO_PKG_VERSION"));

/// One C-STORE as the SCP saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub calling_ae: String,
    /// The peer's source label (its AE title when not configured).
    pub source: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    /// The abstract syntax of the presentation context it came on.
    pub context_abstract_syntax: String,
}

/// How a C-STORE ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// New instance, durable and catalogued.
    Stored,
    /// Same SOP Instance UID and same content as a stored instance.
    Duplicate,
    /// Same SOP Instance UID, different content: kept in quarantine.
    Conflict,
    /// Refused; the data set is not kept as an instance.
    Refused(Refusal),
    /// The association ended before the data set was complete.
    Aborted,
}

impl Outcome {
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Stored | Outcome::Duplicate | Outcome::Aborted => status::SUCCESS,
            Outcome::Conflict => status::CANNOT_UNDERSTAND,
            Outcome::Refused(r) => r.status,
        }
    }

    pub fn comment(&self) -> Option<&str> {
        match self {
            Outcome::Conflict => Some("content differs from stored instance; quarantined"),
            Outcome::Refused(r) => Some(&r.reason),
            _ => None,
        }
    }
}

/// The ingest service shared by every association.
pub struct Ingest {
    storage: Storage,
    catalog: Catalog,
    metrics: Arc<Metrics>,
    /// How SR and PDF instances are read as reports.
    reports: sr::Policy,
    /// DICOM attributes that watchdog rules match on, with their keywords.
    rule_attributes: Vec<(dicom_core::Tag, String)>,
    /// Which forward destinations take which instances: decided here, so
    /// that the queue rows go into the instance's own transaction.
    forward: crate::config::Forward,
    /// `[watchdog] clock_skew_after`: with it, each instance's creation time
    /// is recorded as a reading of its sender's clock ([`clock`]).
    clock_skew_after: Option<std::time::Duration>,
    in_flight: InFlight,
}

/// A data set being received: feed it fragments, then finish it.
pub struct Receiving {
    tx: mpsc::Sender<Chunk>,
    task: JoinHandle<Outcome>,
}

enum Chunk {
    Data(Bytes),
    End,
}

impl Receiving {
    /// Passes one fragment on to the writer; waits when the writer is
    /// behind, which is what bounds memory.
    pub async fn push(&mut self, data: Vec<u8>) {
        // A writer that has stopped early (e.g. out of space) drains and
        // reports at finish; a send error here needs no handling.
        let _ = self.tx.send(Chunk::Data(Bytes::from(data))).await;
    }

    /// Marks the data set complete and waits for the outcome.
    pub async fn finish(self) -> Outcome {
        let _ = self.tx.send(Chunk::End).await;
        drop(self.tx);
        match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "ingest task failed");
                Outcome::Refused(Refusal::new(
                    status::OUT_OF_RESOURCES,
                    "internal",
                    "internal error while storing",
                ))
            }
        }
    }

    /// Abandons the data set (association aborted): the writer discards it.
    pub fn abandon(self) {
        drop(self.tx);
    }
}

impl Ingest {
    pub fn new(
        storage: Storage,
        catalog: Catalog,
        metrics: Arc<Metrics>,
        reports: sr::Policy,
        rule_attributes: Vec<(dicom_core::Tag, String)>,
        forward: crate::config::Forward,
        clock_skew_after: Option<std::time::Duration>,
    ) -> Arc<Ingest> {
        Arc::new(Ingest {
            storage,
            catalog,
            metrics,
            reports,
            rule_attributes,
            forward,
            clock_skew_after,
            in_flight: InFlight::default(),
        })
    }

    /// The report a stored SR or PDF instance carries, if its class can be
    /// one. A report that cannot be read leaves the instance stored (it was
    /// verified) and says so in the log: the study then stays unreported,
    /// which is the safe side.
    fn read_report(
        &self,
        id: &Identity,
        rel_path: &std::path::Path,
        size: u64,
        received_at: jiff::Timestamp,
    ) -> Option<catalog::NewReport> {
        let class = id.sop_class.to_string();
        if !sr::may_be_report(&class) {
            return None;
        }
        let instance = id.sop_instance.to_string();
        let path = self.storage.root().join(rel_path);
        match sr::read(&path, size, &class, &instance, received_at, &self.reports) {
            Ok(report) => {
                if let Some(r) = &report {
                    tracing::info!(sop_instance_uid = %instance, status = r.status.as_str(),
                        studies = r.study_uids.len(), "DICOM report received");
                }
                report
            }
            Err(e) => {
                tracing::warn!(sop_instance_uid = %instance, error = %e,
                    "stored, but its report content could not be read");
                None
            }
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Starts receiving one data set.
    pub fn begin(self: &Arc<Self>, request: Request) -> Receiving {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let this = Arc::clone(self);
        let handle = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || this.receive(request, rx, handle));
        Receiving { tx, task }
    }

    fn receive(
        &self,
        req: Request,
        mut rx: mpsc::Receiver<Chunk>,
        rt: tokio::runtime::Handle,
    ) -> Outcome {
        let received_at = jiff::Timestamp::now();
        let refuse = |refusal: Refusal, rx: &mut mpsc::Receiver<Chunk>| {
            // Take the rest of the data set off the wire so that the
            // association can go on with the next message.
            while let Some(Chunk::Data(_)) = rx.blocking_recv() {}
            self.refused(&req, refusal, None, None, &rt, received_at)
        };
        let sop = match Uid::parse(&req.sop_instance_uid) {
            Ok(sop) => sop,
            Err(e) => {
                let reason = format!("invalid Affected SOP Instance UID: {e}");
                return refuse(
                    Refusal::new(status::CANNOT_UNDERSTAND, "invalid_uid", reason),
                    &mut rx,
                );
            }
        };
        if uid::trim(&req.sop_class_uid) != uid::trim(&req.context_abstract_syntax) {
            let reason = "SOP Class differs from the presentation context";
            return refuse(
                Refusal::new(status::SOP_CLASS_NOT_SUPPORTED, "command_mismatch", reason),
                &mut rx,
            );
        }
        if !self.storage.has_room() {
            let reason = "storage below its free-space floor";
            return refuse(
                Refusal::new(status::OUT_OF_RESOURCES, "out_of_space", reason),
                &mut rx,
            );
        }
        // Only one store of a given SOP Instance UID at a time in this
        // process, so the catalog lookup made now, while the data is still
        // arriving, stays true until this store is done.
        let _claim = self.in_flight.claim(sop.as_str());
        let wanted = sop.as_str().to_owned();
        let catalog = self.catalog.clone();
        let existing =
            // A read: it must not wake the watchdog.
            rt.spawn(async move { catalog.quiet().call(move |s| s.lookup_instance(&wanted)).await });

        let mut temp = match self.storage.create_temp() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a temp file");
                let reason = format!("cannot create file: {e}");
                return refuse(
                    Refusal::new(status::OUT_OF_RESOURCES, "write_failed", reason),
                    &mut rx,
                );
            }
        };
        let header = file_header(&req);
        let data_start = header.len() as u64;
        let mut write_error = temp.file.write_all(&header).err();
        // The hash runs on a thread of its own, beside the writes, so that
        // neither waits for the other; the bounded channel keeps memory to
        // a few fragments.
        let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<Bytes>(CHANNEL_DEPTH);
        let hashing = rt.spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Ok(data) = hash_rx.recv() {
                hasher.update(&data);
            }
            hex::encode(hasher.finalize())
        });
        let mut size = 0u64;
        let mut flushed = 0u64;
        loop {
            match rx.blocking_recv() {
                Some(Chunk::Data(data)) => {
                    // The hasher only stops early if it panicked; the join
                    // below reports that.
                    let _ = hash_tx.send(data.clone());
                    size += data.len() as u64;
                    if write_error.is_none() {
                        write_error = temp.file.write_all(&data).err();
                    }
                    let written = data_start + size;
                    if written - flushed >= WRITEBACK_STEP {
                        self.storage
                            .start_writeback(&temp, flushed, written - flushed);
                        flushed = written;
                    }
                }
                Some(Chunk::End) => break,
                None => {
                    self.storage.discard(temp);
                    return Outcome::Aborted;
                }
            }
        }
        drop(hash_tx);
        let sha256 = match rt.block_on(hashing) {
            Ok(hash) => hash,
            Err(e) => {
                tracing::error!(error = %e, "hashing a received instance failed");
                let refusal = Refusal::new(
                    status::OUT_OF_RESOURCES,
                    "internal",
                    "internal error while hashing",
                );
                return self.refused(&req, refusal, Some(temp), None, &rt, received_at);
            }
        };
        self.metrics.bytes_received.inc_by(size);
        if let Some(e) = write_error.or_else(|| self.storage.sync_temp(&temp).err()) {
            tracing::error!(error = %e, "writing a received instance failed");
            let refusal = Refusal::new(
                status::OUT_OF_RESOURCES,
                "write_failed",
                format!("write failed: {e}"),
            );
            return self.refused(&req, refusal, Some(temp), None, &rt, received_at);
        }

        let extra: Vec<dicom_core::Tag> = self.rule_attributes.iter().map(|(t, _)| *t).collect();
        let summary = match walk_file(&temp, data_start, &req.transfer_syntax, &extra) {
            Ok(s) => s,
            Err(parse::Error::Io(e)) => {
                // Our own read-back failed: not the sender's fault.
                tracing::error!(error = %e, "cannot read back a received instance");
                let refusal = Refusal::new(
                    status::OUT_OF_RESOURCES,
                    "write_failed",
                    "cannot read back received data",
                );
                return self.refused(&req, refusal, Some(temp), None, &rt, received_at);
            }
            Err(e) => {
                let kind = if matches!(e, parse::Error::Truncated(_)) {
                    "truncated"
                } else {
                    "unparseable"
                };
                let refusal = Refusal::new(status::CANNOT_UNDERSTAND, kind, e.to_string());
                return self.refused(&req, refusal, Some(temp), None, &rt, received_at);
            }
        };
        // The study, for the failure row, only when its UID is valid as sent.
        let study = summary
            .values
            .get(&dicom_core::Tag(0x0020, 0x000D))
            .and_then(|raw| Uid::parse(&String::from_utf8_lossy(raw)).ok())
            .map(Uid::into_string);
        let claim = verify::Claim {
            sop_class_uid: &req.sop_class_uid,
            sop_instance_uid: &req.sop_instance_uid,
            transfer_syntax: &req.transfer_syntax,
        };
        let identity = match verify::check(&summary, &claim) {
            Ok(id) => id,
            Err(refusal) => {
                return self.refused(&req, refusal, Some(temp), study, &rt, received_at);
            }
        };
        let existing = match rt.block_on(existing) {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => return self.catalog_failed(&req, e, temp, &rt, received_at),
            Err(e) => {
                tracing::error!(error = %e, "catalog lookup task failed");
                let refusal =
                    Refusal::new(status::OUT_OF_RESOURCES, "catalog", "catalog unavailable");
                return self.refused(&req, refusal, Some(temp), study, &rt, received_at);
            }
        };
        let received = Received {
            identity,
            summary,
            temp,
            sha256,
            size,
            received_at,
        };
        self.keep(req, received, existing, &rt)
    }

    /// Stores a verified instance, or recognises a resend.
    fn keep(
        &self,
        req: Request,
        received: Received,
        existing: Option<catalog::InstanceRow>,
        rt: &tokio::runtime::Handle,
    ) -> Outcome {
        let Received {
            identity: id,
            summary,
            temp,
            sha256,
            size,
            received_at,
        } = received;
        let study = Some(id.study.to_string());
        if let Some(row) = existing {
            if row.sha256 == sha256 {
                self.storage.discard(temp);
                self.metrics.instances_duplicate.inc();
                tracing::info!(sop_instance_uid = %id.sop_instance, calling_ae = %req.calling_ae, "identical resend: no-op");
                return Outcome::Duplicate;
            }
            let path = match self.storage.quarantine(temp, &id.sop_instance, &sha256) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot quarantine a conflicting instance");
                    let refusal = Refusal::new(
                        status::OUT_OF_RESOURCES,
                        "write_failed",
                        format!("write failed: {e}"),
                    );
                    return self.refused(&req, refusal, None, study, rt, received_at);
                }
            };
            let conflict = NewConflict {
                at: received_at,
                sop_instance_uid: id.sop_instance.to_string(),
                study_uid: study,
                calling_ae: req.calling_ae.clone(),
                existing_sha256: row.sha256,
                new_sha256: sha256,
                quarantine_path: path.to_string_lossy().into_owned(),
            };
            if let Err(e) = rt.block_on(self.catalog.call(move |s| s.record_conflict(&conflict))) {
                tracing::error!(error = %e, "cannot record an integrity conflict");
            }
            self.metrics.integrity_conflicts.inc();
            tracing::warn!(sop_instance_uid = %id.sop_instance, calling_ae = %req.calling_ae, "different content under a stored SOP Instance UID: quarantined");
            return Outcome::Conflict;
        }
        let rel_path = match self
            .storage
            .commit(temp, &id.study, &id.series, &id.sop_instance)
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot move an instance into place");
                let refusal = Refusal::new(
                    status::OUT_OF_RESOURCES,
                    "write_failed",
                    format!("write failed: {e}"),
                );
                return self.refused(&req, refusal, None, study, rt, received_at);
            }
        };
        let text = |g, e| parse::text(&summary, dicom_core::Tag(g, e));
        // dicom-object reads an undefined-length UN in Explicit VR otherwise
        // than the standard (and our walk) does, so no length the walk
        // checked would bound what it allocates: such a file is stored, as
        // verified, but its report content is not read.
        let report = if summary.implicit_un_sequence {
            tracing::warn!(sop_instance_uid = %id.sop_instance,
                "stored; report content not read: it holds an undefined-length UN element");
            None
        } else {
            self.read_report(&id, &rel_path, size, received_at)
        };
        let modality = text(0x0008, 0x0060);
        let forward_to =
            self.forward
                .destinations_for(&req.source, modality.as_deref(), &req.calling_ae);
        // Read from values the walk already collected: no cost but a parse.
        let clock = self.clock_skew_after.and_then(|threshold| {
            Some(catalog::ClockReading {
                via: "dicom",
                sender: req.calling_ae.clone(),
                sender_time: clock::made_at(&summary, &self.reports.timezone)?,
                received_at,
                threshold,
            })
        });
        let record = NewInstance {
            study_uid: id.study.to_string(),
            series_uid: id.series.to_string(),
            sop_instance_uid: id.sop_instance.to_string(),
            sop_class_uid: id.sop_class.to_string(),
            transfer_syntax: uid::trim(&req.transfer_syntax).to_owned(),
            patient_id: text(0x0010, 0x0020),
            issuer_of_patient_id: text(0x0010, 0x0021),
            accession_number: text(0x0008, 0x0050),
            issuer_of_accession: parse::item_text(
                &summary,
                parse::ISSUER_OF_ACCESSION_SEQUENCE,
                parse::LOCAL_NAMESPACE_ENTITY_ID,
            ),
            modality,
            study_date: text(0x0008, 0x0020),
            study_time: text(0x0008, 0x0030),
            study_description: text(0x0008, 0x1030),
            referring_physician: text(0x0008, 0x0090),
            institution_name: text(0x0008, 0x0080),
            series_number: parse::int(&summary, dicom_core::Tag(0x0020, 0x0011)),
            series_description: text(0x0008, 0x103E),
            size_bytes: size,
            sha256,
            rel_path: rel_path.to_string_lossy().into_owned(),
            received_at,
            calling_ae: req.calling_ae.clone(),
            source: req.source.clone(),
            report: report.map(Box::new),
            attributes: self
                .rule_attributes
                .iter()
                .filter_map(|(tag, keyword)| {
                    parse::text(&summary, *tag).map(|v| (keyword.clone(), v))
                })
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            forward_to,
            clock,
        };
        match rt.block_on(self.catalog.record_instance(record)) {
            Ok(()) => {
                self.metrics.instances_stored.inc();
                tracing::debug!(sop_instance_uid = %id.sop_instance, "stored");
                Outcome::Stored
            }
            Err(e) => {
                // The file is in place but not catalogued: take it back out
                // so that nothing uncatalogued looks like an instance.
                let _ = std::fs::remove_file(self.storage.root().join(&rel_path));
                let refusal = match e {
                    catalog::Error::SeriesInOtherStudy { .. } => Refusal::new(
                        status::CANNOT_UNDERSTAND,
                        "series_conflict",
                        "SeriesInstanceUID already belongs to another study",
                    ),
                    e => {
                        tracing::error!(error = %e, "cannot commit an instance to the catalog");
                        Refusal::new(status::OUT_OF_RESOURCES, "catalog", "catalog write failed")
                    }
                };
                self.refused(&req, refusal, None, study, rt, received_at)
            }
        }
    }

    fn catalog_failed(
        &self,
        req: &Request,
        e: catalog::Error,
        temp: TempFile,
        rt: &tokio::runtime::Handle,
        at: jiff::Timestamp,
    ) -> Outcome {
        tracing::error!(error = %e, "catalog lookup failed");
        let refusal = Refusal::new(status::OUT_OF_RESOURCES, "catalog", "catalog unavailable");
        self.refused(req, refusal, Some(temp), None, rt, at)
    }

    /// Logs, counts and records a refusal; keeps the data for diagnosis.
    fn refused(
        &self,
        req: &Request,
        refusal: Refusal,
        temp: Option<TempFile>,
        study_uid: Option<String>,
        rt: &tokio::runtime::Handle,
        at: jiff::Timestamp,
    ) -> Outcome {
        tracing::warn!(
            calling_ae = %req.calling_ae,
            sop_class_uid = %req.sop_class_uid,
            sop_instance_uid = %req.sop_instance_uid,
            status = format_args!("{:#06X}", refusal.status),
            reason = %refusal.reason,
            "instance refused"
        );
        self.metrics.failure(refusal.kind);
        let failure = NewFailure {
            at,
            calling_ae: req.calling_ae.clone(),
            source: req.source.clone(),
            sop_class_uid: Some(req.sop_class_uid.clone()),
            sop_instance_uid: Some(req.sop_instance_uid.clone()),
            study_uid,
            status: refusal.status,
            reason: refusal.reason.clone(),
        };
        let id = rt.block_on(self.catalog.call(move |s| s.record_failure(&failure)));
        if let Err(e) = &id {
            tracing::error!(error = %e, "cannot record an ingest failure");
        }
        if let Some(temp) = temp {
            let name = match id {
                Ok(id) => format!("failure-{id}"),
                Err(_) => format!("failure-{}", at.as_millisecond()),
            };
            if let Err(e) = self.storage.keep_rejected(temp, &name) {
                tracing::warn!(error = %e, "cannot keep a refused data set");
            }
        }
        Outcome::Refused(refusal)
    }
}

/// A data set that passed verification, on its way into the store.
struct Received {
    identity: Identity,
    summary: Summary,
    temp: TempFile,
    sha256: String,
    size: u64,
    received_at: jiff::Timestamp,
}

/// The SOP Instance UIDs being stored right now. A second store of the
/// same UID (the same instance sent on two associations at once) waits for
/// the first, so that "is it stored already?" has one answer per store.
#[derive(Default)]
struct InFlight {
    uids: Mutex<HashSet<String>>,
    released: Condvar,
}

/// Holds a claim on one SOP Instance UID until dropped.
struct Claim<'a> {
    owner: &'a InFlight,
    uid: String,
}

impl InFlight {
    fn claim(&self, uid: &str) -> Claim<'_> {
        // Poisoning would mean a panic while the set was held; the set
        // itself is still consistent (insert and remove are single calls).
        let mut uids = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        while uids.contains(uid) {
            uids = self.released.wait(uids).unwrap_or_else(|p| p.into_inner());
        }
        uids.insert(uid.to_owned());
        Claim {
            owner: self,
            uid: uid.to_owned(),
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut uids = self.owner.uids.lock().unwrap_or_else(|p| p.into_inner());
        uids.remove(&self.uid);
        self.owner.released.notify_all();
    }
}

/// Preamble, magic and file meta group for the stored file. The data set
/// follows exactly as received.
fn file_header(req: &Request) -> Vec<u8> {
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(uid::trim(&req.sop_class_uid))
        .media_storage_sop_instance_uid(uid::trim(&req.sop_instance_uid))
        .transfer_syntax(uid::trim(&req.transfer_syntax))
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .source_application_entity_title(req.calling_ae.trim())
        .build();
    match meta {
        Ok(meta) => {
            if let Err(e) = meta.write(&mut out) {
                tracing::error!(error = %e, "encoding the file meta group failed");
            }
        }
        Err(e) => tracing::error!(error = %e, "building the file meta group failed"),
    }
    out
}

/// Walks the data set in a received file.
fn walk_file(
    temp: &TempFile,
    start: u64,
    ts: &str,
    extra: &[dicom_core::Tag],
) -> Result<Summary, parse::Error> {
    let mut file = &temp.file;
    let end = file.seek(io::SeekFrom::End(0))?;
    let ts = uid::trim(ts);
    if verify::is_deflated(ts) {
        file.seek(io::SeekFrom::Start(start))?;
        let inflated =
            flate2::read::DeflateDecoder::new(io::BufReader::new(file.take(end - start)));
        let mut src = StreamSource::new(inflated);
        parse::walk_collecting(&mut src, Encoding::EXPLICIT_LE, extra)
    } else {
        let mut src = SeekSource::new(file, start, end)?;
        parse::walk_collecting(&mut src, verify::encoding(ts), extra)
    }
}

/// Where the data set starts in a stored file: after the preamble, the
/// magic and the file meta group, whose length its first element gives.
pub fn data_set_offset(header: &[u8]) -> Option<u64> {
    if header.len() < 144 || &header[128..132] != b"DICM" || header[132..136] != [2, 0, 0, 0] {
        return None;
    }
    let len = u32::from_le_bytes(header[140..144].try_into().ok()?);
    Some(144 + u64::from(len))
}

/// SHA-256 of a stored file's data set, as kept in the catalog.
pub fn hash_stored_file(path: &std::path::Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut header = [0u8; 144];
    file.read_exact(&mut header)?;
    let offset = data_set_offset(&header)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no DICOM file meta header"))?;
    file.seek(io::SeekFrom::Start(offset))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
