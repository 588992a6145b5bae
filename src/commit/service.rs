//! What the SCP's associations do with storage commitment messages, and
//! the two background tasks: the reporter (our N-EVENT-REPORTs to peers
//! that asked us to commit) and the requesters (our N-ACTIONs to
//! destinations that commit).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::link::Link;
use super::wire::{self, Reference, Report, Request};
use crate::catalog::{Catalog, CommitAnswer};
use crate::dimse::status;
use crate::metrics::Metrics;
use crate::scu::Peer;

/// Status: processing failure (PS3.7 C.4.1.1.3 / N-ACTION).
pub const PROCESSING_FAILURE: u16 = 0x0110;
/// Status: no such SOP class / instance for an N- request.
pub const NO_SUCH_SOP_CLASS: u16 = 0x0118;
pub const NO_SUCH_SOP_INSTANCE: u16 = 0x0112;
/// Status: no such action type.
pub const NO_SUCH_ACTION_TYPE: u16 = 0x0123;
/// Status: invalid argument value / missing attribute (the data set).
pub const INVALID_ARGUMENT: u16 = 0x0115;

/// How long a peer's report waits for the association that brought the
/// request before the reporter sends it on a new one.
pub const HOLD: Duration = Duration::from_secs(10);
/// How long a destination's report may take before the request is made
/// again under a new Transaction UID.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(15 * 60);
/// How often the tasks look for work.
pub const POLL: Duration = Duration::from_secs(1);

/// Storage commitment, shared by every association and task.
pub struct Commitments {
    catalog: Catalog,
    our_ae: String,
    /// Peers we can reach, by AE title: where reports go.
    peers: HashMap<String, Peer>,
    /// Destinations that commit: AE title → queue name.
    destinations: HashMap<String, String>,
    metrics: Arc<Metrics>,
}

impl Commitments {
    pub fn new(
        config: &crate::config::Config,
        catalog: Catalog,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let peers = config
            .dicom
            .peers
            .iter()
            .filter_map(|p| {
                Some((
                    p.ae_title.clone(),
                    Peer {
                        ae_title: p.ae_title.clone(),
                        address: format!("{}:{}", p.host.as_deref()?, p.port?),
                    },
                ))
            })
            .collect();
        let destinations = config
            .forward
            .destinations
            .iter()
            .filter(|d| d.storage_commitment)
            .map(|d| (d.ae_title.clone(), d.name.clone()))
            .collect();
        Arc::new(Commitments {
            catalog,
            our_ae: config.dicom.ae_title.clone(),
            peers,
            destinations,
            metrics,
        })
    }

    /// An N-ACTION-RQ from `calling_ae`: checks it, records the request
    /// (durably, before answering), and returns the N-ACTION-RSP status
    /// with, on success, the Transaction UID whose report is now owed.
    pub async fn on_request(
        &self,
        calling_ae: &str,
        command: &wire::Command,
        data: &[u8],
        syntax: wire::Syntax,
    ) -> (u16, Option<String>) {
        if command.sop_class_uid.as_deref() != Some(wire::SOP_CLASS_UID) {
            return (NO_SUCH_SOP_CLASS, None);
        }
        if command.sop_instance_uid.as_deref() != Some(wire::SOP_INSTANCE_UID) {
            return (NO_SUCH_SOP_INSTANCE, None);
        }
        if command.action_type_id != Some(wire::ACTION_REQUEST_COMMITMENT) {
            return (NO_SUCH_ACTION_TYPE, None);
        }
        let request = match Request::decode(data, syntax) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(calling_ae, error = %e, "storage commitment request refused");
                return (INVALID_ARGUMENT, None);
            }
        };
        let items: Vec<(String, String)> = request
            .items
            .iter()
            .map(|r| (r.sop_class_uid.clone(), r.sop_instance_uid.clone()))
            .collect();
        let count = items.len();
        let (ae, tx) = (calling_ae.to_owned(), request.transaction_uid.clone());
        let now = Timestamp::now();
        let report_at = now
            .checked_add(jiff::SignedDuration::try_from(HOLD).unwrap_or_default())
            .unwrap_or(now);
        match self
            .catalog
            .call(move |s| s.record_commit_request(&tx, &ae, &items, now, report_at))
            .await
        {
            Ok(true) => {
                tracing::info!(calling_ae, transaction_uid = %request.transaction_uid, instances = count,
                    "storage commitment requested");
                (status::SUCCESS, Some(request.transaction_uid))
            }
            Ok(false) => {
                tracing::warn!(calling_ae, transaction_uid = %request.transaction_uid,
                    "storage commitment request reuses another caller's Transaction UID");
                (PROCESSING_FAILURE, None)
            }
            Err(e) => {
                tracing::error!(calling_ae, error = %e, "cannot record a storage commitment request");
                (PROCESSING_FAILURE, None)
            }
        }
    }

    /// The report owed for `transaction_uid`, computed from the catalog now.
    pub async fn report(&self, transaction_uid: &str) -> Result<(Report, CommitAnswer), String> {
        let tx = transaction_uid.to_owned();
        let answer = self
            .catalog
            .call(move |s| s.commit_answer(&tx))
            .await
            .map_err(|e| e.to_string())?;
        let reference = |class: &str, instance: &str| Reference {
            sop_class_uid: class.to_owned(),
            sop_instance_uid: instance.to_owned(),
        };
        let report = Report {
            transaction_uid: transaction_uid.to_owned(),
            committed: answer
                .committed
                .iter()
                .map(|(c, i)| reference(c, i))
                .collect(),
            failed: answer
                .failed
                .iter()
                .map(|(c, i, reason)| (reference(c, i), *reason))
                .collect(),
        };
        Ok((report, answer))
    }

    /// The peer answered success to the report of `transaction_uid`.
    pub async fn delivered(&self, transaction_uid: &str, answer: CommitAnswer) {
        let tx = transaction_uid.to_owned();
        let now = Timestamp::now();
        if let Err(e) = self
            .catalog
            .call(move |s| s.commit_report_delivered(&tx, &answer, now))
            .await
        {
            tracing::error!(transaction_uid, error = %e, "cannot record a delivered commitment report");
        }
    }

    /// The report of `transaction_uid` could not be delivered on the
    /// request's association: the reporter takes it over now.
    pub async fn hand_over(&self, transaction_uid: &str, why: &str) {
        let (tx, why) = (transaction_uid.to_owned(), why.to_owned());
        let now = Timestamp::now();
        if let Err(e) = self
            .catalog
            .call(move |s| s.commit_report_retry(&tx, &why, now))
            .await
        {
            tracing::error!(transaction_uid, error = %e, "cannot reschedule a commitment report");
        }
    }

    /// An N-EVENT-REPORT-RQ from a destination about our request: records
    /// what it committed, and returns the N-EVENT-REPORT-RSP status.
    pub async fn on_report(
        &self,
        calling_ae: &str,
        command: &wire::Command,
        data: &[u8],
        syntax: wire::Syntax,
    ) -> u16 {
        if command.sop_class_uid.as_deref() != Some(wire::SOP_CLASS_UID) {
            return NO_SUCH_SOP_CLASS;
        }
        let report = match Report::decode(data, syntax) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(calling_ae, error = %e, "storage commitment report refused");
                return INVALID_ARGUMENT;
            }
        };
        let tx = report.transaction_uid.clone();
        let destination = match self.catalog.call(move |s| s.commit_destination(&tx)).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                tracing::warn!(calling_ae, transaction_uid = %report.transaction_uid,
                    "storage commitment report for a transaction we never asked");
                return PROCESSING_FAILURE;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot look up a commitment transaction");
                return PROCESSING_FAILURE;
            }
        };
        // Only the destination asked may answer for it.
        if self.destinations.get(calling_ae) != Some(&destination) {
            tracing::warn!(calling_ae, destination = %destination,
                "storage commitment report from an AE that is not the destination asked");
            return PROCESSING_FAILURE;
        }
        // An instance listed as both committed and failed counts as failed.
        let failed: Vec<(String, u16)> = report
            .failed
            .iter()
            .map(|(r, reason)| (r.sop_instance_uid.clone(), *reason))
            .collect();
        let committed: Vec<String> = report
            .committed
            .iter()
            .map(|r| r.sop_instance_uid.clone())
            .filter(|sop| !failed.iter().any(|(f, _)| f == sop))
            .collect();
        let tx = report.transaction_uid.clone();
        let now = Timestamp::now();
        match self
            .catalog
            .call(move |s| s.commit_reported(&tx, &committed, &failed, now))
            .await
        {
            Ok((ok, bad)) => {
                tracing::info!(destination = %destination, transaction_uid = %report.transaction_uid,
                    committed = ok, failed = bad, "storage commitment reported");
                for (outcome, n) in [("committed", ok), ("failed", bad)] {
                    self.metrics
                        .commitments
                        .get_or_create(&crate::metrics::ForwardedLabels {
                            destination: destination.clone(),
                            outcome: outcome.to_owned(),
                        })
                        .inc_by(n as u64);
                }
                status::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record a storage commitment report");
                PROCESSING_FAILURE
            }
        }
    }

    /// Sends the report of `transaction_uid` to `calling_ae` on a new
    /// association, proposing to take the SCP role.
    async fn deliver(&self, transaction_uid: &str, calling_ae: &str) -> Result<(), String> {
        let peer = self.peers.get(calling_ae).ok_or_else(|| {
            format!(
                "{calling_ae} has no host and port in [[dicom.peers]]: the report cannot be sent"
            )
        })?;
        let (report, answer) = self.report(transaction_uid).await?;
        let mut link = Link::open(&self.our_ae, peer, true)
            .await
            .map_err(|e| e.to_string())?;
        let id = link.message_id();
        let data = report.encode(link.syntax);
        let sent = async {
            link.send(wire::n_event_report_rq(id, report.event_type()), Some(data))
                .await?;
            link.receive().await
        }
        .await;
        match sent {
            Ok(reply) if reply.command.is_response() && reply.command.message_id == id => {
                link.release().await;
                match reply.command.status {
                    Some(0) => {
                        self.delivered(transaction_uid, answer).await;
                        Ok(())
                    }
                    other => Err(format!(
                        "{calling_ae} answered the report with status {other:?}"
                    )),
                }
            }
            Ok(_) => {
                link.abort().await;
                Err(format!("{calling_ae} did not answer the report"))
            }
            Err(e) => {
                link.abort().await;
                Err(e.to_string())
            }
        }
    }

    /// The reporter: delivers every report still owed on a new association,
    /// with backoff, until `shutdown`.
    pub async fn run_reporter(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let due = self
                .catalog
                .call(|s| s.commit_reports_due(Timestamp::now(), 16))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot read the commitment reports owed");
                    Vec::new()
                });
            for d in due {
                if shutdown.is_cancelled() {
                    break;
                }
                if let Err(why) = self.deliver(&d.transaction_uid, &d.calling_ae).await {
                    let wait = crate::forward::backoff(d.attempts.saturating_add(1), 0.5);
                    tracing::warn!(transaction_uid = %d.transaction_uid, calling_ae = %d.calling_ae,
                        error = %why, retry_in = ?wait, "storage commitment report not delivered");
                    let next = Timestamp::now()
                        .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
                        .unwrap_or_else(|_| Timestamp::now());
                    let tx = d.transaction_uid.clone();
                    let _ = self
                        .catalog
                        .call(move |s| s.commit_report_retry(&tx, &why, next))
                        .await;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// The requester of one destination: asks it to commit each study
    /// whose instances were all sent to it, once the study is stable.
    pub async fn run_requester(
        self: Arc<Self>,
        destination: crate::config::Destination,
        shutdown: CancellationToken,
    ) {
        let peer = Peer {
            ae_title: destination.ae_title.clone(),
            address: destination.address(),
        };
        let name = destination.name.clone();
        while !shutdown.is_cancelled() {
            self.lapse_unanswered(&name).await;
            let wanted = name.clone();
            let ready = self
                .catalog
                .call(move |s| s.commit_ready(&wanted, 16))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(destination = %name, error = %e, "cannot read what to commit");
                    Vec::new()
                });
            for batch in ready {
                if let Err(e) = self.request(&name, &peer, &batch.items).await {
                    tracing::warn!(destination = %name, study_uid = %batch.study_uid, error = %e,
                        "storage commitment request not sent; asked again later");
                    // Wait before the next attempt rather than spin.
                    break;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL * 5) => {}
            }
        }
    }

    /// Requests left unanswered past [`ANSWER_WITHIN`] are asked again.
    async fn lapse_unanswered(&self, destination: &str) {
        let now = Timestamp::now();
        let before = now
            .checked_sub(jiff::SignedDuration::try_from(ANSWER_WITHIN).unwrap_or_default())
            .unwrap_or(now);
        let wanted = destination.to_owned();
        let Ok(stale) = self
            .catalog
            .call(move |s| s.commit_unanswered(&wanted, before))
            .await
        else {
            return;
        };
        for tx in stale {
            tracing::warn!(destination, transaction_uid = %tx, "storage commitment unanswered; asking again");
            let _ = self
                .catalog
                .call(move |s| s.commit_request_lapsed(&tx, "unanswered"))
                .await;
        }
    }

    /// One N-ACTION for `items` (class, instance) under a new Transaction
    /// UID, recorded before it is sent: the destination may answer on
    /// another association before this one has read the N-ACTION-RSP.
    async fn request(
        &self,
        destination: &str,
        peer: &Peer,
        items: &[(String, String)],
    ) -> Result<(), String> {
        let transaction_uid = new_uid();
        let sops: Vec<String> = items.iter().map(|(_, i)| i.clone()).collect();
        let (dest, tx) = (destination.to_owned(), transaction_uid.clone());
        let now = Timestamp::now();
        self.catalog
            .call(move |s| s.commit_requested(&dest, &tx, &sops, now))
            .await
            .map_err(|e| e.to_string())?;
        let result = self.send_request(peer, &transaction_uid, items).await;
        if let Err(why) = &result {
            let (tx, why) = (transaction_uid.clone(), why.clone());
            let _ = self
                .catalog
                .call(move |s| s.commit_request_lapsed(&tx, &why))
                .await;
        } else {
            tracing::info!(destination, transaction_uid = %transaction_uid, instances = items.len(),
                "storage commitment asked");
        }
        result
    }

    async fn send_request(
        &self,
        peer: &Peer,
        transaction_uid: &str,
        items: &[(String, String)],
    ) -> Result<(), String> {
        let request = Request {
            transaction_uid: transaction_uid.to_owned(),
            items: items
                .iter()
                .map(|(c, i)| Reference {
                    sop_class_uid: c.clone(),
                    sop_instance_uid: i.clone(),
                })
                .collect(),
        };
        let mut link = Link::open(&self.our_ae, peer, false)
            .await
            .map_err(|e| e.to_string())?;
        let id = link.message_id();
        let data = request.encode(link.syntax);
        if let Err(e) = link.send(wire::n_action_rq(id), Some(data)).await {
            link.abort().await;
            return Err(e.to_string());
        }
        let reply = match link.receive().await {
            Ok(r) => r,
            Err(e) => {
                link.abort().await;
                return Err(e.to_string());
            }
        };
        if !reply.command.is_response() || reply.command.message_id != id {
            link.abort().await;
            return Err("the N-ACTION was not answered".into());
        }
        if reply.command.status != Some(0) {
            link.release().await;
            return Err(format!(
                "{} refused the request with status {:?}",
                peer.ae_title, reply.command.status
            ));
        }
        link.release().await;
        Ok(())
    }
}

/// A new UID under the UUID-derived root 2.25 (PS3.5 B.2), for Transaction
/// UIDs: at most 44 characters.
pub fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: fall back on the clock and the process id,
        // unique enough for a transaction.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_uids_are_valid_and_differ() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        for uid in [&a, &b] {
            assert!(uid.len() <= 64, "{uid}");
            assert!(crate::uid::Uid::parse(uid).is_ok(), "{uid}");
        }
    }
}
