//! HL7 v2: MLLP framing, message parsing and field extraction, acknowledgements.
