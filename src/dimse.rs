//! DIMSE command sets (PS3.7 §9 and §10): decoding a request's command set
//! and encoding the response to it.
//!
//! A command set is always Implicit VR Little Endian. This module knows only
//! command fields, message IDs, UIDs and statuses; it knows nothing of
//! sockets, files or the catalog. Everything it decodes comes from a peer, so
//! nothing here may panic on any input.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Command Field values (PS3.7 Annex E).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_GET_RQ: u16 = 0x0110;
    pub const N_SET_RQ: u16 = 0x0120;
    pub const N_ACTION_RQ: u16 = 0x0130;
    pub const N_CREATE_RQ: u16 = 0x0140;
    pub const N_DELETE_RQ: u16 = 0x0150;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
    /// A response's command field is its request's with this bit set.
    pub const RESPONSE_BIT: u16 = 0x8000;
}

/// DIMSE status codes used by this gateway (PS3.4 B.2.3, PS3.7 Annex C).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Unrecognized operation.
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    /// Refused: out of resources (C-STORE).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (C-STORE).
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand (C-STORE).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

/// Command Data Set Type value meaning "no data set follows".
pub(crate) const NO_DATA_SET: u16 = 0x0101;

/// The longest Error Comment (0000,0902) the standard allows (LO).
pub const MAX_ERROR_COMMENT: usize = 64;

/// A decoded request command set: the fields this gateway acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    /// Affected SOP Class UID, or for N- requests the Requested SOP Class UID.
    pub sop_class_uid: Option<String>,
    /// Affected SOP Instance UID, or for N- requests the Requested SOP Instance UID.
    pub sop_instance_uid: Option<String>,
    pub has_data_set: bool,
    /// Move Originator AE title, when a C-STORE is a C-MOVE sub-operation.
    pub move_originator_ae: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("command set cannot be parsed: {0}")]
    Parse(String),
    #[error("command set has no {0}")]
    Missing(&'static str),
}

impl Command {
    /// Decodes a complete command set (all command fragments joined).
    pub fn decode(bytes: &[u8]) -> Result<Command, Error> {
        let obj = read_command_set(bytes)?;
        let u16_of =
            |tag: Tag| -> Option<u16> { obj.get(tag).and_then(|e| e.value().to_int::<u16>().ok()) };
        let str_of = |tag: Tag| -> Option<String> {
            obj.get(tag)
                .and_then(|e| e.value().to_str().ok())
                .map(|s| crate::uid::trim(&s).to_owned())
                .filter(|s| !s.is_empty())
        };
        let field = u16_of(tags::COMMAND_FIELD).ok_or(Error::Missing("Command Field"))?;
        let message_id = u16_of(tags::MESSAGE_ID).unwrap_or(0);
        let data_set_type =
            u16_of(tags::COMMAND_DATA_SET_TYPE).ok_or(Error::Missing("Command Data Set Type"))?;
        let sop_class_uid =
            str_of(tags::AFFECTED_SOP_CLASS_UID).or_else(|| str_of(tags::REQUESTED_SOP_CLASS_UID));
        let sop_instance_uid = str_of(tags::AFFECTED_SOP_INSTANCE_UID)
            .or_else(|| str_of(tags::REQUESTED_SOP_INSTANCE_UID));
        let move_originator_ae =
            str_of(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE).map(|s| s.trim().to_owned());
        Ok(Command {
            field,
            message_id,
            sop_class_uid,
            sop_instance_uid,
            has_data_set: data_set_type != NO_DATA_SET,
            move_originator_ae,
        })
    }

    /// True for C-CANCEL, which never gets a response.
    pub fn is_cancel(&self) -> bool {
        self.field == field::C_CANCEL_RQ
    }
}

/// What a response command set carries.
#[derive(Clone, Debug)]
pub struct Response<'a> {
    /// The request's command field; the response bit is added here.
    pub request_field: u16,
    pub message_id: u16,
    pub sop_class_uid: Option<&'a str>,
    pub sop_instance_uid: Option<&'a str>,
    pub status: u16,
    pub error_comment: Option<&'a str>,
}

impl Response<'_> {
    /// Encodes the response as an Implicit VR Little Endian command set,
    /// with its Command Group Length.
    pub fn encode(&self) -> Vec<u8> {
        let mut elements = vec![
            DataElement::new(
                tags::COMMAND_FIELD,
                VR::US,
                dicom_value!(U16, [self.request_field | field::RESPONSE_BIT]),
            ),
            DataElement::new(
                tags::MESSAGE_ID_BEING_RESPONDED_TO,
                VR::US,
                dicom_value!(U16, [self.message_id]),
            ),
            DataElement::new(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                dicom_value!(U16, [NO_DATA_SET]),
            ),
            DataElement::new(tags::STATUS, VR::US, dicom_value!(U16, [self.status])),
        ];
        if let Some(uid) = self.sop_class_uid {
            elements.push(DataElement::new(
                tags::AFFECTED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(uid),
            ));
        }
        if let Some(uid) = self.sop_instance_uid {
            elements.push(DataElement::new(
                tags::AFFECTED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(uid),
            ));
        }
        if let Some(comment) = self.error_comment {
            elements.push(DataElement::new(
                tags::ERROR_COMMENT,
                VR::LO,
                PrimitiveValue::from(clip_comment(comment)),
            ));
        }
        let obj = InMemDicomObject::command_from_element_iter(elements);
        let mut out = Vec::with_capacity(256);
        // Writing a handful of fixed elements into a Vec cannot fail.
        if let Err(e) = obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased()) {
            tracing::error!(error = %e, "encoding a DIMSE response failed");
        }
        out
    }
}

/// Encodes a request command set (used by the SCUs: `scu` and `query`).
pub fn encode_request(
    request_field: u16,
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: Option<&str>,
    has_data_set: bool,
) -> Vec<u8> {
    let mut elements = vec![
        DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            dicom_value!(U16, [request_field]),
        ),
        DataElement::new(tags::MESSAGE_ID, VR::US, dicom_value!(U16, [message_id])),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            dicom_value!(U16, [if has_data_set { 0x0000 } else { NO_DATA_SET }]),
        ),
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(sop_class_uid),
        ),
    ];
    // Priority (0000,0700) is required in these requests; 0 is medium.
    if matches!(request_field, field::C_STORE_RQ | field::C_FIND_RQ) {
        elements.push(DataElement::new(
            tags::PRIORITY,
            VR::US,
            dicom_value!(U16, [0x0000]),
        ));
    }
    if let Some(uid) = sop_instance_uid {
        elements.push(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(uid),
        ));
    }
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(256);
    if let Err(e) = obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased()) {
        tracing::error!(error = %e, "encoding a DIMSE request failed");
    }
    out
}

/// A decoded response command set (used by the SCUs: `scu` and `query`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub field: u16,
    pub message_id_responded: u16,
    pub status: u16,
    pub error_comment: Option<String>,
    /// A data set follows (Command Data Set Type other than 0101H; false
    /// when the element is missing), as with a pending C-FIND response.
    pub has_data_set: bool,
}

impl Reply {
    pub fn decode(bytes: &[u8]) -> Result<Reply, Error> {
        let obj = read_command_set(bytes)?;
        let u16_of = |tag: Tag| obj.get(tag).and_then(|e| e.value().to_int::<u16>().ok());
        Ok(Reply {
            field: u16_of(tags::COMMAND_FIELD).ok_or(Error::Missing("Command Field"))?,
            message_id_responded: u16_of(tags::MESSAGE_ID_BEING_RESPONDED_TO)
                .ok_or(Error::Missing("Message ID Being Responded To"))?,
            status: u16_of(tags::STATUS).ok_or(Error::Missing("Status"))?,
            error_comment: obj
                .get(tags::ERROR_COMMENT)
                .and_then(|e| e.value().to_str().ok())
                .map(|s| s.trim().to_owned()),
            has_data_set: u16_of(tags::COMMAND_DATA_SET_TYPE).is_some_and(|t| t != NO_DATA_SET),
        })
    }
}

/// Parses a command set. Its structure is walked first, so that no element
/// length a peer declares can exceed the bytes actually received: the
/// decoder behind it allocates a value's declared length before reading it.
pub(crate) fn read_command_set(bytes: &[u8]) -> Result<InMemDicomObject, Error> {
    use crate::ingest::parse::{self, Encoding, SeekSource};
    let mut src = SeekSource::new(std::io::Cursor::new(bytes), 0, bytes.len() as u64)
        .map_err(|e| Error::Parse(e.to_string()))?;
    parse::walk(&mut src, Encoding::IMPLICIT_LE).map_err(|e| Error::Parse(e.to_string()))?;
    InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| Error::Parse(e.to_string()))
}

/// Cuts an Error Comment to the 64 characters an LO value may hold, on a
/// character boundary.
pub fn clip_comment(comment: &str) -> &str {
    match comment.char_indices().nth(MAX_ERROR_COMMENT) {
        Some((idx, _)) => &comment[..idx],
        None => comment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_decode() {
        let bytes = encode_request(
            field::C_STORE_RQ,
            7,
            "1.2.840.10008.5.1.4.1.1.2",
            Some("1.2.3"),
            true,
        );
        let cmd = Command::decode(&bytes).unwrap();
        assert_eq!(cmd.field, field::C_STORE_RQ);
        assert_eq!(cmd.message_id, 7);
        assert_eq!(
            cmd.sop_class_uid.as_deref(),
            Some("1.2.840.10008.5.1.4.1.1.2")
        );
        assert_eq!(cmd.sop_instance_uid.as_deref(), Some("1.2.3"));
        assert!(cmd.has_data_set);
    }

    #[test]
    fn response_carries_status_comment_and_message_id() {
        let long = "x".repeat(100);
        let bytes = Response {
            request_field: field::C_STORE_RQ,
            message_id: 42,
            sop_class_uid: Some("1.2"),
            sop_instance_uid: Some("1.2.3"),
            status: status::CANNOT_UNDERSTAND,
            error_comment: Some(&long),
        }
        .encode();
        let reply = Reply::decode(&bytes).unwrap();
        assert_eq!(reply.field, 0x8001);
        assert_eq!(reply.message_id_responded, 42);
        assert_eq!(reply.status, 0xC000);
        assert_eq!(reply.error_comment.unwrap().len(), 64);
        // The group length must be the first element and count the rest.
        assert_eq!(&bytes[0..4], &[0, 0, 0, 0]);
        let declared = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(declared, bytes.len() - 12);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [
            &b""[..],
            &b"\x00\x00"[..],
            &[0xffu8; 37][..],
            &b"\x00\x00\x00\x01\xff\xff\xff\xff"[..],
        ] {
            assert!(Command::decode(junk).is_err());
        }
    }

    /// Regression: a command set declaring an element of 3.6 GB in 8 bytes
    /// made the decoder allocate and zero gigabytes before failing, hanging
    /// the association's task; it is now refused from its structure alone.
    #[test]
    fn a_declared_length_past_the_end_is_refused_before_decoding() {
        let bytes = [0x25u8, 0x31, 0xaf, 0x5c, 0xf0, 0xb9, 0xa2, 0xd9];
        assert!(matches!(Command::decode(&bytes), Err(Error::Parse(_))));
        assert!(matches!(Reply::decode(&bytes), Err(Error::Parse(_))));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(70);
        assert_eq!(clip_comment(&s).chars().count(), 64);
    }
}
