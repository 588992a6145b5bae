//! HL7 intake load: sends ORU^R01 reports over MLLP on several connections
//! and measures the acknowledgement latency of each. The load generator of
//! `bench/hl7.sh`; a port of the former `bench/hl7_load.py` that costs far
//! less CPU per message, so that it takes less of the machine from the
//! gateway it measures.
//!
//!   hl7_load --port PORT [--connections 4] [--messages 20000]
//!            [--timeout 10] [--id-prefix BENCH] [--host 127.0.0.1]
//!   hl7_load --mean-bytes [--messages 20000] [--id-prefix BENCH]
//!
//! Each connection sends one message, waits for its ACK, checks it and only
//! then sends the next, so there are never more messages in flight than
//! connections. A message's latency runs from just before its frame is
//! written to the moment its whole ACK frame has been read
//! (`std::time::Instant`). The connections take their messages from one
//! shared sequence. Everything runs on one thread (a current-thread tokio
//! runtime) to keep the client's own CPU use small.
//!
//! The messages are built before the clock starts and depend only on their
//! index and --id-prefix: realistic ORU^R01 reports of 1.5-2 KB with 7-9 OBX
//! text lines. They rotate through three shapes a RIS sends (v2.3.1 with a
//! ZDS study UID, v2.4 with the accession in OBR-18 only, v2.5.1 with an IPC
//! segment). Each has its own MSH-10, accession number, placer and filler
//! order numbers and study UID, so none is a duplicate of another and none
//! links to a study (they all go on the unmatched list, which costs the same
//! commit). Run against a fresh catalog or change --id-prefix: the gateway
//! acknowledges a repeated MSH-3/MSH-4/MSH-10 without processing it again.
//! The bytes are the same as those `bench/hl7_load.py` built.
//!
//! A message counts as an error when its ACK does not arrive within
//! --timeout, is not a well-formed MLLP frame, has MSA-1 other than AA, or
//! has MSA-2 other than the MSH-10 sent. A connection that fails or times
//! out stops, and its unsent messages are not counted as sent.
//!
//! Prints one JSON line to stdout:
//!   {"messages", "connections", "seconds", "messages_per_s", "p50_ms",
//!    "p99_ms", "max_ms", "errors"}
//! where messages is the number of messages answered with an ACK (whether
//! AA or not), seconds runs from opening the connections to the last ACK,
//! messages_per_s is messages / seconds, and the percentiles (nearest rank)
//! are over those messages. The first few errors are described on stderr.
//!
//! With --mean-bytes it connects to nothing: it prints the mean size in
//! bytes (rounded) of the MLLP frames of the --messages messages and exits.
//!
//! Exit status: 0 when every message got a matching AA; 1 when there was any
//! error; 2 on a usage error (including any --host other than 127.0.0.1).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SB: u8 = 0x0b;
const EB: u8 = 0x1c;
const CR: u8 = b'\r';
const MAX_ERROR_LINES: usize = 10;
/// asyncio's default StreamReader limit, past which readuntil gave up.
const MAX_ACK_BYTES: usize = 64 * 1024;
const STUDY_ROOT: &str = "1.2.826.0.1.3680043.10.1661.8";
/// 2026-11-20 08:00:00, in seconds since 1970-01-01 00:00:00 (no time zone).
const START: i64 = 1_795_132_800 + 8 * 3600;

const SURNAMES: [&str; 13] = [
    "CHAPMAN", "OKORO", "HUGHES", "SINGH", "WALSH", "NOWAK", "MACLEOD", "AHMED", "O'NEILL",
    "PATEL", "EVANS", "ADEYEMI", "MURPHY",
];
const GIVEN: [&str; 13] = [
    "ELEANOR",
    "DANIEL",
    "BETHAN",
    "HARPREET",
    "PATRICK",
    "AGNIESZKA",
    "CALUM",
    "YUSUF",
    "SIOBHAN",
    "PRIYA",
    "RHYS",
    "FOLAKE",
    "SEAN",
];
const TOWNS: [(&str, &str); 7] = [
    ("Leeds", "LS6 2QD"),
    ("Manchester", "M1 3HE"),
    ("Cardiff", "CF14 6QT"),
    ("Birmingham", "B21 9BL"),
    ("Brighton", "BN2 1TL"),
    ("York", "YO10 5DD"),
    ("Inverness", "IV2 3UJ"),
];
const REFERRERS: [&str; 4] = [
    "C3456789^KHAN^AMINA^^^DR",
    "G8123456^OKAFOR^CHIDI^^^DR",
    "C2233445^BROWN^HELEN^^^DR",
    "G7001234^WRIGHT^JAMES^^^DR",
];
const RADIOLOGISTS: [&str; 4] = [
    "4567890&LEWIS&SARAH&&&DR",
    "5566778&AHMED&YUSUF&&&DR",
    "6677889&ROBERTS&GARETH&&&DR",
    "7788990&EVANS&CLAIRE&&&DR",
];

/// (OBR-4 service, modality, report lines)
const EXAMS: [(&str, &str, &[&str]); 3] = [
    (
        "CCHAPC^CT Chest abdomen pelvis with contrast^RXX",
        "CT",
        &[
            "CT CHEST, ABDOMEN AND PELVIS WITH CONTRAST",
            "Clinical details: Unintentional weight loss of 6 kg over three months. Raised CRP. ?Occult malignancy.",
            "Technique: Portal venous phase imaging from the thoracic inlet to the symphysis pubis following 100 ml Omnipaque 300.",
            "Comparison: Chest radiograph of 02/10/2026.",
            "Findings: The lungs are clear. No pleural effusion. No mediastinal or hilar lymphadenopathy.",
            "The liver, spleen, pancreas and adrenal glands are unremarkable. The kidneys enhance symmetrically with no hydronephrosis.",
            "No intra-abdominal or pelvic lymphadenopathy. No free fluid. Bowel loops are of normal calibre.",
            "Mild degenerative change in the lower lumbar spine. No aggressive bone lesion.",
            "Conclusion: No evidence of malignancy or other cause for weight loss identified.",
        ],
    ),
    (
        "XCHES^XR Chest PA^RXX",
        "CR",
        &[
            "XR CHEST PA",
            "Clinical details: Productive cough for three weeks. Ex-smoker, 30 pack-years.",
            "Comparison: None available.",
            "Findings: Heart size is normal. The mediastinal contours are normal.",
            "There is patchy consolidation in the right lower zone, in keeping with infection.",
            "No pleural effusion or pneumothorax. No focal bony abnormality.",
            "Conclusion: Right lower zone consolidation. Suggest repeat chest radiograph in 6 weeks after treatment to confirm resolution.",
        ],
    ),
    (
        "MKNEL^MR Knee left^RXX",
        "MR",
        &[
            "MRI LEFT KNEE",
            "Clinical details: Twisting injury playing football. Locking and medial joint line pain.",
            "Technique: Sagittal PD fat-saturated, coronal PD and T1, axial PD fat-saturated sequences.",
            "Findings: There is a horizontal tear of the posterior horn of the medial meniscus extending to the inferior articular surface.",
            "The anterior and posterior cruciate ligaments are intact. The collateral ligaments are intact.",
            "No bone bruise or osteochondral defect. Small joint effusion. No Baker's cyst.",
            "The extensor mechanism is intact.",
            "Conclusion: Medial meniscal tear. Orthopaedic opinion suggested.",
        ],
    ),
];

const USAGE: &str = "usage: hl7_load [-h] [--host HOST] --port PORT [--connections CONNECTIONS] \
[--messages MESSAGES] [--timeout TIMEOUT] [--id-prefix ID_PREFIX] [--mean-bytes]";

const HELP: &str = "
HL7 intake load for bench/hl7.sh: sends ORU^R01 reports over MLLP on several
connections, one message in flight per connection, checks each ACK (MSA-1 AA,
MSA-2 = the MSH-10 sent) and prints one JSON line: messages, connections,
seconds, messages_per_s, p50_ms, p99_ms, max_ms, errors.

options:
  -h, --help            show this help message and exit
  --host HOST           only 127.0.0.1 is allowed
  --port PORT
  --connections CONNECTIONS
  --messages MESSAGES
  --timeout TIMEOUT     seconds to wait for each ACK (default 10)
  --id-prefix ID_PREFIX
                        start of each MSH-10 (default BENCH)
  --mean-bytes          print the mean size in bytes of the MLLP frames of
                        --messages messages and exit (connects to nothing)

Exit status: 0 when every message got a matching AA; 1 when there was any
error; 2 on a usage error (including any --host other than 127.0.0.1).";

struct Args {
    port: u16,
    connections: usize,
    messages: usize,
    timeout: Duration,
    id_prefix: String,
    mean_bytes: bool,
}

fn usage_error(text: &str) -> ExitCode {
    eprintln!("{USAGE}\nhl7_load: error: {text}");
    ExitCode::from(2)
}

fn parse_args() -> Result<Args, ExitCode> {
    let mut host = String::from("127.0.0.1");
    let mut port = None;
    let mut connections = 4usize;
    let mut messages = 20_000usize;
    let mut timeout = 10.0f64;
    let mut id_prefix = String::from("BENCH");
    let mut mean_bytes = false;

    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}\n{HELP}");
            return Err(ExitCode::SUCCESS);
        }
        if arg == "--mean-bytes" {
            mean_bytes = true;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if !matches!(
            name.as_str(),
            "--host" | "--port" | "--connections" | "--messages" | "--timeout" | "--id-prefix"
        ) {
            return Err(usage_error(&format!("unrecognized arguments: {arg}")));
        }
        let Some(value) = inline.or_else(|| argv.next()) else {
            return Err(usage_error(&format!(
                "argument {name}: expected one argument"
            )));
        };
        let bad =
            |kind: &str| usage_error(&format!("argument {name}: invalid {kind} value: '{value}'"));
        match name.as_str() {
            "--host" => host = value,
            "--port" => port = Some(value.parse::<u16>().map_err(|_| bad("port"))?),
            "--connections" => connections = value.parse().map_err(|_| bad("int"))?,
            "--messages" => messages = value.parse().map_err(|_| bad("int"))?,
            "--timeout" => timeout = value.parse().map_err(|_| bad("float"))?,
            "--id-prefix" => id_prefix = value,
            _ => unreachable!(),
        }
    }
    if host != "127.0.0.1" {
        return Err(usage_error(
            "--host: this benchmark only sends to 127.0.0.1",
        ));
    }
    if connections < 1 || messages < 1 {
        return Err(usage_error(
            "--connections and --messages must be at least 1",
        ));
    }
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(usage_error(
            "--timeout must be a positive number of seconds",
        ));
    }
    if !id_prefix.is_ascii() {
        return Err(usage_error("--id-prefix must be ASCII"));
    }
    let port = match (port, mean_bytes) {
        (Some(p), _) => p,
        (None, true) => 0,
        (None, false) => return Err(usage_error("the following arguments are required: --port")),
    };
    Ok(Args {
        port,
        connections,
        messages,
        timeout: Duration::from_secs_f64(timeout),
        id_prefix,
        mean_bytes,
    })
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// civil_from_days, proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// YYYYMMDDHHMMSS of seconds since 1970-01-01 00:00:00.
fn ts(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// ORU^R01 number i: its MSH-10 and its MLLP frame.
fn message(i: usize, prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let control = format!("{prefix}{i:08}");
    let accession = format!("BX{i:08}");
    let study_uid = format!("{STUDY_ROOT}.{}", i + 1);
    let exam_time = ts(START + 3 * i as i64);
    let report_time = ts(START + 3 * i as i64 + 47 * 60);
    let (service, modality, lines) = EXAMS[i % EXAMS.len()];
    let surname = SURNAMES[i % SURNAMES.len()];
    let given = GIVEN[(i / SURNAMES.len()) % GIVEN.len()];
    let (town, postcode) = TOWNS[i % TOWNS.len()];
    let referrer = REFERRERS[i % REFERRERS.len()];
    let author = RADIOLOGISTS[(i / 3) % RADIOLOGISTS.len()];
    let dob = format!("19{:02}{:02}{:02}", 30 + i % 70, 1 + i % 12, 1 + i % 28);
    let shape = i % 3;
    let version = ["2.3.1", "2.4", "2.5.1"][shape];
    let msg_type = if shape == 0 {
        "ORU^R01"
    } else {
        "ORU^R01^ORU_R01"
    };
    let msh_tail = if shape == 0 { "" } else { "|||||GBR" };
    let obr18 = if shape == 2 { "" } else { accession.as_str() };
    let sex = ["M", "F"][i % 2];
    let class = ["O", "I", "E"][i % 3];

    let mut body = String::with_capacity(2048);
    // Writing into a String cannot fail.
    let _ = write!(
        body,
        "MSH|^~\\&|CRIS|RXX|STUDYWATCH|RXX|{report_time}||{msg_type}|{control}|P|{version}{msh_tail}\r"
    );
    let _ = write!(
        body,
        "PID|1||H{i:07}^^^RXX^MR~999{i:07}^^^NHS^NH||{surname}^{given}||{dob}|{sex}|||\
         {} Station Road^^{town}^^{postcode}^GBR||0113 496 {:04}^PRN^PH\r",
        1 + i % 120,
        i % 10000
    );
    let _ = write!(
        body,
        "PV1|1|{class}|XRAY^^^RXX|||||{referrer}||RAD|||||||||V{i:08}\r"
    );
    let _ = write!(body, "ORC|RE|PL{i:08}|FL{i:08}||CM\r");
    let _ = write!(
        body,
        "OBR|1|PL{i:08}|FL{i:08}|{service}|||{exam_time}|||||||||{referrer}||{obr18}||||\
         {report_time}||{modality}|F||^^^{exam_time}^^R|||||{author}^{report_time}\r"
    );
    if shape == 0 {
        let _ = write!(body, "ZDS|{study_uid}^^Application^DICOM\r");
    } else if shape == 2 {
        let _ = write!(
            body,
            "IPC|{accession}^CRIS|RP{accession}^CRIS|{study_uid}|SPS{accession}^CRIS|{modality}^^DCM\r"
        );
    }
    for (n, text) in lines.iter().enumerate() {
        let _ = write!(
            body,
            "OBX|{}|TX|18782-3^Radiology Study observation^LN||{text}||||||F|||{report_time}\r",
            n + 1
        );
    }
    let mut frame = Vec::with_capacity(body.len() + 3);
    frame.push(SB);
    frame.extend_from_slice(body.as_bytes());
    frame.extend_from_slice(&[EB, CR]);
    (control.into_bytes(), frame)
}

/// Python's repr() of a bytes value, for messages like the .py's.
fn repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::with_capacity(b.len() + 3);
    s.push('b');
    s.push(quote);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e if c as char == quote => {
                s.push('\\');
                s.push(quote);
            }
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push(quote);
    s
}

/// None when frame is an AA acknowledging control, else why not.
fn check_ack(frame: &[u8], control: &[u8]) -> Option<String> {
    // frame ends with EB CR: it was cut there.
    if frame.first() != Some(&SB) || !frame.ends_with(&[EB, CR]) {
        return Some(format!(
            "not an MLLP frame: {}",
            repr(&frame[..frame.len().min(60)])
        ));
    }
    let body = if frame.len() >= 3 {
        &frame[1..frame.len() - 2]
    } else {
        &[][..]
    };
    for segment in body.split(|&c| c == CR) {
        if segment.starts_with(b"MSA|") {
            let fields: Vec<&[u8]> = segment.split(|&c| c == b'|').collect();
            let code = fields.get(1).copied().unwrap_or(b"");
            let echoed = fields.get(2).copied().unwrap_or(b"");
            if echoed != control {
                return Some(format!(
                    "MSA-2 {} does not match MSH-10 {}",
                    repr(echoed),
                    repr(control)
                ));
            }
            if code != b"AA" {
                let why = fields.get(3).copied().unwrap_or(b"");
                return Some(format!(
                    "MSA-1 {} for {}: {}",
                    repr(code),
                    repr(control),
                    repr(why)
                ));
            }
            return None;
        }
    }
    Some(format!(
        "no MSA segment in the ACK for {}: {}",
        repr(control),
        repr(&frame[..frame.len().min(120)])
    ))
}

struct Run {
    frames: Vec<(Vec<u8>, Vec<u8>)>,
    timeout: Duration,
    next: AtomicUsize,
    errors: Mutex<(usize, usize)>, // (errors, error lines printed)
}

impl Run {
    fn error(&self, text: &str) {
        let mut e = self.errors.lock().unwrap();
        e.0 += 1;
        if e.1 < MAX_ERROR_LINES {
            eprintln!("hl7_load: {text}");
            e.1 += 1;
        } else if e.1 == MAX_ERROR_LINES {
            eprintln!("hl7_load: (further errors not shown)");
            e.1 += 1;
        }
    }

    fn take(&self) -> Option<usize> {
        // One thread and no await between load and store, but fetch_update
        // keeps it correct on any runtime and never goes past the end.
        self.next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.frames.len()).then_some(n + 1)
            })
            .ok()
    }
}

struct AckLost(String);

/// Reads until the first EB CR; returns the bytes up to and including it
/// and leaves anything after it in buf (like asyncio's readuntil).
async fn read_ack(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    scratch: &mut [u8],
) -> Result<Vec<u8>, AckLost> {
    let mut searched: usize = 0;
    loop {
        if let Some(k) = buf[searched.saturating_sub(1)..]
            .windows(2)
            .position(|w| w == [EB, CR])
        {
            let end = searched.saturating_sub(1) + k + 2;
            let rest = buf.split_off(end);
            return Ok(std::mem::replace(buf, rest));
        }
        if buf.len() > MAX_ACK_BYTES {
            return Err(AckLost(format!("no end of frame in {} bytes", buf.len())));
        }
        searched = buf.len();
        match stream.read(scratch).await {
            Ok(0) => {
                return Err(AckLost(format!(
                    "connection closed with {} bytes of an unfinished ACK read",
                    buf.len()
                )));
            }
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
            Err(e) => return Err(AckLost(e.to_string())),
        }
    }
}

/// One connection: its latencies in nanoseconds and the time of its last ACK.
async fn connection(run: Arc<Run>, port: u16, number: usize) -> (Vec<u64>, Option<Instant>) {
    let mut latencies = Vec::new();
    let mut last_ack = None;
    let mut stream =
        match tokio::time::timeout(run.timeout, TcpStream::connect(("127.0.0.1", port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                run.error(&format!(
                    "connection {number}: cannot connect to 127.0.0.1:{port}: {e}"
                ));
                return (latencies, last_ack);
            }
            Err(_) => {
                run.error(&format!(
                    "connection {number}: cannot connect to 127.0.0.1:{port}: timed out"
                ));
                return (latencies, last_ack);
            }
        };
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut scratch = vec![0u8; 16 * 1024];
    while let Some(i) = run.take() {
        let (control, frame) = &run.frames[i];
        let t0 = Instant::now();
        if let Err(e) = stream.write_all(frame).await {
            run.error(&format!(
                "connection {number}: lost while sending {}: {e}",
                repr(control)
            ));
            break;
        }
        let ack =
            match tokio::time::timeout(run.timeout, read_ack(&mut stream, &mut buf, &mut scratch))
                .await
            {
                Ok(Ok(ack)) => ack,
                Err(_) => {
                    run.error(&format!(
                        "connection {number}: no ACK for {} within {} s; closing this connection",
                        repr(control),
                        run.timeout.as_secs_f64()
                    ));
                    break;
                }
                Ok(Err(AckLost(why))) => {
                    run.error(&format!(
                        "connection {number}: lost while waiting for the ACK of {}: {why}",
                        repr(control)
                    ));
                    break;
                }
            };
        let t1 = Instant::now();
        latencies.push(u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX));
        last_ack = Some(t1);
        if let Some(why) = check_ack(&ack, control) {
            run.error(&why);
        }
    }
    let _ = stream.shutdown().await;
    (latencies, last_ack)
}

/// Python's round(x, digits), near enough (halves away from zero).
fn round_to(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Nanoseconds to milliseconds.
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Nearest-rank percentile of sorted nanoseconds, in milliseconds.
fn percentile(sorted_ns: &[u64], p: usize) -> Option<f64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let rank = (sorted_ns.len() * p).div_ceil(100).max(1);
    Some(round_to(ms(sorted_ns[rank - 1]), 3))
}

fn json(v: Option<f64>) -> String {
    match v {
        Some(x) => serde_json::to_string(&x).unwrap_or_else(|_| "null".into()),
        None => "null".into(),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(code) => return code,
    };
    let frames: Vec<(Vec<u8>, Vec<u8>)> = (0..args.messages)
        .map(|i| message(i, &args.id_prefix))
        .collect();
    if args.mean_bytes {
        let total: usize = frames.iter().map(|(_, f)| f.len()).sum();
        println!("{}", (total as f64 / frames.len() as f64).round());
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hl7_load: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let run = Arc::new(Run {
        frames,
        timeout: args.timeout,
        next: AtomicUsize::new(0),
        errors: Mutex::new((0, 0)),
    });
    let (mut latencies, seconds) = runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..args.connections)
            .map(|k| tokio::spawn(connection(run.clone(), args.port, k)))
            .collect();
        let mut latencies = Vec::with_capacity(args.messages);
        let mut last_ack: Option<Instant> = None;
        for t in tasks {
            match t.await {
                Ok((l, last)) => {
                    latencies.extend(l);
                    last_ack = last_ack.max(last);
                }
                Err(e) => run.error(&format!("a connection task failed: {e}")),
            }
        }
        let end = last_ack.unwrap_or_else(Instant::now);
        (latencies, (end - start).as_secs_f64())
    });
    latencies.sort_unstable();
    let answered = latencies.len();
    let unsent = args.messages - run.next.load(Ordering::Relaxed);
    if unsent > 0 {
        run.error(&format!(
            "{unsent} message(s) never sent: every connection stopped"
        ));
    }
    let errors = run.errors.lock().unwrap().0;
    println!(
        "{{\"messages\": {answered}, \"connections\": {}, \"seconds\": {}, \
         \"messages_per_s\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"max_ms\": {}, \
         \"errors\": {errors}}}",
        args.connections,
        json(Some(round_to(seconds, 3))),
        json((seconds > 0.0).then(|| round_to(answered as f64 / seconds, 1))),
        json(percentile(&latencies, 50)),
        json(percentile(&latencies, 99)),
        json(latencies.last().map(|&ns| round_to(ms(ns), 3))),
    );
    if errors > 0 || answered != args.messages {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
