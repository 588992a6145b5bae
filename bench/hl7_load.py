#!/usr/bin/env python3
"""HL7 intake load: sends ORU^R01 reports over MLLP on several connections
and measures the acknowledgement latency of each.

  hl7_load.py --port PORT [--connections 4] [--messages 20000]

Each connection sends one message, waits for its ACK, checks it and only
then sends the next, so there are never more messages in flight than
connections. A message's latency runs from just before its frame is written
to the moment its whole ACK frame has been read (time.perf_counter_ns). The
connections take their messages from one shared sequence.

The messages are built before the clock starts and depend only on their
index and --id-prefix: realistic ORU^R01 reports of 1.5-2 KB with 7-9 OBX
text lines. They rotate through three shapes a RIS sends (v2.3.1 with a ZDS
study UID, v2.4 with the accession in OBR-18 only, v2.5.1 with an IPC
segment). Each has its own MSH-10, accession number, placer and filler order
numbers and study UID, so none is a duplicate of another and none links to
a study (they all go on the unmatched list, which costs the same commit).
Run against a fresh catalog or change --id-prefix: the gateway acknowledges
a repeated MSH-3/MSH-4/MSH-10 without processing it again.

A message counts as an error when its ACK does not arrive within --timeout,
is not a well-formed MLLP frame, has MSA-1 other than AA, or has MSA-2
other than the MSH-10 sent. A connection that fails or times out stops, and
its unsent messages are not counted as sent.

Prints one JSON line to stdout:
  {"messages", "connections", "seconds", "messages_per_s", "p50_ms",
   "p99_ms", "max_ms", "errors"}
where messages is the number of messages answered with an ACK (whether AA
or not), seconds runs from opening the connections to the last ACK,
messages_per_s is messages / seconds, and the percentiles (nearest rank) are
over those messages. The first few errors are described on stderr.

Exit status: 0 when every message got a matching AA; 1 when there was any
error; 2 on a usage error (including any --host other than 127.0.0.1).
"""
import argparse
import asyncio
import datetime
import json
import socket
import sys
import time

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
MAX_ERROR_LINES = 10
STUDY_ROOT = "1.2.826.0.1.3680043.10.1661.8"
START = datetime.datetime(2026, 11, 20, 8, 0, 0)

SURNAMES = ["CHAPMAN", "OKORO", "HUGHES", "SINGH", "WALSH", "NOWAK", "MACLEOD",
            "AHMED", "O'NEILL", "PATEL", "EVANS", "ADEYEMI", "MURPHY"]
GIVEN = ["ELEANOR", "DANIEL", "BETHAN", "HARPREET", "PATRICK", "AGNIESZKA",
         "CALUM", "YUSUF", "SIOBHAN", "PRIYA", "RHYS", "FOLAKE", "SEAN"]
TOWNS = [("Leeds", "LS6 2QD"), ("Manchester", "M1 3HE"), ("Cardiff", "CF14 6QT"),
         ("Birmingham", "B21 9BL"), ("Brighton", "BN2 1TL"), ("York", "YO10 5DD"),
         ("Inverness", "IV2 3UJ")]
REFERRERS = ["C3456789^KHAN^AMINA^^^DR", "G8123456^OKAFOR^CHIDI^^^DR",
             "C2233445^BROWN^HELEN^^^DR", "G7001234^WRIGHT^JAMES^^^DR"]
RADIOLOGISTS = ["4567890&LEWIS&SARAH&&&DR", "5566778&AHMED&YUSUF&&&DR",
                "6677889&ROBERTS&GARETH&&&DR", "7788990&EVANS&CLAIRE&&&DR"]

# (OBR-4 service, modality, report lines)
EXAMS = [
    ("CCHAPC^CT Chest abdomen pelvis with contrast^RXX", "CT", [
        "CT CHEST, ABDOMEN AND PELVIS WITH CONTRAST",
        "Clinical details: Unintentional weight loss of 6 kg over three months. Raised CRP. ?Occult malignancy.",
        "Technique: Portal venous phase imaging from the thoracic inlet to the symphysis pubis following 100 ml Omnipaque 300.",
        "Comparison: Chest radiograph of 02/10/2026.",
        "Findings: The lungs are clear. No pleural effusion. No mediastinal or hilar lymphadenopathy.",
        "The liver, spleen, pancreas and adrenal glands are unremarkable. The kidneys enhance symmetrically with no hydronephrosis.",
        "No intra-abdominal or pelvic lymphadenopathy. No free fluid. Bowel loops are of normal calibre.",
        "Mild degenerative change in the lower lumbar spine. No aggressive bone lesion.",
        "Conclusion: No evidence of malignancy or other cause for weight loss identified.",
    ]),
    ("XCHES^XR Chest PA^RXX", "CR", [
        "XR CHEST PA",
        "Clinical details: Productive cough for three weeks. Ex-smoker, 30 pack-years.",
        "Comparison: None available.",
        "Findings: Heart size is normal. The mediastinal contours are normal.",
        "There is patchy consolidation in the right lower zone, in keeping with infection.",
        "No pleural effusion or pneumothorax. No focal bony abnormality.",
        "Conclusion: Right lower zone consolidation. Suggest repeat chest radiograph in 6 weeks after treatment to confirm resolution.",
    ]),
    ("MKNEL^MR Knee left^RXX", "MR", [
        "MRI LEFT KNEE",
        "Clinical details: Twisting injury playing football. Locking and medial joint line pain.",
        "Technique: Sagittal PD fat-saturated, coronal PD and T1, axial PD fat-saturated sequences.",
        "Findings: There is a horizontal tear of the posterior horn of the medial meniscus extending to the inferior articular surface.",
        "The anterior and posterior cruciate ligaments are intact. The collateral ligaments are intact.",
        "No bone bruise or osteochondral defect. Small joint effusion. No Baker's cyst.",
        "The extensor mechanism is intact.",
        "Conclusion: Medial meniscal tear. Orthopaedic opinion suggested.",
    ]),
]


def ts(t):
    return t.strftime("%Y%m%d%H%M%S")


def message(i, prefix):
    """ORU^R01 number i: its MSH-10 and its MLLP frame."""
    control = f"{prefix}{i:08d}"
    accession = f"BX{i:08d}"
    study_uid = f"{STUDY_ROOT}.{i + 1}"
    exam_time = START + datetime.timedelta(seconds=3 * i)
    report_time = exam_time + datetime.timedelta(minutes=47)
    service, modality, lines = EXAMS[i % len(EXAMS)]
    surname = SURNAMES[i % len(SURNAMES)]
    given = GIVEN[(i // len(SURNAMES)) % len(GIVEN)]
    town, postcode = TOWNS[i % len(TOWNS)]
    referrer = REFERRERS[i % len(REFERRERS)]
    author = RADIOLOGISTS[(i // 3) % len(RADIOLOGISTS)]
    dob = f"19{30 + i % 70:02d}{1 + i % 12:02d}{1 + i % 28:02d}"
    shape = i % 3
    version = ("2.3.1", "2.4", "2.5.1")[shape]
    msg_type = "ORU^R01" if shape == 0 else "ORU^R01^ORU_R01"
    msh_tail = "" if shape == 0 else "|||||GBR"
    obr18 = "" if shape == 2 else accession
    segs = [
        f"MSH|^~\\&|CRIS|RXX|STUDYWATCH|RXX|{ts(report_time)}||{msg_type}|{control}|P|{version}{msh_tail}",
        f"PID|1||H{i:07d}^^^RXX^MR~999{i:07d}^^^NHS^NH||{surname}^{given}||{dob}|{'MF'[i % 2]}|||"
        f"{1 + i % 120} Station Road^^{town}^^{postcode}^GBR||0113 496 {i % 10000:04d}^PRN^PH",
        f"PV1|1|{'OIE'[i % 3]}|XRAY^^^RXX|||||{referrer}||RAD|||||||||V{i:08d}",
        f"ORC|RE|PL{i:08d}|FL{i:08d}||CM",
        f"OBR|1|PL{i:08d}|FL{i:08d}|{service}|||{ts(exam_time)}|||||||||{referrer}||{obr18}||||"
        f"{ts(report_time)}||{modality}|F||^^^{ts(exam_time)}^^R|||||{author}^{ts(report_time)}",
    ]
    if shape == 0:
        segs.append(f"ZDS|{study_uid}^^Application^DICOM")
    elif shape == 2:
        segs.append(f"IPC|{accession}^CRIS|RP{accession}^CRIS|{study_uid}|SPS{accession}^CRIS|"
                    f"{modality}^^DCM")
    for n, text in enumerate(lines, start=1):
        segs.append(f"OBX|{n}|TX|18782-3^Radiology Study observation^LN||{text}||||||F|||{ts(report_time)}")
    body = "\r".join(segs).encode("ascii") + CR
    return control.encode("ascii"), SB + body + EB + CR


class Run:
    def __init__(self, frames, timeout):
        self.frames = frames
        self.timeout = timeout
        self.next = 0
        self.latencies = []
        self.errors = 0
        self.error_lines = 0
        self.last_ack = None

    def error(self, text):
        self.errors += 1
        if self.error_lines < MAX_ERROR_LINES:
            print(f"hl7_load: {text}", file=sys.stderr)
            self.error_lines += 1
        elif self.error_lines == MAX_ERROR_LINES:
            print("hl7_load: (further errors not shown)", file=sys.stderr)
            self.error_lines += 1

    def take(self):
        if self.next >= len(self.frames):
            return None
        i = self.next
        self.next += 1
        return i


def check_ack(frame, control):
    """None when frame is an AA acknowledging control, else why not."""
    if not frame.startswith(SB) or not frame.endswith(EB + CR):
        return f"not an MLLP frame: {frame[:60]!r}"
    for segment in frame[1:-2].split(CR):
        if segment.startswith(b"MSA|"):
            fields = segment.split(b"|")
            code = fields[1] if len(fields) > 1 else b""
            echoed = fields[2] if len(fields) > 2 else b""
            if echoed != control:
                return f"MSA-2 {echoed!r} does not match MSH-10 {control!r}"
            if code != b"AA":
                why = fields[3] if len(fields) > 3 else b""
                return f"MSA-1 {code!r} for {control!r}: {why!r}"
            return None
    return f"no MSA segment in the ACK for {control!r}: {frame[:120]!r}"


async def connection(run, host, port, number):
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), run.timeout)
    except (OSError, asyncio.TimeoutError) as e:
        run.error(f"connection {number}: cannot connect to {host}:{port}: {e!r}")
        return
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while (i := run.take()) is not None:
            control, frame = run.frames[i]
            t0 = time.perf_counter_ns()
            writer.write(frame)
            try:
                ack = await asyncio.wait_for(reader.readuntil(EB + CR), run.timeout)
            except asyncio.TimeoutError:
                run.error(f"connection {number}: no ACK for {control!r} within {run.timeout} s; "
                          "closing this connection")
                return
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                run.error(f"connection {number}: lost while waiting for the ACK of {control!r}: {e!r}")
                return
            t1 = time.perf_counter_ns()
            run.latencies.append(t1 - t0)
            run.last_ack = t1
            why = check_ack(ack, control)
            if why is not None:
                run.error(why)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


def percentile(sorted_ns, p):
    """Nearest-rank percentile of sorted nanoseconds, in milliseconds."""
    if not sorted_ns:
        return None
    rank = max(1, -(-len(sorted_ns) * p // 100))
    return round(sorted_ns[rank - 1] / 1e6, 3)


async def main_async(args, frames):
    run = Run(frames, args.timeout)
    start = time.perf_counter_ns()
    await asyncio.gather(*(connection(run, args.host, args.port, k)
                           for k in range(args.connections)))
    end = run.last_ack or time.perf_counter_ns()
    return run, (end - start) / 1e9


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 is allowed")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for each ACK (default 10)")
    parser.add_argument("--id-prefix", default="BENCH",
                        help="start of each MSH-10 (default BENCH)")
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        parser.error("--host: this benchmark only sends to 127.0.0.1")
    if args.connections < 1 or args.messages < 1:
        parser.error("--connections and --messages must be at least 1")

    frames = [message(i, args.id_prefix) for i in range(args.messages)]
    run, seconds = asyncio.run(main_async(args, frames))
    latencies = sorted(run.latencies)
    answered = len(latencies)
    unsent = args.messages - run.next
    if unsent:
        run.error(f"{unsent} message(s) never sent: every connection stopped")
    print(json.dumps({
        "messages": answered,
        "connections": args.connections,
        "seconds": round(seconds, 3),
        "messages_per_s": round(answered / seconds, 1) if seconds > 0 else None,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": round(latencies[-1] / 1e6, 3) if latencies else None,
        "errors": run.errors,
    }))
    return 1 if run.errors or answered != args.messages else 0


if __name__ == "__main__":
    sys.exit(main())
