//! Any bytes as one received HL7 message: parsing must return a result (a
//! taken message or a rejection with a short reason), never panic, and the
//! ACK built from either must be HL7 whose MSH reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use studywatch::hl7::{self, AckCode, AlertRules, Fields, TimeZone, Timestamp};

fuzz_target!(|data: &[u8]| {
    let tz = TimeZone::UTC;
    let now = Timestamp::UNIX_EPOCH;
    let ack = match hl7::parse(data, &Fields::default(), &tz) {
        Ok(parsed) => {
            let rules = AlertRules::default();
            for request in &parsed.requests {
                let _ = rules.classify(&request.abnormal_flags, &request.text);
            }
            hl7::ack(
                Some(&parsed.header),
                AckCode::AA,
                "",
                "SW",
                "HOSP",
                "1",
                now,
                &tz,
            )
        }
        Err(rejected) => {
            assert!(rejected.reason.chars().count() <= 80);
            hl7::ack(
                rejected.header.as_ref(),
                rejected.code,
                &rejected.reason,
                "SW",
                "HOSP",
                "1",
                now,
                &tz,
            )
        }
    };
    // An ACK is not a type we take, so it comes back rejected — with its
    // MSH read, which proves the ACK's header is well formed.
    match hl7::parse(ack.as_bytes(), &Fields::default(), &tz) {
        Ok(_) => panic!("an ACK was taken as a report or order"),
        Err(rejected) => assert!(rejected.header.is_some(), "ACK unreadable: {ack:?}"),
    }
});
