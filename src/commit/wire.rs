//! The messages of Storage Commitment Push Model (PS3.4 Annex J) on the
//! wire: the N-ACTION and N-EVENT-REPORT command sets, and the data sets
//! they carry.
//!
//! The exchange: the SCU sends an N-ACTION-RQ (Action Type 1) whose data set
//! is a [`Request`], and the SCP answers with an N-ACTION-RSP at once. Later,
//! on the same association or on one it opens itself, the SCP sends an
//! N-EVENT-REPORT-RQ whose data set is a [`Report`] (Event Type 1 when every
//! instance was committed, 2 when some failed), and the SCU answers with an
//! N-EVENT-REPORT-RSP.
//!
//! This module only encodes and decodes; it knows nothing of sockets,
//! transactions or the catalog. Everything it decodes comes from a peer, so
//! nothing here may panic on any input, and no declared length is trusted:
//! a data set is walked by [`parse::walk`] before dicom-parser reads it, as
//! [`dimse`] does for command sets. Command sets are small and go through
//! dicom-object like `dimse`'s; data sets, up to [`MAX_ITEMS`] instances,
//! are written and read as dicom-parser token streams so that memory stays
//! near their size. Command sets are Implicit VR Little Endian; data sets
//! are in the presentation context's [`Syntax`].

use std::io::Cursor;

use dicom_core::header::{DataElementHeader, HasLength, Length};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntax;
use dicom_object::InMemDicomObject;
use dicom_parser::dataset::{DataSetReader, DataSetWriter, DataToken};
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use crate::dimse::{self, field};
use crate::ingest::parse::{self, Encoding, SeekSource};
use crate::uid::{self, Uid};

/// Storage Commitment Push Model SOP Class.
pub const SOP_CLASS_UID: &str = "1.2.840.10008.1.20.1";
/// Its well-known SOP Instance, the one every N-ACTION and N-EVENT-REPORT
/// names.
pub const SOP_INSTANCE_UID: &str = "1.2.840.10008.1.20.1.1";

/// Action Type ID (0000,1008) of "Request Storage Commitment" (PS3.4 J.3.1),
/// the only action of the SOP class.
pub const ACTION_REQUEST_COMMITMENT: u16 = 1;
/// Event Type ID (0000,1002): "Storage Commitment Request Successful", every
/// referenced instance committed (PS3.4 J.3.2).
pub const EVENT_ALL_COMMITTED: u16 = 1;
/// Event Type ID: "Storage Commitment Request Complete - Failures Exist".
pub const EVENT_FAILURES_EXIST: u16 = 2;

/// Failure Reason (0008,1197) values for an item of the Failed SOP Sequence
/// (PS3.3 C.14.1.1, referred to by PS3.4 J.3.2.1.1). A peer may send others;
/// decoding keeps whatever value it finds.
pub mod failure_reason {
    /// A general failure in processing the operation.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// The instance is not available at the SCP.
    pub const NO_SUCH_OBJECT_INSTANCE: u16 = 0x0112;
    /// The SOP class given is not the one the SCP holds for the instance.
    pub const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;
    /// The SCP does not support commitment for the instance's SOP class.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// The Transaction UID of the request is already in use.
    pub const DUPLICATE_TRANSACTION_UID: u16 = 0x0131;
    /// The SCP has not the resources to store the instance.
    pub const RESOURCE_LIMITATION: u16 = 0x0213;

    /// A short name for a Failure Reason, for logs and pages; `None` for a
    /// value the standard does not define.
    pub fn name(reason: u16) -> Option<&'static str> {
        Some(match reason {
            PROCESSING_FAILURE => "processing failure",
            NO_SUCH_OBJECT_INSTANCE => "no such object instance",
            CLASS_INSTANCE_CONFLICT => "class/instance conflict",
            SOP_CLASS_NOT_SUPPORTED => "referenced SOP class not supported",
            DUPLICATE_TRANSACTION_UID => "duplicate transaction UID",
            RESOURCE_LIMITATION => "resource limitation",
            _ => return None,
        })
    }
}

/// Statuses of N-ACTION-RSP and N-EVENT-REPORT-RSP that a receiver of this
/// SOP class answers with (PS3.7 Annex C; success is
/// [`dimse::status::SUCCESS`]).
pub mod status {
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    pub const NO_SUCH_SOP_INSTANCE: u16 = 0x0112;
    pub const NO_SUCH_EVENT_TYPE: u16 = 0x0113;
    pub const INVALID_ARGUMENT_VALUE: u16 = 0x0115;
    pub const NO_SUCH_SOP_CLASS: u16 = 0x0118;
    pub const NO_SUCH_ACTION: u16 = 0x0123;
    pub const RESOURCE_LIMITATION: u16 = 0x0213;
}

/// The most SOP instances a decoded data set may reference, committed and
/// failed together. A sender with more splits them over several requests.
pub const MAX_ITEMS: usize = 100_000;

/// The longest data set decoded, in bytes. [`MAX_ITEMS`] items of 64-character
/// UIDs with a Failure Reason each, in Explicit VR with undefined lengths
/// (170 bytes an item), fit with room to spare. A receiver stops collecting
/// a data set's fragments past this length. Decoding holds little more than
/// the input and the values it returns.
pub const MAX_DATA_SET_LEN: usize = 24 << 20;

const TRANSACTION_UID: &str = "Transaction UID";
const REFERENCED_SOP_SEQUENCE: &str = "Referenced SOP Sequence";
const FAILED_SOP_SEQUENCE: &str = "Failed SOP Sequence";
const REFERENCED_SOP_CLASS_UID: &str = "Referenced SOP Class UID";
const REFERENCED_SOP_INSTANCE_UID: &str = "Referenced SOP Instance UID";
const FAILURE_REASON: &str = "Failure Reason";

/// Command Data Set Type value meaning "a data set follows": any value but
/// [`dimse::NO_DATA_SET`] does.
const DATA_SET_PRESENT: u16 = 0x0000;

/// The transfer syntaxes a commitment data set is encoded and decoded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    ImplicitVrLittleEndian,
    ExplicitVrLittleEndian,
}

impl Syntax {
    pub const ALL: [Syntax; 2] = [
        Syntax::ImplicitVrLittleEndian,
        Syntax::ExplicitVrLittleEndian,
    ];

    /// The syntax of a transfer syntax UID (its NUL padding ignored), or
    /// `None` for any other, which this module does not handle.
    pub fn from_uid(uid: &str) -> Option<Syntax> {
        Syntax::ALL.into_iter().find(|s| s.uid() == uid::trim(uid))
    }

    pub fn uid(self) -> &'static str {
        match self {
            Syntax::ImplicitVrLittleEndian => "1.2.840.10008.1.2",
            Syntax::ExplicitVrLittleEndian => "1.2.840.10008.1.2.1",
        }
    }

    fn transfer_syntax(self) -> TransferSyntax {
        match self {
            Syntax::ImplicitVrLittleEndian => IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            Syntax::ExplicitVrLittleEndian => EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        }
    }

    fn encoding(self) -> Encoding {
        match self {
            Syntax::ImplicitVrLittleEndian => Encoding::IMPLICIT_LE,
            Syntax::ExplicitVrLittleEndian => Encoding::EXPLICIT_LE,
        }
    }
}

// ---------------------------------------------------------------------------
// Command sets

/// N-ACTION-RQ asking for storage commitment: Requested SOP Class and
/// Instance are the SOP class and its well-known instance, Action Type ID 1,
/// and a data set (a [`Request`]) follows.
pub fn n_action_rq(message_id: u16) -> Vec<u8> {
    encode_command(vec![
        us(tags::COMMAND_FIELD, field::N_ACTION_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        ui(tags::REQUESTED_SOP_CLASS_UID, SOP_CLASS_UID),
        ui(tags::REQUESTED_SOP_INSTANCE_UID, SOP_INSTANCE_UID),
        us(tags::ACTION_TYPE_ID, ACTION_REQUEST_COMMITMENT),
    ])
}

/// N-ACTION-RSP to the request `message_id_responded`, without a data set.
pub fn n_action_rsp(message_id_responded: u16, status: u16) -> Vec<u8> {
    encode_command(vec![
        us(
            tags::COMMAND_FIELD,
            field::N_ACTION_RQ | field::RESPONSE_BIT,
        ),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id_responded),
        us(tags::COMMAND_DATA_SET_TYPE, dimse::NO_DATA_SET),
        us(tags::STATUS, status),
        ui(tags::AFFECTED_SOP_CLASS_UID, SOP_CLASS_UID),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, SOP_INSTANCE_UID),
        us(tags::ACTION_TYPE_ID, ACTION_REQUEST_COMMITMENT),
    ])
}

/// N-EVENT-REPORT-RQ carrying a commitment result: Affected SOP Class and
/// Instance, `event_type` ([`Report::event_type`]), and a data set (the
/// [`Report`]) follows.
pub fn n_event_report_rq(message_id: u16, event_type: u16) -> Vec<u8> {
    encode_command(vec![
        us(tags::COMMAND_FIELD, field::N_EVENT_REPORT_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        ui(tags::AFFECTED_SOP_CLASS_UID, SOP_CLASS_UID),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, SOP_INSTANCE_UID),
        us(tags::EVENT_TYPE_ID, event_type),
    ])
}

/// N-EVENT-REPORT-RSP to the request `message_id_responded`, repeating its
/// Event Type ID, without a data set.
pub fn n_event_report_rsp(message_id_responded: u16, event_type: u16, status: u16) -> Vec<u8> {
    encode_command(vec![
        us(
            tags::COMMAND_FIELD,
            field::N_EVENT_REPORT_RQ | field::RESPONSE_BIT,
        ),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id_responded),
        us(tags::COMMAND_DATA_SET_TYPE, dimse::NO_DATA_SET),
        us(tags::STATUS, status),
        ui(tags::AFFECTED_SOP_CLASS_UID, SOP_CLASS_UID),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, SOP_INSTANCE_UID),
        us(tags::EVENT_TYPE_ID, event_type),
    ])
}

/// A decoded N-ACTION or N-EVENT-REPORT command set, request or response:
/// the fields either side of a commitment needs. Whether they are the right
/// ones (SOP class, action or event type) is for the receiver to judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    /// Message ID for a request; Message ID Being Responded To for a
    /// response.
    pub message_id: u16,
    /// Requested SOP Class UID, or Affected SOP Class UID when there is no
    /// Requested one; NUL and space padding removed, not checked otherwise.
    pub sop_class_uid: Option<String>,
    /// Requested SOP Instance UID, or Affected SOP Instance UID.
    pub sop_instance_uid: Option<String>,
    pub action_type_id: Option<u16>,
    pub event_type_id: Option<u16>,
    /// Responses only.
    pub status: Option<u16>,
    pub has_data_set: bool,
}

impl Command {
    /// Decodes a complete command set. A request must carry a Message ID,
    /// a response a Message ID Being Responded To and a Status.
    pub fn decode(bytes: &[u8]) -> Result<Command, dimse::Error> {
        let obj = dimse::read_command_set(bytes)?;
        let u16_of =
            |tag: Tag| -> Option<u16> { obj.get(tag).and_then(|e| e.value().to_int::<u16>().ok()) };
        let str_of = |tag: Tag| -> Option<String> {
            obj.get(tag)
                .and_then(|e| e.value().to_str().ok())
                .map(|s| s.into_owned())
                .filter(|s| !s.is_empty())
        };
        let command_field =
            u16_of(tags::COMMAND_FIELD).ok_or(dimse::Error::Missing("Command Field"))?;
        let data_set_type = u16_of(tags::COMMAND_DATA_SET_TYPE)
            .ok_or(dimse::Error::Missing("Command Data Set Type"))?;
        let response = command_field & field::RESPONSE_BIT != 0;
        let (message_id, status) = if response {
            (
                u16_of(tags::MESSAGE_ID_BEING_RESPONDED_TO)
                    .ok_or(dimse::Error::Missing("Message ID Being Responded To"))?,
                Some(u16_of(tags::STATUS).ok_or(dimse::Error::Missing("Status"))?),
            )
        } else {
            (
                u16_of(tags::MESSAGE_ID).ok_or(dimse::Error::Missing("Message ID"))?,
                None,
            )
        };
        Ok(Command {
            field: command_field,
            message_id,
            sop_class_uid: str_of(tags::REQUESTED_SOP_CLASS_UID)
                .or_else(|| str_of(tags::AFFECTED_SOP_CLASS_UID)),
            sop_instance_uid: str_of(tags::REQUESTED_SOP_INSTANCE_UID)
                .or_else(|| str_of(tags::AFFECTED_SOP_INSTANCE_UID)),
            action_type_id: u16_of(tags::ACTION_TYPE_ID),
            event_type_id: u16_of(tags::EVENT_TYPE_ID),
            status,
            has_data_set: data_set_type != dimse::NO_DATA_SET,
        })
    }

    pub fn is_response(&self) -> bool {
        self.field & field::RESPONSE_BIT != 0
    }

    /// True when the command names Storage Commitment Push Model and its
    /// well-known instance.
    pub fn names_commitment(&self) -> bool {
        self.sop_class_uid.as_deref() == Some(SOP_CLASS_UID)
            && self.sop_instance_uid.as_deref() == Some(SOP_INSTANCE_UID)
    }
}

fn us(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, dicom_value!(U16, [value]))
}

fn ui(tag: Tag, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(value))
}

fn encode_command(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(128);
    // Writing a handful of fixed elements into a Vec cannot fail.
    if let Err(e) = obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased()) {
        tracing::error!(error = %e, "encoding a storage commitment command failed");
    }
    out
}

// ---------------------------------------------------------------------------
// Data sets

/// One SOP instance a commitment is about: an item of the Referenced SOP
/// Sequence or of the Failed SOP Sequence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// The data set of an N-ACTION-RQ: commit these instances, under this
/// transaction (PS3.4 J.3.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub transaction_uid: String,
    pub items: Vec<Reference>,
}

/// The data set of an N-EVENT-REPORT-RQ: the outcome of the transaction
/// (PS3.4 J.3.2.1).
///
/// Decoding takes the two sequences as they come and does not compare them
/// with each other or with the command's Event Type ID; an instance listed
/// as both committed and failed is for the receiver to treat as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub transaction_uid: String,
    pub committed: Vec<Reference>,
    /// Each failed instance with its Failure Reason ([`failure_reason`]).
    pub failed: Vec<(Reference, u16)>,
}

/// Why a data set could not be decoded. Any of these makes the whole data
/// set unusable; none is a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data set of {0} bytes is longer than the {MAX_DATA_SET_LEN} accepted")]
    TooLong(usize),
    #[error("data set does not parse: {0}")]
    Structure(#[from] parse::Error),
    #[error("data set holds an undefined-length UN element, which is not decoded")]
    UndefinedLengthUn,
    #[error("data set cannot be decoded: {0}")]
    Decode(String),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0} has the wrong value representation")]
    WrongVr(&'static str),
    #[error("{attribute} {value:?} {reason}")]
    BadUid {
        attribute: &'static str,
        /// The value received, cut to 80 characters.
        value: String,
        reason: uid::Error,
    },
    #[error("no SOP instance is referenced")]
    NoItems,
    #[error("more than {MAX_ITEMS} SOP instances are referenced")]
    TooManyItems,
    /// A problem inside one item; `index` counts from 1.
    #[error("{sequence} item {index}: {error}")]
    Item {
        sequence: &'static str,
        index: usize,
        error: Box<Error>,
    },
}

impl Request {
    /// Encodes the data set: Transaction UID and one Referenced SOP
    /// Sequence item per instance. The UIDs are written as given; the
    /// caller passes valid ones and at most [`MAX_ITEMS`] items.
    pub fn encode(&self, syntax: Syntax) -> Vec<u8> {
        let tokens = ui_tokens(tags::TRANSACTION_UID, &self.transaction_uid)
            .into_iter()
            .chain(sequence_tokens(
                tags::REFERENCED_SOP_SEQUENCE,
                self.items.iter().map(|r| (r, None)),
            ));
        write_tokens(tokens, syntax)
    }

    /// Decodes the data set of an N-ACTION-RQ. The Transaction UID and
    /// every item's two UIDs must pass the UID grammar, and the Referenced
    /// SOP Sequence must hold between 1 and [`MAX_ITEMS`] items. Other
    /// attributes (Storage Media File-Set ID, Referenced Performed
    /// Procedure Step Sequence) are ignored.
    pub fn decode(bytes: &[u8], syntax: Syntax) -> Result<Request, Error> {
        let fields = read_data_set(bytes, syntax)?;
        let transaction_uid = uid_value(fields.transaction_uid.as_ref(), TRANSACTION_UID)?;
        let seq = fields
            .referenced
            .ok_or(Error::Missing(REFERENCED_SOP_SEQUENCE))?;
        if seq.is_empty() {
            return Err(Error::NoItems);
        }
        let items = decode_items(&seq, REFERENCED_SOP_SEQUENCE, reference_of)?;
        Ok(Request {
            transaction_uid,
            items,
        })
    }
}

impl Report {
    /// The Event Type ID this report goes with: 1 when nothing failed, 2
    /// otherwise.
    pub fn event_type(&self) -> u16 {
        if self.failed.is_empty() {
            EVENT_ALL_COMMITTED
        } else {
            EVENT_FAILURES_EXIST
        }
    }

    /// Encodes the data set: Transaction UID, the Referenced SOP Sequence
    /// of the committed instances, and, when any failed, the Failed SOP
    /// Sequence with a Failure Reason in each item.
    ///
    /// When every instance failed, the Referenced SOP Sequence is left out
    /// rather than written empty (as Orthanc writes it): PS3.4 Table J.3-2
    /// requires it only when an instance was committed, and a Type 1
    /// attribute may not be present and empty. [`Report::decode`] accepts
    /// both shapes. A report with nothing in either list (which no sender
    /// should make) gets an empty Referenced SOP Sequence, and does not
    /// decode.
    pub fn encode(&self, syntax: Syntax) -> Vec<u8> {
        // Top-level elements in tag order: (0008,1195), (0008,1198), (0008,1199).
        let failed = (!self.failed.is_empty()).then(|| {
            sequence_tokens(
                tags::FAILED_SOP_SEQUENCE,
                self.failed.iter().map(|(r, reason)| (r, Some(*reason))),
            )
        });
        let committed = (!self.committed.is_empty() || self.failed.is_empty()).then(|| {
            sequence_tokens(
                tags::REFERENCED_SOP_SEQUENCE,
                self.committed.iter().map(|r| (r, None)),
            )
        });
        let tokens = ui_tokens(tags::TRANSACTION_UID, &self.transaction_uid)
            .into_iter()
            .chain(failed.into_iter().flatten())
            .chain(committed.into_iter().flatten());
        write_tokens(tokens, syntax)
    }

    /// Decodes the data set of an N-EVENT-REPORT-RQ. Either sequence may be
    /// absent or empty, but together they must reference between 1 and
    /// [`MAX_ITEMS`] instances; every UID must pass the UID grammar, and
    /// every Failed SOP Sequence item must carry a Failure Reason. Other
    /// attributes (Retrieve AE Title, media) are ignored.
    pub fn decode(bytes: &[u8], syntax: Syntax) -> Result<Report, Error> {
        let fields = read_data_set(bytes, syntax)?;
        let transaction_uid = uid_value(fields.transaction_uid.as_ref(), TRANSACTION_UID)?;
        let committed = fields.referenced.unwrap_or_default();
        let failed = fields.failed.unwrap_or_default();
        if committed.is_empty() && failed.is_empty() {
            return Err(Error::NoItems);
        }
        Ok(Report {
            transaction_uid,
            committed: decode_items(&committed, REFERENCED_SOP_SEQUENCE, reference_of)?,
            failed: decode_items(&failed, FAILED_SOP_SEQUENCE, failure_of)?,
        })
    }
}

// A data set is written as a stream of tokens through dicom-parser's
// `DataSetWriter` (which computes lengths and pads values), not built as an
// `InMemDicomObject`: such a tree costs tens of times the size of what it
// encodes, which for a request of [`MAX_ITEMS`] instances is hundreds of
// megabytes. Sequences and items are written with undefined lengths. Tokens
// must come in tag order.

fn ui_tokens(tag: Tag, value: &str) -> [DataToken; 2] {
    [
        DataToken::ElementHeader(DataElementHeader::new(tag, VR::UI, Length(0))),
        DataToken::PrimitiveValue(PrimitiveValue::from(value)),
    ]
}

/// One item: Referenced SOP Class UID (0008,1150), Referenced SOP Instance
/// UID (0008,1155), and Failure Reason (0008,1197) when given.
fn item_tokens(r: &Reference, failure_reason: Option<u16>) -> Vec<DataToken> {
    let mut tokens = Vec::with_capacity(8);
    tokens.push(DataToken::ItemStart {
        len: Length::UNDEFINED,
    });
    tokens.extend(ui_tokens(tags::REFERENCED_SOP_CLASS_UID, &r.sop_class_uid));
    tokens.extend(ui_tokens(
        tags::REFERENCED_SOP_INSTANCE_UID,
        &r.sop_instance_uid,
    ));
    if let Some(reason) = failure_reason {
        tokens.push(DataToken::ElementHeader(DataElementHeader::new(
            tags::FAILURE_REASON,
            VR::US,
            Length(2),
        )));
        tokens.push(DataToken::PrimitiveValue(dicom_value!(U16, [reason])));
    }
    tokens.push(DataToken::ItemEnd);
    tokens
}

fn sequence_tokens<'a>(
    tag: Tag,
    items: impl Iterator<Item = (&'a Reference, Option<u16>)> + 'a,
) -> impl Iterator<Item = DataToken> + 'a {
    std::iter::once(DataToken::SequenceStart {
        tag,
        len: Length::UNDEFINED,
    })
    .chain(items.flat_map(|(r, reason)| item_tokens(r, reason)))
    .chain(std::iter::once(DataToken::SequenceEnd))
}

fn write_tokens(tokens: impl Iterator<Item = DataToken>, syntax: Syntax) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing UIDs, sequences and US values into a Vec cannot fail.
    let written =
        DataSetWriter::with_ts(&mut out, &syntax.transfer_syntax()).and_then(|mut writer| {
            writer.write_sequence(tokens)?;
            writer.flush()
        });
    if let Err(e) = written {
        tracing::error!(error = %e, "encoding a storage commitment data set failed");
    }
    out
}

/// What decoding keeps of a data set: the values this module reads, where
/// it reads them, and nothing else.
#[derive(Default)]
struct Fields {
    transaction_uid: Option<PrimitiveValue>,
    /// Items of the top-level Referenced SOP Sequence, when present.
    referenced: Option<Vec<ItemFields>>,
    /// Items of the top-level Failed SOP Sequence, when present.
    failed: Option<Vec<ItemFields>>,
}

#[derive(Default)]
struct ItemFields {
    sop_class_uid: Option<PrimitiveValue>,
    sop_instance_uid: Option<PrimitiveValue>,
    failure_reason: Option<PrimitiveValue>,
}

impl Fields {
    fn sequence(&mut self, tag: Tag) -> Option<&mut Option<Vec<ItemFields>>> {
        match tag {
            tags::REFERENCED_SOP_SEQUENCE => Some(&mut self.referenced),
            tags::FAILED_SOP_SEQUENCE => Some(&mut self.failed),
            _ => None,
        }
    }
}

/// Where the reader is: in a sequence or an item, with the tag of the
/// top-level sequence it belongs to when that is one this module reads.
enum Frame {
    Sequence(Option<Tag>),
    Item(Option<Tag>),
}

/// Parses a data set received from a peer into the [`Fields`] it carries.
///
/// Like `dimse::read_command_set`, it walks the structure first, so that no
/// length a peer declares can exceed the bytes received before dicom-parser,
/// which allocates a value's declared length before reading it, sees them.
/// Then it reads dicom-parser's tokens one at a time and keeps only the
/// values it needs, rather than building an `InMemDicomObject`: a tree of
/// every element would cost up to thirty times the data set's size in
/// memory, where this costs about the size of the items kept, and it stops
/// at the [`MAX_ITEMS`]th item.
fn read_data_set(bytes: &[u8], syntax: Syntax) -> Result<Fields, Error> {
    if bytes.len() > MAX_DATA_SET_LEN {
        return Err(Error::TooLong(bytes.len()));
    }
    let mut src =
        SeekSource::new(Cursor::new(bytes), 0, bytes.len() as u64).map_err(parse::Error::Io)?;
    let summary = parse::walk(&mut src, syntax.encoding())?;
    if summary.implicit_un_sequence {
        // dicom-parser would read its items in a way the walk did not check.
        return Err(Error::UndefinedLengthUn);
    }
    let decode = |e: dicom_parser::dataset::read::Error| Error::Decode(e.to_string());
    let reader = DataSetReader::new_with_ts(bytes, &syntax.transfer_syntax()).map_err(decode)?;
    let mut fields = Fields::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut header: Option<Tag> = None;
    let mut items = 0usize;
    for token in reader {
        match token.map_err(decode)? {
            DataToken::ElementHeader(h) => header = Some(h.tag),
            DataToken::PrimitiveValue(value) => {
                let Some(tag) = header.take() else { continue };
                match stack.as_slice() {
                    [] if tag == tags::TRANSACTION_UID => fields.transaction_uid = Some(value),
                    // A sequence sent as some other VR: empty is tolerated.
                    [] => {
                        if let Some(slot) = fields.sequence(tag) {
                            if !value.is_empty() {
                                return Err(Error::WrongVr(sequence_name(tag)));
                            }
                            slot.get_or_insert_with(Vec::new);
                        }
                    }
                    [Frame::Sequence(Some(seq)), Frame::Item(Some(_))] => {
                        let item = fields
                            .sequence(*seq)
                            .and_then(|slot| slot.as_mut())
                            .and_then(|list| list.last_mut());
                        if let Some(item) = item {
                            match tag {
                                tags::REFERENCED_SOP_CLASS_UID => item.sop_class_uid = Some(value),
                                tags::REFERENCED_SOP_INSTANCE_UID => {
                                    item.sop_instance_uid = Some(value)
                                }
                                tags::FAILURE_REASON => item.failure_reason = Some(value),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            DataToken::SequenceStart { tag, .. } => {
                let kept = match fields.sequence(tag) {
                    Some(slot) if stack.is_empty() => {
                        *slot = Some(Vec::new());
                        Some(tag)
                    }
                    _ => None,
                };
                stack.push(Frame::Sequence(kept));
            }
            DataToken::PixelSequenceStart => stack.push(Frame::Sequence(None)),
            DataToken::ItemStart { .. } => {
                let kept = match stack.last() {
                    Some(Frame::Sequence(Some(seq))) => Some(*seq),
                    _ => None,
                };
                if let Some(seq) = kept {
                    items += 1;
                    if items > MAX_ITEMS {
                        return Err(Error::TooManyItems);
                    }
                    if let Some(list) = fields.sequence(seq).and_then(|slot| slot.as_mut()) {
                        list.push(ItemFields::default());
                    }
                }
                stack.push(Frame::Item(kept));
            }
            DataToken::ItemEnd | DataToken::SequenceEnd => {
                stack.pop();
            }
            DataToken::ItemValue(_) | DataToken::OffsetTable(_) => {}
        }
    }
    Ok(fields)
}

fn sequence_name(tag: Tag) -> &'static str {
    if tag == tags::FAILED_SOP_SEQUENCE {
        FAILED_SOP_SEQUENCE
    } else {
        REFERENCED_SOP_SEQUENCE
    }
}

fn decode_items<T>(
    items: &[ItemFields],
    sequence: &'static str,
    decode: fn(&ItemFields) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            decode(item).map_err(|e| Error::Item {
                sequence,
                index: i + 1,
                error: Box::new(e),
            })
        })
        .collect()
}

fn reference_of(item: &ItemFields) -> Result<Reference, Error> {
    Ok(Reference {
        sop_class_uid: uid_value(item.sop_class_uid.as_ref(), REFERENCED_SOP_CLASS_UID)?,
        sop_instance_uid: uid_value(item.sop_instance_uid.as_ref(), REFERENCED_SOP_INSTANCE_UID)?,
    })
}

fn failure_of(item: &ItemFields) -> Result<(Reference, u16), Error> {
    let reference = reference_of(item)?;
    let reason = match item
        .failure_reason
        .as_ref()
        .ok_or(Error::Missing(FAILURE_REASON))?
    {
        // Sent as UN (or OB) in Explicit VR: the two bytes of a US, which
        // both syntaxes here put little end first.
        PrimitiveValue::U8(bytes) => match bytes.as_slice() {
            &[lo, hi] => Some(u16::from_le_bytes([lo, hi])),
            _ => None,
        },
        p => p.to_int::<u16>().ok(),
    };
    Ok((reference, reason.ok_or(Error::WrongVr(FAILURE_REASON))?))
}

/// A UID value, checked with [`Uid::parse`]. Trailing spaces are removed
/// first, as `dimse` does for command UIDs: some senders pad UIDs with a
/// space instead of a NUL. A value sent as UN (or OB) in Explicit VR is
/// taken as its text; a value of any other non-text VR is refused.
fn uid_value(value: Option<&PrimitiveValue>, name: &'static str) -> Result<String, Error> {
    let raw: String = match value.ok_or(Error::Missing(name))? {
        p @ (PrimitiveValue::Str(_) | PrimitiveValue::Strs(_)) => p.to_str().into_owned(),
        PrimitiveValue::Empty => String::new(),
        PrimitiveValue::U8(bytes) => String::from_utf8_lossy(bytes)
            .trim_end_matches([' ', '\0'])
            .to_owned(),
        _ => return Err(Error::WrongVr(name)),
    };
    Uid::parse(&raw)
        .map(Uid::into_string)
        .map_err(|reason| Error::BadUid {
            attribute: name,
            value: raw.chars().take(80).collect(),
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const MR: &str = "1.2.840.10008.5.1.4.1.1.4";

    // Written by testdata/generate.py (pynetdicom, then DCMTK's dcmconv);
    // the expected values below are the ones that script puts in.
    const N_ACTION_RQ: &[u8] = include_bytes!("testdata/n-action-rq.bin");
    const N_ACTION_RSP: &[u8] = include_bytes!("testdata/n-action-rsp.bin");
    const N_EVENT_REPORT_RQ: &[u8] = include_bytes!("testdata/n-event-report-rq.bin");
    const N_EVENT_REPORT_RSP: &[u8] = include_bytes!("testdata/n-event-report-rsp.bin");
    const REQUEST_IMPLICIT: &[u8] = include_bytes!("testdata/request.implicit.bin");
    const REQUEST_EXPLICIT: &[u8] = include_bytes!("testdata/request.explicit.bin");
    const REPORT_IMPLICIT: &[u8] = include_bytes!("testdata/report-failures.implicit.bin");
    const REPORT_EXPLICIT: &[u8] = include_bytes!("testdata/report-failures.explicit.bin");
    const REPORT_ALL_FAILED: &[u8] = include_bytes!("testdata/report-all-failed.implicit.bin");
    const FIXTURE_TRANSACTION: &str = "2.25.110411718472630947123504398412570926771";

    fn fixture_ref(n: u8) -> Reference {
        reference(
            if n == 3 { MR } else { CT },
            &format!("1.2.826.0.1.3680043.10.543.1.{n}"),
        )
    }

    fn reference(class: &str, instance: &str) -> Reference {
        Reference {
            sop_class_uid: class.to_owned(),
            sop_instance_uid: instance.to_owned(),
        }
    }

    fn refs(n: usize) -> Vec<Reference> {
        (1..=n)
            .map(|i| reference(CT, &format!("1.2.826.0.1.3680043.10.543.9.{i}")))
            .collect()
    }

    use Syntax::{ExplicitVrLittleEndian as EXPLICIT, ImplicitVrLittleEndian as IMPLICIT};

    fn explicit_element(out: &mut Vec<u8>, tag: Tag, vr: &[u8; 2], value: &[u8]) {
        out.extend_from_slice(&tag.0.to_le_bytes());
        out.extend_from_slice(&tag.1.to_le_bytes());
        out.extend_from_slice(vr);
        if matches!(vr, b"UI" | b"US" | b"AE") {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(value);
    }

    /// Our own output, read back whole.
    fn read_tree(bytes: &[u8], syntax: Syntax) -> InMemDicomObject {
        InMemDicomObject::read_dataset_with_ts(bytes, &syntax.transfer_syntax()).unwrap()
    }

    fn item(out: &mut Vec<u8>, content: &[u8]) {
        out.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0]);
        out.extend_from_slice(&(content.len() as u32).to_le_bytes());
        out.extend_from_slice(content);
    }

    #[test]
    fn command_sets_round_trip() {
        let ours = [
            (
                n_action_rq(7),
                field::N_ACTION_RQ,
                7,
                Some(1),
                None,
                None,
                true,
            ),
            (
                n_action_rsp(7, 0x0213),
                0x8130,
                7,
                Some(1),
                None,
                Some(0x0213),
                false,
            ),
            (
                n_event_report_rq(9, 2),
                field::N_EVENT_REPORT_RQ,
                9,
                None,
                Some(2),
                None,
                true,
            ),
            (
                n_event_report_rsp(9, 1, 0),
                0x8100,
                9,
                None,
                Some(1),
                Some(0),
                false,
            ),
        ];
        for (bytes, field, id, action, event, status, data) in ours {
            let cmd = Command::decode(&bytes).unwrap();
            assert_eq!(
                cmd,
                Command {
                    field,
                    message_id: id,
                    sop_class_uid: Some(SOP_CLASS_UID.to_owned()),
                    sop_instance_uid: Some(SOP_INSTANCE_UID.to_owned()),
                    action_type_id: action,
                    event_type_id: event,
                    status,
                    has_data_set: data,
                }
            );
            assert!(cmd.names_commitment());
            assert_eq!(cmd.is_response(), status.is_some());
            // Command Group Length comes first and counts the rest.
            assert_eq!(&bytes[0..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
            let declared = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            assert_eq!(declared as usize, bytes.len() - 12);
        }
    }

    #[test]
    fn requests_name_the_requested_sop_and_responses_the_affected() {
        let requested = [
            tags::REQUESTED_SOP_CLASS_UID,
            tags::REQUESTED_SOP_INSTANCE_UID,
        ];
        let affected = [
            tags::AFFECTED_SOP_CLASS_UID,
            tags::AFFECTED_SOP_INSTANCE_UID,
        ];
        let cases = [
            (n_action_rq(1), requested, affected),
            (n_action_rsp(1, 0), affected, requested),
            (n_event_report_rq(1, 1), affected, requested),
            (n_event_report_rsp(1, 1, 0), affected, requested),
        ];
        for (bytes, present, absent) in cases {
            let obj = dimse::read_command_set(&bytes).unwrap();
            for tag in present {
                assert!(obj.get(tag).is_some(), "{tag} missing");
            }
            for tag in absent {
                assert!(obj.get(tag).is_none(), "{tag} present");
            }
        }
    }

    #[test]
    fn decodes_command_sets_from_pynetdicom() {
        let rq = Command::decode(N_ACTION_RQ).unwrap();
        assert_eq!(
            (rq.field, rq.message_id, rq.action_type_id, rq.has_data_set),
            (field::N_ACTION_RQ, 7, Some(1), true)
        );
        assert!(rq.names_commitment() && rq.status.is_none());
        let rsp = Command::decode(N_ACTION_RSP).unwrap();
        assert_eq!(
            (rsp.field, rsp.message_id, rsp.status, rsp.has_data_set),
            (0x8130, 7, Some(0x0000), false)
        );
        assert!(rsp.names_commitment());
        let ev = Command::decode(N_EVENT_REPORT_RQ).unwrap();
        assert_eq!(
            (ev.field, ev.message_id, ev.event_type_id, ev.has_data_set),
            (field::N_EVENT_REPORT_RQ, 3, Some(2), true)
        );
        assert!(ev.names_commitment());
        let ev_rsp = Command::decode(N_EVENT_REPORT_RSP).unwrap();
        assert_eq!(
            (
                ev_rsp.field,
                ev_rsp.message_id,
                ev_rsp.event_type_id,
                ev_rsp.status
            ),
            (0x8100, 3, Some(2), Some(0x0110))
        );
    }

    #[test]
    fn a_response_needs_its_status_and_a_request_its_message_id() {
        let no_status = encode_command(vec![
            us(tags::COMMAND_FIELD, 0x8130),
            us(tags::MESSAGE_ID_BEING_RESPONDED_TO, 1),
            us(tags::COMMAND_DATA_SET_TYPE, dimse::NO_DATA_SET),
        ]);
        assert!(matches!(
            Command::decode(&no_status),
            Err(dimse::Error::Missing("Status"))
        ));
        let no_id = encode_command(vec![
            us(tags::COMMAND_FIELD, field::N_ACTION_RQ),
            us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        ]);
        assert!(matches!(
            Command::decode(&no_id),
            Err(dimse::Error::Missing("Message ID"))
        ));
    }

    #[test]
    fn garbage_command_sets_are_errors() {
        for junk in [
            &b""[..],
            &b"\x00\x00"[..],
            &[0xffu8; 37][..],
            // Declares a 3.6 GB element in 8 bytes (see dimse's regression).
            &[0x25u8, 0x31, 0xaf, 0x5c, 0xf0, 0xb9, 0xa2, 0xd9][..],
        ] {
            assert!(Command::decode(junk).is_err());
        }
    }

    fn reports() -> Vec<Report> {
        vec![
            Report {
                transaction_uid: "2.25.1".into(),
                committed: refs(3),
                failed: vec![],
            },
            Report {
                transaction_uid: "2.25.2".into(),
                committed: refs(2),
                failed: vec![
                    (
                        reference(MR, "1.2.3.4"),
                        failure_reason::NO_SUCH_OBJECT_INSTANCE,
                    ),
                    (reference(CT, "1.2.3.5"), 0xA700),
                ],
            },
            Report {
                transaction_uid: "2.25.3".into(),
                committed: vec![],
                failed: vec![(
                    reference(CT, "1.2.3.6"),
                    failure_reason::RESOURCE_LIMITATION,
                )],
            },
        ]
    }

    #[test]
    fn data_sets_round_trip_in_both_syntaxes() {
        for syntax in Syntax::ALL {
            let request = Request {
                transaction_uid: "2.25.42".into(),
                items: refs(3),
            };
            let bytes = request.encode(syntax);
            assert_eq!(Request::decode(&bytes, syntax).unwrap(), request);
            for report in reports() {
                let bytes = report.encode(syntax);
                assert_eq!(
                    Report::decode(&bytes, syntax).unwrap(),
                    report,
                    "{syntax:?}"
                );
            }
        }
    }

    #[test]
    fn event_type_follows_the_failures() {
        let types: Vec<u16> = reports().iter().map(Report::event_type).collect();
        assert_eq!(
            types,
            [
                EVENT_ALL_COMMITTED,
                EVENT_FAILURES_EXIST,
                EVENT_FAILURES_EXIST
            ]
        );
    }

    #[test]
    fn an_all_failed_report_leaves_out_the_referenced_sop_sequence() {
        for syntax in Syntax::ALL {
            let all_failed = &reports()[2];
            let obj = read_tree(&all_failed.encode(syntax), syntax);
            assert!(obj.get(tags::REFERENCED_SOP_SEQUENCE).is_none());
            assert_eq!(
                obj.get(tags::FAILED_SOP_SEQUENCE)
                    .unwrap()
                    .items()
                    .unwrap()
                    .len(),
                1
            );
            let all_committed = &reports()[0];
            let obj = read_tree(&all_committed.encode(syntax), syntax);
            assert!(obj.get(tags::FAILED_SOP_SEQUENCE).is_none());
        }
    }

    #[test]
    fn decodes_requests_from_pynetdicom_and_dcmtk() {
        let expected = Request {
            transaction_uid: FIXTURE_TRANSACTION.into(),
            items: vec![fixture_ref(1), fixture_ref(2), fixture_ref(3)],
        };
        assert_eq!(
            Request::decode(REQUEST_IMPLICIT, IMPLICIT).unwrap(),
            expected
        );
        assert_eq!(
            Request::decode(REQUEST_EXPLICIT, EXPLICIT).unwrap(),
            expected
        );
    }

    #[test]
    fn decodes_reports_from_pynetdicom_and_dcmtk() {
        let expected = Report {
            transaction_uid: FIXTURE_TRANSACTION.into(),
            committed: vec![fixture_ref(1)],
            failed: vec![
                (fixture_ref(2), failure_reason::NO_SUCH_OBJECT_INSTANCE),
                (fixture_ref(3), failure_reason::CLASS_INSTANCE_CONFLICT),
            ],
        };
        assert_eq!(Report::decode(REPORT_IMPLICIT, IMPLICIT).unwrap(), expected);
        assert_eq!(Report::decode(REPORT_EXPLICIT, EXPLICIT).unwrap(), expected);
    }

    /// Orthanc's shape: every instance failed, Referenced SOP Sequence
    /// present and empty.
    #[test]
    fn decodes_an_empty_referenced_sop_sequence() {
        let report = Report::decode(REPORT_ALL_FAILED, IMPLICIT).unwrap();
        assert!(report.committed.is_empty());
        assert_eq!(
            report.failed,
            (1..=3)
                .map(|n| (fixture_ref(n), failure_reason::NO_SUCH_OBJECT_INSTANCE))
                .collect::<Vec<_>>()
        );
        assert_eq!(report.event_type(), EVENT_FAILURES_EXIST);
    }

    #[test]
    fn the_wrong_syntax_is_an_error() {
        assert!(Request::decode(REQUEST_IMPLICIT, EXPLICIT).is_err());
        assert!(Request::decode(REQUEST_EXPLICIT, IMPLICIT).is_err());
    }

    #[test]
    fn a_bad_uid_is_an_error_naming_its_item() {
        for syntax in Syntax::ALL {
            let mut items = refs(3);
            items[1].sop_instance_uid = "1.2..3".into();
            let bytes = Request {
                transaction_uid: "2.25.7".into(),
                items,
            }
            .encode(syntax);
            let err = Request::decode(&bytes, syntax).unwrap_err();
            match &err {
                Error::Item {
                    sequence: "Referenced SOP Sequence",
                    index: 2,
                    error,
                } => assert!(matches!(
                    **error,
                    Error::BadUid {
                        attribute: "Referenced SOP Instance UID",
                        reason: uid::Error::EmptyComponent,
                        ..
                    }
                )),
                other => panic!("{other:?}"),
            }
            assert_eq!(
                err.to_string(),
                "Referenced SOP Sequence item 2: Referenced SOP Instance UID \"1.2..3\" \
                 has an empty component"
            );

            let mut failed = reports()[1].clone();
            failed.failed[1].0.sop_class_uid = "1.2.x".into();
            let err = Report::decode(&failed.encode(syntax), syntax).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Item {
                        sequence: "Failed SOP Sequence",
                        index: 2,
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn the_transaction_uid_is_required_and_checked() {
        for syntax in Syntax::ALL {
            let bad = Request {
                transaction_uid: "2.25.07".into(),
                items: refs(1),
            };
            assert!(matches!(
                Request::decode(&bad.encode(syntax), syntax),
                Err(Error::BadUid {
                    attribute: "Transaction UID",
                    reason: uid::Error::LeadingZero,
                    ..
                })
            ));
            let empty = Report {
                transaction_uid: String::new(),
                ..reports()[0].clone()
            };
            assert!(matches!(
                Report::decode(&empty.encode(syntax), syntax),
                Err(Error::BadUid {
                    reason: uid::Error::Empty,
                    ..
                })
            ));
            let refs = refs(1);
            let tokens = sequence_tokens(
                tags::REFERENCED_SOP_SEQUENCE,
                refs.iter().map(|r| (r, None)),
            );
            let missing = write_tokens(tokens, syntax);
            assert!(matches!(
                Request::decode(&missing, syntax),
                Err(Error::Missing("Transaction UID"))
            ));
        }
    }

    #[test]
    fn a_failed_item_without_a_reason_is_refused() {
        let refs = refs(1);
        let tokens = ui_tokens(tags::TRANSACTION_UID, "2.25.1")
            .into_iter()
            .chain(sequence_tokens(
                tags::FAILED_SOP_SEQUENCE,
                refs.iter().map(|r| (r, None)),
            ));
        let err = Report::decode(&write_tokens(tokens, IMPLICIT), IMPLICIT).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Failed SOP Sequence item 1: Failure Reason is missing"
        );
    }

    #[test]
    fn a_request_or_report_without_instances_is_refused() {
        for syntax in Syntax::ALL {
            let request = Request {
                transaction_uid: "2.25.1".into(),
                items: vec![],
            };
            assert!(matches!(
                Request::decode(&request.encode(syntax), syntax),
                Err(Error::NoItems)
            ));
            let report = Report {
                transaction_uid: "2.25.1".into(),
                committed: vec![],
                failed: vec![],
            };
            assert!(matches!(
                Report::decode(&report.encode(syntax), syntax),
                Err(Error::NoItems)
            ));
            let tokens = ui_tokens(tags::TRANSACTION_UID, "2.25.1").into_iter();
            assert!(matches!(
                Request::decode(&write_tokens(tokens, syntax), syntax),
                Err(Error::Missing("Referenced SOP Sequence"))
            ));
        }
    }

    #[test]
    fn more_than_max_items_are_refused() {
        let short = Reference {
            sop_class_uid: "1.2".into(),
            sop_instance_uid: "1.3".into(),
        };
        let request = Request {
            transaction_uid: "2.25.1".into(),
            items: vec![short.clone(); MAX_ITEMS + 1],
        };
        let bytes = request.encode(IMPLICIT);
        assert!(matches!(
            Request::decode(&bytes, IMPLICIT),
            Err(Error::TooManyItems)
        ));
        let report = Report {
            transaction_uid: "2.25.1".into(),
            committed: vec![short.clone(); MAX_ITEMS / 2 + 1],
            failed: vec![(short, 0x0110); MAX_ITEMS / 2],
        };
        assert!(matches!(
            Report::decode(&report.encode(IMPLICIT), IMPLICIT),
            Err(Error::TooManyItems)
        ));
    }

    #[test]
    fn max_items_of_the_longest_uids_fit_in_max_data_set_len() {
        let longest = format!("1.{}", "2".repeat(62));
        let failed = (
            Reference {
                sop_class_uid: longest.clone(),
                sop_instance_uid: longest.clone(),
            },
            0x0110,
        );
        let one = Report {
            transaction_uid: longest.clone(),
            committed: vec![],
            failed: vec![failed.clone()],
        };
        let two = Report {
            failed: vec![failed.clone(); 2],
            ..one.clone()
        };
        for syntax in Syntax::ALL {
            let per_item = two.encode(syntax).len() - one.encode(syntax).len();
            let total = one.encode(syntax).len() + per_item * (MAX_ITEMS - 1);
            assert!(total < MAX_DATA_SET_LEN, "{syntax:?}: {total}");
        }
    }

    #[test]
    fn an_over_long_data_set_is_refused_unread() {
        let bytes = vec![0u8; MAX_DATA_SET_LEN + 1];
        assert!(matches!(
            Request::decode(&bytes, IMPLICIT),
            Err(Error::TooLong(n)) if n == MAX_DATA_SET_LEN + 1
        ));
    }

    #[test]
    fn every_truncated_request_is_an_error() {
        let ours = Request {
            transaction_uid: "2.25.5".into(),
            items: refs(2),
        };
        let cases = [
            (REQUEST_IMPLICIT.to_vec(), IMPLICIT),
            (REQUEST_EXPLICIT.to_vec(), EXPLICIT),
            (ours.encode(IMPLICIT), IMPLICIT),
            (ours.encode(EXPLICIT), EXPLICIT),
        ];
        for (bytes, syntax) in cases {
            for cut in 0..bytes.len() {
                assert!(
                    Request::decode(&bytes[..cut], syntax).is_err(),
                    "{syntax:?} cut at {cut}"
                );
            }
        }
        for (bytes, syntax) in [(REPORT_IMPLICIT, IMPLICIT), (REPORT_EXPLICIT, EXPLICIT)] {
            for cut in 0..bytes.len() {
                let _ = Report::decode(&bytes[..cut], syntax);
            }
        }
    }

    /// An unknown VR in Explicit VR: dicom-parser reads two reserved bytes
    /// and a 32-bit length, here 0x1150_0008 (the next element's tag), and
    /// would allocate that much before failing. Read with a 16-bit length,
    /// as the walk once did, the same bytes are a well-formed data set.
    #[test]
    fn an_unknown_vr_declaring_a_huge_length_is_refused_before_decoding() {
        let mut d = Vec::new();
        explicit_element(&mut d, tags::TRANSACTION_UID, b"UI", b"2.25.1\0");
        d.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'Z', b'Z', 0, 0]);
        explicit_element(&mut d, tags::REFERENCED_SOP_CLASS_UID, b"UI", b"1.2\0");
        assert!(matches!(
            Report::decode(&d, EXPLICIT),
            Err(Error::Structure(_))
        ));
    }

    /// An undefined-length UN in Explicit VR holds Implicit VR items, and
    /// the walk checks them so; dicom-parser would read them as Explicit
    /// VR, where these bytes declare an OB of 0x1000_0000 bytes.
    #[test]
    fn an_undefined_length_un_is_refused_before_decoding() {
        let mut inner = vec![0x09, 0x00, 0x10, 0x00];
        // Implicit: length 0x0000424F ("OB" 00 00) ... Explicit: OB, then a
        // 32-bit length taken from the value.
        inner.extend_from_slice(&[b'O', b'B', 0, 0]);
        let mut value = 0x1000_0000u32.to_le_bytes().to_vec();
        value.resize(0x424F, 0);
        inner.extend_from_slice(&value);
        let mut d = Vec::new();
        explicit_element(&mut d, tags::TRANSACTION_UID, b"UI", b"2.25.1\0");
        d.extend_from_slice(&[
            0x09, 0x00, 0x10, 0x00, b'U', b'N', 0, 0, 0xff, 0xff, 0xff, 0xff,
        ]);
        item(&mut d, &inner);
        d.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
        assert!(matches!(
            Report::decode(&d, EXPLICIT),
            Err(Error::UndefinedLengthUn)
        ));
    }

    /// Explicit VR with the wrong VRs: UIDs and the Failure Reason sent as
    /// UN, the Transaction UID padded with a space.
    #[test]
    fn tolerates_un_values_and_space_padding() {
        let mut failed = Vec::new();
        explicit_element(
            &mut failed,
            tags::REFERENCED_SOP_CLASS_UID,
            b"UN",
            b"1.2.840.10008.5.1.4.1.1.2\0",
        );
        explicit_element(
            &mut failed,
            tags::REFERENCED_SOP_INSTANCE_UID,
            b"UI",
            b"1.2.3.4\0",
        );
        explicit_element(
            &mut failed,
            tags::FAILURE_REASON,
            b"UN",
            &0x0112u16.to_le_bytes(),
        );
        let mut seq = Vec::new();
        item(&mut seq, &failed);
        let mut d = Vec::new();
        explicit_element(&mut d, tags::TRANSACTION_UID, b"UI", b"2.25.10 ");
        explicit_element(&mut d, tags::FAILED_SOP_SEQUENCE, b"SQ", &seq);
        let report = Report::decode(&d, EXPLICIT).unwrap();
        assert_eq!(report.transaction_uid, "2.25.10");
        assert_eq!(
            report.failed,
            [(
                reference(CT, "1.2.3.4"),
                failure_reason::NO_SUCH_OBJECT_INSTANCE
            )]
        );
    }

    #[test]
    fn a_uid_of_a_numeric_vr_or_a_sequence_of_text_is_refused() {
        let mut d = Vec::new();
        explicit_element(&mut d, tags::TRANSACTION_UID, b"US", &5u16.to_le_bytes());
        assert!(matches!(
            Report::decode(&d, EXPLICIT),
            Err(Error::WrongVr("Transaction UID"))
        ));
        let mut d = Vec::new();
        explicit_element(&mut d, tags::TRANSACTION_UID, b"UI", b"2.25.1\0");
        explicit_element(&mut d, tags::REFERENCED_SOP_SEQUENCE, b"UN", b"1.2.3\0");
        assert!(matches!(
            Request::decode(&d, EXPLICIT),
            Err(Error::WrongVr("Referenced SOP Sequence"))
        ));
    }

    #[test]
    fn syntax_from_uid() {
        assert_eq!(Syntax::from_uid("1.2.840.10008.1.2\0"), Some(IMPLICIT));
        assert_eq!(Syntax::from_uid("1.2.840.10008.1.2.1"), Some(EXPLICIT));
        assert_eq!(Syntax::from_uid("1.2.840.10008.1.2.2"), None);
        assert_eq!(Syntax::from_uid("1.2.840.10008.1.2.1.99"), None);
    }

    #[test]
    fn failure_reasons_have_names() {
        assert_eq!(
            failure_reason::name(0x0131),
            Some("duplicate transaction UID")
        );
        assert_eq!(failure_reason::name(0x0211), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Command::decode(&bytes);
            for syntax in Syntax::ALL {
                let _ = Request::decode(&bytes, syntax);
                let _ = Report::decode(&bytes, syntax);
            }
        }

        #[test]
        fn mutated_messages_never_panic(
            which in 0usize..9,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let fixtures: [(&[u8], Syntax); 9] = [
                (N_ACTION_RQ, IMPLICIT),
                (N_ACTION_RSP, IMPLICIT),
                (N_EVENT_REPORT_RQ, IMPLICIT),
                (N_EVENT_REPORT_RSP, IMPLICIT),
                (REQUEST_IMPLICIT, IMPLICIT),
                (REQUEST_EXPLICIT, EXPLICIT),
                (REPORT_IMPLICIT, IMPLICIT),
                (REPORT_EXPLICIT, EXPLICIT),
                (REPORT_ALL_FAILED, IMPLICIT),
            ];
            let (original, syntax) = fixtures[which];
            let mut bytes = original.to_vec();
            for (at, value) in edits {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            let _ = Command::decode(&bytes);
            let _ = Request::decode(&bytes, syntax);
            let _ = Report::decode(&bytes, syntax);
        }
    }
}
