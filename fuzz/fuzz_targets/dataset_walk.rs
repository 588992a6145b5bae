//! Any bytes as a received data set, in each encoding: the walk and the
//! intact checks must return a result, never panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use studywatch::ingest::parse::{self, Encoding, SeekSource, StreamSource};
use studywatch::ingest::verify;

fuzz_target!(|data: &[u8]| {
    let claim = verify::Claim {
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid: "1.2.3.4",
        transfer_syntax: "1.2.840.10008.1.2.1",
    };
    for enc in [
        Encoding::IMPLICIT_LE,
        Encoding::EXPLICIT_LE,
        Encoding::EXPLICIT_BE,
    ] {
        let Ok(mut src) = SeekSource::new(std::io::Cursor::new(data), 0, data.len() as u64) else {
            return;
        };
        if let Ok(summary) = parse::walk(&mut src, enc) {
            let _ = verify::check(&summary, &claim);
        }
    }
    let mut stream = StreamSource::new(data);
    let _ = parse::walk(&mut stream, Encoding::EXPLICIT_LE);
});
