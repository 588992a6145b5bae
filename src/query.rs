//! The C-FIND SCU (Study Root, PS3.4 Annex C): asks a peer how many
//! instances it holds of one study, and of each of its series, so that a
//! transfer can be checked for completeness against what was received. One
//! association carries a STUDY-level query and then a SERIES-level one.
//!
//! Everything in an answer comes from the peer. An identifier is walked
//! with `ingest::parse::walk_collecting`, which checks every declared length
//! against the bytes received and keeps only short top-level values, rather
//! than decoded by an object model. Identifiers and matches are bounded in
//! size and number, UIDs pass [`Uid::parse`] before they are returned, and
//! nothing here may panic on what a peer sends.

use std::collections::BTreeMap;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::dimse::{self, Reply, field, status};
use crate::ingest::parse::{self, Encoding, SeekSource};
use crate::scu::{self, Error, Peer};
use crate::uid::{self, Uid};

/// Study Root Query/Retrieve Information Model – FIND.
pub const STUDY_ROOT_FIND: &str = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;

/// Proposed for the query context, in this order of preference.
const TRANSFER_SYNTAXES: [&str; 2] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
];

/// The largest identifier accepted in one pending response.
pub const MAX_IDENTIFIER: usize = 1024 * 1024;

/// The most pending responses accepted for one query.
pub const MAX_MATCHES: usize = 10_000;

/// The largest response command set accepted (as the SCP does for requests).
const MAX_COMMAND_SET: usize = 64 * 1024;

/// Both queries together must be answered within this time. Each PDU must
/// also arrive within `scu`'s read timeout, but a peer trickling matches
/// could otherwise hold the association for hours.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// Pending statuses: a match follows (0xFF01: some optional keys were not
/// supported).
const PENDING: [u16; 2] = [0xFF00, 0xFF01];

/// What a peer says it holds of one study.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StudyCounts {
    /// NumberOfStudyRelatedInstances (0020,1208) from the STUDY-level answer; None when the peer left it out.
    pub study_instances: Option<u32>,
    /// Per series: (SeriesInstanceUID, NumberOfSeriesRelatedInstances (0020,1209) or None), sorted by UID.
    pub series: Vec<(String, Option<u32>)>,
}

/// Asks `peer` (Study Root C-FIND, one association) how many instances it
/// holds of `study_uid` as a whole and per series. Ok(None) when the peer
/// has no such study (no pending match at STUDY level).
///
/// [`Error::Association`] means the peer could not be reached or refused
/// the association; [`Error::Protocol`] covers an invalid `study_uid`, a
/// query context the peer did not accept, a failure or cancel status (the
/// association is released), and a broken exchange or timeout (the
/// association is aborted).
pub async fn study_counts(
    calling_ae: &str,
    peer: &Peer,
    study_uid: &str,
) -> Result<Option<StudyCounts>, Error> {
    // Also keeps wildcards (`*`, `?`) out of the query: a valid UID is
    // matched as a single value.
    let study = Uid::parse(study_uid)
        .map_err(|e| Error::Protocol(format!("Study Instance UID {study_uid:?} {e}")))?;
    let span = tracing::info_span!("c_find", peer = %peer.address, study = %study);
    counts(calling_ae, peer, &study).instrument(span).await
}

async fn counts(calling_ae: &str, peer: &Peer, study: &Uid) -> Result<Option<StudyCounts>, Error> {
    let mut assoc = scu::options(calling_ae, peer)
        .with_presentation_context(STUDY_ROOT_FIND, TRANSFER_SYNTAXES.to_vec())
        .establish_async(peer.address.as_str())
        .await
        .map_err(|e| Error::Association(peer.address.clone(), e.to_string()))?;
    // Small PDUs each way: without this each one waits for a delayed ACK.
    let _ = assoc.inner_stream().set_nodelay(true);
    let Some((pc_id, syntax)) = accepted(&assoc) else {
        let _ = assoc.release().await;
        return Err(Error::Protocol(
            "Study Root C-FIND was not accepted in explicit or implicit VR little endian".into(),
        ));
    };
    let outcome =
        tokio::time::timeout(DEADLINE, both_queries(&mut assoc, pc_id, syntax, study)).await;
    match outcome {
        Ok(Ok(counts)) => {
            let _ = assoc.release().await;
            Ok(counts)
        }
        Ok(Err(Stop::Status(e))) => {
            let _ = assoc.release().await;
            Err(e)
        }
        Ok(Err(Stop::Broken(e))) => {
            let _ = assoc.abort().await;
            Err(e)
        }
        Err(_) => {
            let _ = assoc.abort().await;
            Err(Error::Protocol(format!(
                "C-FIND not answered within {} s",
                DEADLINE.as_secs()
            )))
        }
    }
}

/// The query context's id and transfer syntax, when it was accepted in
/// one of the syntaxes proposed.
fn accepted(assoc: &AsyncClientAssociation<TcpStream>) -> Option<(u8, Syntax)> {
    assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && uid::trim(&pc.abstract_syntax) == STUDY_ROOT_FIND
        })
        .find_map(|pc| Some((pc.id, Syntax::from_uid(uid::trim(&pc.transfer_syntax))?)))
}

async fn both_queries(
    assoc: &mut AsyncClientAssociation<TcpStream>,
    pc_id: u8,
    syntax: Syntax,
    study: &Uid,
) -> Result<Option<StudyCounts>, Stop> {
    let studies = query(assoc, pc_id, syntax, Level::Study, 1, study).await?;
    let Some(study_instances) = study_answer(&studies, study) else {
        return Ok(None);
    };
    let series = query(assoc, pc_id, syntax, Level::Series, 2, study).await?;
    Ok(Some(StudyCounts {
        study_instances,
        series: series_answer(&series, study),
    }))
}

/// Sends one C-FIND-RQ and collects its pending matches until the final
/// response.
async fn query(
    assoc: &mut AsyncClientAssociation<TcpStream>,
    pc_id: u8,
    syntax: Syntax,
    level: Level,
    message_id: u16,
    study: &Uid,
) -> Result<Vec<Match>, Stop> {
    let identifier = encode_identifier(level, study, syntax).map_err(Stop::Broken)?;
    let command = dimse::encode_request(field::C_FIND_RQ, message_id, STUDY_ROOT_FIND, None, true);
    scu::send_command(assoc, pc_id, command)
        .await
        .map_err(Stop::Broken)?;
    let fragment = fragment_size(assoc.acceptor_max_pdu_length());
    for pdu in identifier_pdus(pc_id, &identifier, fragment) {
        assoc
            .send(&pdu)
            .await
            .map_err(|e| broken(format!("cannot send the identifier: {e}")))?;
    }

    let mut responses = Responses::new(pc_id, message_id, level, syntax);
    loop {
        // Linux leaves quick-ack mode on its own; a peer with Nagle's
        // algorithm on (Orthanc's DCMTK) then holds each small response
        // back until our delayed ACK, about 40 ms per query.
        let _ = socket2::SockRef::from(&*assoc.inner_stream()).set_tcp_quickack(true);
        let pdu = assoc
            .receive()
            .await
            .map_err(|e| broken(format!("no C-FIND response: {e}")))?;
        match pdu {
            Pdu::PData { data } => {
                let mut pdvs = data.into_iter();
                while let Some(pdv) = pdvs.next() {
                    if responses.push(pdv)? {
                        if pdvs.next().is_some() {
                            return Err(broken("data after the final C-FIND response"));
                        }
                        return Ok(responses.matches);
                    }
                }
            }
            Pdu::AbortRQ { source } => {
                return Err(broken(format!("peer aborted: {source:?}")));
            }
            other => {
                return Err(broken(format!(
                    "unexpected {} during C-FIND",
                    other.short_description()
                )));
            }
        }
    }
}

/// The most data one PDV may carry for a peer whose maximum PDU length is
/// `max_pdu` (0: no limit): the PDV item header takes 6 bytes of it.
fn fragment_size(max_pdu: u32) -> usize {
    match usize::try_from(max_pdu) {
        Ok(0) | Err(_) => MAX_IDENTIFIER,
        Ok(max) => max.saturating_sub(6).max(2),
    }
}

/// The identifier as P-DATA-TF PDUs of one data PDV each, the last one
/// marked last. dicom-ul's P-DATA writer is not used: its `Drop` calls
/// `block_in_place`, which panics on a current-thread runtime.
fn identifier_pdus(pc_id: u8, identifier: &[u8], fragment: usize) -> Vec<Pdu> {
    let chunks: Vec<&[u8]> = identifier.chunks(fragment.max(1)).collect();
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Data,
                is_last: i + 1 == count,
                data: chunk.to_vec(),
            }],
        })
        .collect()
}

/// Why a query stopped before its final success.
#[derive(Debug)]
enum Stop {
    /// The peer ended the query with a failure or cancel status; the
    /// association is still sound and is released.
    Status(Error),
    /// The exchange broke (or the peer misbehaved); the association is
    /// aborted.
    Broken(Error),
}

fn broken(what: impl Into<String>) -> Stop {
    Stop::Broken(Error::Protocol(what.into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Study,
    Series,
}

impl Level {
    /// The Query/Retrieve Level (0008,0052) value.
    fn keyword(self) -> &'static str {
        match self {
            Level::Study => "STUDY",
            Level::Series => "SERIES",
        }
    }

    /// The instance count the query asks for at this level.
    fn count_tag(self) -> Tag {
        match self {
            Level::Study => tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            Level::Series => tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        }
    }
}

/// The transfer syntax accepted for the query context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syntax {
    ExplicitLe,
    ImplicitLe,
}

impl Syntax {
    fn from_uid(ts: &str) -> Option<Syntax> {
        match ts {
            uids::EXPLICIT_VR_LITTLE_ENDIAN => Some(Syntax::ExplicitLe),
            uids::IMPLICIT_VR_LITTLE_ENDIAN => Some(Syntax::ImplicitLe),
            _ => None,
        }
    }

    fn encoding(self) -> Encoding {
        match self {
            Syntax::ExplicitLe => Encoding::EXPLICIT_LE,
            Syntax::ImplicitLe => Encoding::IMPLICIT_LE,
        }
    }

    fn transfer_syntax(self) -> dicom_encoding::TransferSyntax {
        use dicom_transfer_syntax_registry::entries;
        match self {
            Syntax::ExplicitLe => entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            Syntax::ImplicitLe => entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        }
    }
}

/// The query identifier: the level, the study as a unique key, and empty
/// return keys for the count (and, at SERIES level, the Series Instance
/// UID).
fn identifier(level: Level, study: &Uid) -> InMemDicomObject {
    let mut elements = vec![
        DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(level.keyword()),
        ),
        DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(study.as_str()),
        ),
        DataElement::new(level.count_tag(), VR::IS, PrimitiveValue::Empty),
    ];
    if level == Level::Series {
        elements.push(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::Empty,
        ));
    }
    InMemDicomObject::from_element_iter(elements)
}

fn encode_identifier(level: Level, study: &Uid, syntax: Syntax) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    identifier(level, study)
        .write_dataset_with_ts(&mut out, &syntax.transfer_syntax())
        .map_err(|e| {
            Error::Protocol(format!("cannot encode the {} query: {e}", level.keyword()))
        })?;
    Ok(out)
}

/// One pending match, as the peer sent it: UIDs are NUL-trimmed but not
/// yet checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Match {
    study_uid: Option<String>,
    series_uid: Option<String>,
    /// The level's count; None when absent, empty or not a count.
    instances: Option<u32>,
}

/// Reads a match out of an identifier encoded in `syntax`.
fn read_match(bytes: &[u8], level: Level, syntax: Syntax) -> Result<Match, parse::Error> {
    let mut src = SeekSource::new(std::io::Cursor::new(bytes), 0, bytes.len() as u64)?;
    let summary = parse::walk_collecting(&mut src, syntax.encoding(), &[level.count_tag()])?;
    let text = |tag: Tag| {
        summary
            .values
            .get(&tag)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let uid_of = |tag: Tag| {
        text(tag)
            .map(|s| uid::trim(s).to_owned())
            .filter(|s| !s.is_empty())
    };
    Ok(Match {
        study_uid: uid_of(tags::STUDY_INSTANCE_UID),
        series_uid: uid_of(tags::SERIES_INSTANCE_UID),
        instances: text(level.count_tag()).and_then(parse_count),
    })
}

/// An IS value as an instance count: spaces and NULs around it are padding,
/// an empty value is None, and so (with a warning) is anything but one
/// whole number from 0 to `u32::MAX` (IS allows a sign and leading zeros).
fn parse_count(raw: &str) -> Option<u32> {
    let s = raw.trim_matches([' ', '\0']);
    if s.is_empty() {
        return None;
    }
    let count = s.parse::<i64>().ok().and_then(|n| u32::try_from(n).ok());
    if count.is_none() {
        tracing::warn!(value = ?raw, "ignoring an instance count that is not a count");
    }
    count
}

/// The STUDY-level answer about `study`: None when the peer matched
/// nothing; otherwise the count of its first match (which may be None).
/// A match that names another study is ignored.
fn study_answer(matches: &[Match], study: &Uid) -> Option<Option<u32>> {
    let mut ours = matches.iter().filter(|m| names(m, study));
    let first = ours.next()?;
    if ours.next().is_some() {
        tracing::warn!("several STUDY-level matches for one study; using the first");
    }
    Some(first.instances)
}

/// The SERIES-level answer: valid Series Instance UIDs of `study` with
/// their counts, sorted by UID. Invalid or missing UIDs are dropped, and
/// of a UID matched twice the first answer is kept, each with a warning.
fn series_answer(matches: &[Match], study: &Uid) -> Vec<(String, Option<u32>)> {
    let mut series: BTreeMap<String, Option<u32>> = BTreeMap::new();
    for m in matches.iter().filter(|m| names(m, study)) {
        let Some(raw) = &m.series_uid else {
            tracing::warn!("ignoring a SERIES-level match without a Series Instance UID");
            continue;
        };
        match Uid::parse(raw) {
            Ok(uid) => {
                if series.contains_key(uid.as_str()) {
                    tracing::warn!(series = %uid, "series matched twice; keeping the first answer");
                } else {
                    series.insert(uid.into_string(), m.instances);
                }
            }
            Err(e) => {
                tracing::warn!(series = ?raw, error = %e, "ignoring an invalid Series Instance UID");
            }
        }
    }
    series.into_iter().collect()
}

/// True unless the match names a study other than `study` (a match
/// without a Study Instance UID answers the query it came with).
fn names(m: &Match, study: &Uid) -> bool {
    match &m.study_uid {
        Some(uid) if uid != study.as_str() => {
            tracing::warn!(other = ?uid, "ignoring a match for another study");
            false
        }
        _ => true,
    }
}

/// The responses to one C-FIND-RQ, assembled from P-DATA fragments as they
/// arrive: a command set, then for a pending response its identifier.
struct Responses {
    pc_id: u8,
    message_id: u16,
    level: Level,
    syntax: Syntax,
    /// The command set or identifier being received.
    buf: Vec<u8>,
    /// The response whose data set is being received.
    awaiting: Option<Reply>,
    matches: Vec<Match>,
}

impl Responses {
    fn new(pc_id: u8, message_id: u16, level: Level, syntax: Syntax) -> Responses {
        Responses {
            pc_id,
            message_id,
            level,
            syntax,
            buf: Vec::new(),
            awaiting: None,
            matches: Vec::new(),
        }
    }

    /// Takes one fragment; true once the final response has arrived (the
    /// matches are then complete).
    fn push(&mut self, pdv: PDataValue) -> Result<bool, Stop> {
        if pdv.presentation_context_id != self.pc_id {
            return Err(broken(format!(
                "a response on presentation context {} instead of {}",
                pdv.presentation_context_id, self.pc_id
            )));
        }
        let (limit, what) = match (&self.awaiting, &pdv.value_type) {
            (None, PDataValueType::Command) => (MAX_COMMAND_SET, "response command set"),
            (Some(_), PDataValueType::Data) => (MAX_IDENTIFIER, "identifier"),
            (None, PDataValueType::Data) => {
                return Err(broken(
                    "a data fragment where a C-FIND response was expected",
                ));
            }
            (Some(_), PDataValueType::Command) => {
                return Err(broken(
                    "a command fragment where an identifier was expected",
                ));
            }
        };
        if self.buf.len().saturating_add(pdv.data.len()) > limit {
            return Err(broken(format!("{what} over {limit} bytes")));
        }
        self.buf.extend_from_slice(&pdv.data);
        if !pdv.is_last {
            return Ok(false);
        }
        let bytes = std::mem::take(&mut self.buf);
        match self.awaiting.take() {
            None => {
                let reply =
                    Reply::decode(&bytes).map_err(|e| broken(format!("C-FIND response: {e}")))?;
                self.command(reply)
            }
            Some(reply) if PENDING.contains(&reply.status) => {
                if self.matches.len() >= MAX_MATCHES {
                    return Err(broken(format!("more than {MAX_MATCHES} C-FIND matches")));
                }
                let found = read_match(&bytes, self.level, self.syntax)
                    .map_err(|e| broken(format!("C-FIND identifier: {e}")))?;
                self.matches.push(found);
                Ok(false)
            }
            // A final response that carried a data set, now read past.
            Some(reply) => self.finish(&reply),
        }
    }

    fn command(&mut self, reply: Reply) -> Result<bool, Stop> {
        if reply.field != field::C_FIND_RQ | field::RESPONSE_BIT {
            return Err(broken(format!(
                "a response with command field {:#06X} to a C-FIND-RQ",
                reply.field
            )));
        }
        if reply.message_id_responded != self.message_id {
            return Err(broken(format!(
                "response to message {} while waiting for {}",
                reply.message_id_responded, self.message_id
            )));
        }
        if PENDING.contains(&reply.status) && !reply.has_data_set {
            return Err(broken("a pending C-FIND response without an identifier"));
        }
        if reply.has_data_set {
            self.awaiting = Some(reply);
            return Ok(false);
        }
        self.finish(&reply)
    }

    /// The final response: success ends the query, anything else fails it.
    fn finish(&self, reply: &Reply) -> Result<bool, Stop> {
        if reply.status == status::SUCCESS {
            return Ok(true);
        }
        let comment = reply
            .error_comment
            .as_deref()
            .map(|c| format!(" ({})", dimse::clip_comment(c)))
            .unwrap_or_default();
        Err(Stop::Status(Error::Protocol(format!(
            "C-FIND at {} level ended with status {:#06X}{comment}",
            self.level.keyword(),
            reply.status
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::dicom_value;
    use dicom_core::header::HasLength;

    const STUDY: &str = "1.2.826.0.1.3680043.10.1234.9.1";

    fn study() -> Uid {
        Uid::parse(STUDY).unwrap()
    }

    /// A response identifier as a peer might send it.
    fn answer(syntax: Syntax, elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
        let mut out = Vec::new();
        InMemDicomObject::from_element_iter(elements)
            .write_dataset_with_ts(&mut out, &syntax.transfer_syntax())
            .unwrap();
        out
    }

    fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
        DataElement::new(tag, vr, PrimitiveValue::from(value))
    }

    /// A C-FIND-RSP command set; `with_data` sets Command Data Set Type.
    fn rsp(message_id: u16, status: u16, with_data: bool) -> Vec<u8> {
        let elements = vec![
            DataElement::new(
                tags::COMMAND_FIELD,
                VR::US,
                dicom_value!(U16, [field::C_FIND_RQ | field::RESPONSE_BIT]),
            ),
            DataElement::new(
                tags::MESSAGE_ID_BEING_RESPONDED_TO,
                VR::US,
                dicom_value!(U16, [message_id]),
            ),
            DataElement::new(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                dicom_value!(U16, [if with_data { 0x0000 } else { 0x0101 }]),
            ),
            DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [status])),
        ];
        let mut out = Vec::new();
        InMemDicomObject::command_from_element_iter(elements)
            .write_dataset_with_ts(&mut out, &Syntax::ImplicitLe.transfer_syntax())
            .unwrap();
        out
    }

    fn pdv(value_type: PDataValueType, data: &[u8], is_last: bool) -> PDataValue {
        PDataValue {
            presentation_context_id: 1,
            value_type,
            is_last,
            data: data.to_vec(),
        }
    }

    fn command(data: &[u8]) -> PDataValue {
        pdv(PDataValueType::Command, data, true)
    }

    fn data(data: &[u8]) -> PDataValue {
        pdv(PDataValueType::Data, data, true)
    }

    fn series_match(series: &str, count: &str) -> Vec<u8> {
        answer(
            Syntax::ExplicitLe,
            vec![
                text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"),
                text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
                text(tags::SERIES_INSTANCE_UID, VR::UI, series),
                text(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, count),
            ],
        )
    }

    #[test]
    fn identifiers_carry_the_level_the_study_and_empty_return_keys() {
        for syntax in [Syntax::ExplicitLe, Syntax::ImplicitLe] {
            for level in [Level::Study, Level::Series] {
                let bytes = encode_identifier(level, &study(), syntax).unwrap();
                assert_eq!(bytes.len() % 2, 0, "{level:?} {syntax:?}");
                let obj =
                    InMemDicomObject::read_dataset_with_ts(&bytes[..], &syntax.transfer_syntax())
                        .unwrap();
                let str_of = |tag| obj.get(tag).unwrap().to_str().unwrap().into_owned();
                assert_eq!(str_of(tags::QUERY_RETRIEVE_LEVEL).trim(), level.keyword());
                assert_eq!(uid::trim(&str_of(tags::STUDY_INSTANCE_UID)), STUDY);
                assert!(obj.get(level.count_tag()).unwrap().is_empty());
                let series = obj.get(tags::SERIES_INSTANCE_UID);
                assert_eq!(series.is_some(), level == Level::Series);
                assert!(series.is_none_or(|e| e.is_empty()));
                let other_count = match level {
                    Level::Study => Level::Series,
                    Level::Series => Level::Study,
                }
                .count_tag();
                assert!(obj.get(other_count).is_none());
                assert_eq!(obj.iter().count(), 3 + usize::from(level == Level::Series));
            }
        }
    }

    #[test]
    fn identifiers_are_split_to_the_peers_pdu_size() {
        let bytes = encode_identifier(Level::Series, &study(), Syntax::ExplicitLe).unwrap();
        assert_eq!(fragment_size(0), MAX_IDENTIFIER);
        assert_eq!(fragment_size(16384), 16378);
        assert_eq!(fragment_size(3), 2);
        for fragment in [fragment_size(0), 10, 2] {
            let pdus = identifier_pdus(5, &bytes, fragment);
            let mut joined = Vec::new();
            for (i, pdu) in pdus.iter().enumerate() {
                let Pdu::PData { data } = pdu else {
                    panic!("{pdu:?}")
                };
                let [pdv] = &data[..] else { panic!("{data:?}") };
                assert_eq!(pdv.presentation_context_id, 5);
                assert_eq!(pdv.value_type, PDataValueType::Data);
                assert_eq!(pdv.is_last, i + 1 == pdus.len());
                assert!(pdv.data.len() <= fragment);
                joined.extend_from_slice(&pdv.data);
            }
            assert_eq!(joined, bytes);
        }
    }

    #[test]
    fn the_request_command_set_has_medium_priority_and_a_data_set() {
        let bytes = dimse::encode_request(field::C_FIND_RQ, 1, STUDY_ROOT_FIND, None, true);
        let cmd = dimse::Command::decode(&bytes).unwrap();
        assert_eq!(cmd.field, field::C_FIND_RQ);
        assert_eq!(cmd.sop_class_uid.as_deref(), Some(STUDY_ROOT_FIND));
        assert!(cmd.has_data_set);
        let obj = InMemDicomObject::read_dataset_with_ts(
            &bytes[..],
            &Syntax::ImplicitLe.transfer_syntax(),
        )
        .unwrap();
        assert_eq!(
            obj.get(tags::PRIORITY).unwrap().to_int::<u16>().unwrap(),
            0x0000
        );
    }

    #[test]
    fn matches_are_read_in_both_syntaxes() {
        for syntax in [Syntax::ExplicitLe, Syntax::ImplicitLe] {
            let bytes = answer(
                syntax,
                vec![
                    text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
                    text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
                    text(tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
                    text(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, "3"),
                    text(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, "2"),
                ],
            );
            let m = read_match(&bytes, Level::Study, syntax).unwrap();
            assert_eq!(
                m,
                Match {
                    study_uid: Some(STUDY.into()),
                    series_uid: None,
                    instances: Some(3),
                },
                "{syntax:?}"
            );
        }
    }

    #[test]
    fn counts_parse_as_is_with_padding_and_nothing_else() {
        for (raw, want) in [
            ("3", Some(3)),
            (" 12 ", Some(12)),
            ("7\0", Some(7)),
            ("+5", Some(5)),
            ("0042", Some(42)),
            ("4294967295", Some(u32::MAX)),
            ("", None),
            ("  ", None),
            ("-1", None),
            ("4294967296", None),
            ("99999999999999999999999", None),
            ("3.0", None),
            ("1\\2", None),
            ("x", None),
            ("1 2", None),
        ] {
            assert_eq!(parse_count(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn garbage_identifiers_are_errors_not_panics() {
        for syntax in [Syntax::ExplicitLe, Syntax::ImplicitLe] {
            for junk in [
                &b"\x20\x00"[..],
                &[0xffu8; 37][..],
                // (0020,1208) declaring 3.6 GB in 8 bytes.
                &[0x20u8, 0x00, 0x08, 0x12, 0xf0, 0xb9, 0xa2, 0xd9][..],
            ] {
                assert!(read_match(junk, Level::Study, syntax).is_err(), "{junk:?}");
            }
        }
        // A count too long to collect is no count, not an allocation.
        let long = answer(
            Syntax::ExplicitLe,
            vec![text(
                tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                VR::UT,
                &"1".repeat(5000),
            )],
        );
        let m = read_match(&long, Level::Study, Syntax::ExplicitLe).unwrap();
        assert_eq!(m.instances, None);
    }

    #[test]
    fn series_are_checked_sorted_and_deduplicated() {
        let m = |study: Option<&str>, series: Option<&str>, n: Option<u32>| Match {
            study_uid: study.map(str::to_owned),
            series_uid: series.map(str::to_owned),
            instances: n,
        };
        let matches = [
            m(Some(STUDY), Some("1.2.9"), Some(1)),
            m(None, Some("1.2.10"), None),
            m(Some(STUDY), Some("1.2.9"), Some(5)),
            m(Some(STUDY), Some("1.2.03"), Some(2)),
            m(Some(STUDY), Some("1.2.*"), Some(2)),
            m(Some(STUDY), Some("1.2.3 "), Some(2)),
            m(Some(STUDY), None, Some(2)),
            m(Some("1.2.3"), Some("1.2.4"), Some(2)),
        ];
        assert_eq!(
            series_answer(&matches, &study()),
            vec![("1.2.10".to_owned(), None), ("1.2.9".to_owned(), Some(1))]
        );
    }

    #[test]
    fn the_study_answer_ignores_other_studies() {
        let m = |study: &str, n| Match {
            study_uid: Some(study.to_owned()),
            series_uid: None,
            instances: n,
        };
        assert_eq!(study_answer(&[], &study()), None);
        assert_eq!(study_answer(&[m("1.2.3", Some(4))], &study()), None);
        assert_eq!(
            study_answer(&[m("1.2.3", Some(4)), m(STUDY, None)], &study()),
            Some(None)
        );
        assert_eq!(
            study_answer(&[m(STUDY, Some(3)), m(STUDY, Some(9))], &study()),
            Some(Some(3))
        );
    }

    #[test]
    fn fragmented_responses_are_assembled() {
        let mut r = Responses::new(1, 2, Level::Series, Syntax::ExplicitLe);
        let first = rsp(2, 0xFF00, true);
        let (a, b) = first.split_at(5);
        assert!(!r.push(pdv(PDataValueType::Command, a, false)).unwrap());
        assert!(!r.push(pdv(PDataValueType::Command, b, true)).unwrap());
        let id = series_match("1.2.9", "2");
        let (a, b) = id.split_at(7);
        assert!(!r.push(pdv(PDataValueType::Data, a, false)).unwrap());
        assert!(!r.push(pdv(PDataValueType::Data, b, true)).unwrap());
        assert!(!r.push(command(&rsp(2, 0xFF01, true))).unwrap());
        assert!(!r.push(data(&series_match("1.2.10", " 1"))).unwrap());
        assert!(r.push(command(&rsp(2, 0x0000, false))).unwrap());
        assert_eq!(
            series_answer(&r.matches, &study()),
            vec![
                ("1.2.10".to_owned(), Some(1)),
                ("1.2.9".to_owned(), Some(2))
            ]
        );
    }

    #[test]
    fn a_final_data_set_is_read_past() {
        let mut r = Responses::new(1, 1, Level::Study, Syntax::ExplicitLe);
        assert!(!r.push(command(&rsp(1, 0x0000, true))).unwrap());
        assert!(r.push(data(b"")).unwrap());
        assert!(r.matches.is_empty());
    }

    #[test]
    fn failure_and_cancel_statuses_end_the_query() {
        for code in [0xA700, 0xA900, 0xC000, 0xFE00] {
            let mut r = Responses::new(1, 1, Level::Study, Syntax::ExplicitLe);
            match r.push(command(&rsp(1, code, false))) {
                Err(Stop::Status(Error::Protocol(msg))) => {
                    assert!(msg.contains(&format!("{code:#06X}")), "{msg}")
                }
                other => panic!("{code:#06X}: {other:?}"),
            }
        }
    }

    #[test]
    fn protocol_violations_break_the_exchange() {
        let broken_by = |pdvs: Vec<PDataValue>| {
            let mut r = Responses::new(1, 1, Level::Study, Syntax::ExplicitLe);
            for p in pdvs {
                match r.push(p) {
                    Ok(false) => continue,
                    Ok(true) => panic!("accepted"),
                    Err(Stop::Broken(Error::Protocol(msg))) => return msg,
                    Err(other) => panic!("{other:?}"),
                }
            }
            panic!("still waiting");
        };
        // Another message ID.
        assert!(broken_by(vec![command(&rsp(7, 0xFF00, true))]).contains("message 7"));
        // A pending response with no identifier.
        assert!(broken_by(vec![command(&rsp(1, 0xFF00, false))]).contains("without"));
        // Data before any command.
        assert!(broken_by(vec![data(b"")]).contains("data fragment"));
        // A command where the identifier belongs.
        assert!(
            broken_by(vec![
                command(&rsp(1, 0xFF00, true)),
                command(&rsp(1, 0x0000, false))
            ])
            .contains("command fragment")
        );
        // Another presentation context.
        let mut other = command(&rsp(1, 0xFF00, true));
        other.presentation_context_id = 3;
        assert!(broken_by(vec![other]).contains("context 3"));
        // Another command field (a C-STORE-RSP).
        let store = dimse::Response {
            request_field: field::C_STORE_RQ,
            message_id: 1,
            sop_class_uid: None,
            sop_instance_uid: None,
            status: 0,
            error_comment: None,
        }
        .encode();
        assert!(broken_by(vec![command(&store)]).contains("0x8001"));
        // An unparseable command set and identifier.
        assert!(broken_by(vec![command(&[0xff; 9])]).contains("response"));
        assert!(
            broken_by(vec![command(&rsp(1, 0xFF00, true)), data(&[0xff; 9])])
                .contains("identifier")
        );
        // A command set that never ends.
        let chunk = vec![0u8; 16 * 1024];
        let endless = (0..5)
            .map(|_| pdv(PDataValueType::Command, &chunk, false))
            .collect();
        assert!(broken_by(endless).contains("over"));
        // An identifier over the bound.
        let big = vec![0u8; MAX_IDENTIFIER / 2 + 1];
        assert!(
            broken_by(vec![
                command(&rsp(1, 0xFF00, true)),
                pdv(PDataValueType::Data, &big, false),
                pdv(PDataValueType::Data, &big, true),
            ])
            .contains("identifier over")
        );
    }

    #[test]
    fn matches_are_bounded() {
        let mut r = Responses::new(1, 2, Level::Series, Syntax::ExplicitLe);
        let id = series_match("1.2.9", "1");
        let pending = rsp(2, 0xFF00, true);
        for _ in 0..MAX_MATCHES {
            assert!(!r.push(command(&pending)).unwrap());
            assert!(!r.push(data(&id)).unwrap());
        }
        assert!(!r.push(command(&pending)).unwrap());
        assert!(matches!(r.push(data(&id)), Err(Stop::Broken(_))));
    }
}
