#!/usr/bin/env python3
"""rawstore -- a C-STORE SCU that sends any bytes under any command.

For studywatch's integration tests.  The data set is sent exactly as it is in
the file after the Part 10 file meta information (no decoding, no
re-encoding, no transcoding): truncated, mismatched or malformed data sets
reach the peer untouched.  The command's Affected SOP Class/Instance UID and
the proposed presentation context come from the options or the MANIFEST, not
from the data set.

    rawstore.py --host 127.0.0.1 --port 11112 --aet CALLER --aec STUDYWATCH \\
        --sop-class UID --sop-instance UID --ts UID FILE
    rawstore.py --host 127.0.0.1 --port 11112 --aec STUDYWATCH \\
        --manifest test-dicom/MANIFEST test-dicom/valid/*.dcm

One association; files are sent in the order given.  For each file one JSON
line goes to stdout:
    {"file": PATH, "status": INT, "error_comment": STR|null}
(status is null, with an "error" key, when the file could not be sent, e.g.
its presentation context was not accepted).  With --check, each line also
carries "expected_status" and "ok" from the MANIFEST row.

Where the UIDs come from, per file: --sop-class/--sop-instance/--ts (only
with a single FILE) > the MANIFEST row whose path (relative to the MANIFEST's
directory) is this file > the file's own meta (Media Storage SOP Class/
Instance UID, Transfer Syntax UID).

Exit status: 0 every exchange completed (whatever the statuses); 1 some file
could not be sent (unreadable, no accepted presentation context) or, with
--check, some status or comment differed from the MANIFEST; 2 the association
was rejected or aborted, or no connection could be made (a JSON line
{"association": "rejected"|"aborted"|"failed", ...} says which); 64 usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import struct
import sys
import time
from io import BytesIO
from pathlib import Path

from pydicom import config as pydicom_config
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE

# Deliberately malformed command UIDs must be encoded without complaint.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
            b"UT", b"UV"}


class UsageError(Exception):
    pass


def split_part10(data: bytes) -> tuple[dict[str, str], bytes]:
    """Return (file meta UIDs, raw data set bytes after the meta group).

    Requires the 128-byte preamble, 'DICM' and a (0002,0000) group length
    (explicit VR little endian, as Part 10 mandates)."""
    if len(data) < 144 or data[128:132] != b"DICM":
        raise ValueError("not a DICOM Part 10 file (no 'DICM' at offset 128)")
    pos = 132
    if data[pos:pos + 6] != b"\x02\x00\x00\x00UL":
        raise ValueError("file meta does not start with (0002,0000) UL group length")
    glen, = struct.unpack_from("<I", data, pos + 8)
    end = pos + 12 + glen
    if end > len(data):
        raise ValueError("file meta group length runs past the end of the file")
    names = {0x0002: "sop_class", 0x0003: "sop_instance", 0x0010: "ts"}
    meta: dict[str, str] = {}
    p = pos + 12
    while p + 8 <= end:
        group, elem = struct.unpack_from("<HH", data, p)
        vr = data[p + 4:p + 6]
        if vr in LONG_VRS:
            ln, = struct.unpack_from("<I", data, p + 8)
            p += 12
        else:
            ln, = struct.unpack_from("<H", data, p + 6)
            p += 8
        if group == 0x0002 and elem in names:
            meta[names[elem]] = data[p:p + ln].rstrip(b"\x00 ").decode("ascii", "replace")
        p += ln
    return meta, data[end:]


def read_manifest(path: Path) -> dict[Path, dict[str, str]]:
    rows: dict[Path, dict[str, str]] = {}
    base = path.resolve().parent
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 6)
        if len(parts) < 6:
            raise UsageError(f"{path}: malformed line: {line!r}")
        rel, cls, inst, ts, status, comment = parts[:6]
        rows[(base / rel).resolve()] = dict(sop_class=cls, sop_instance=inst, ts=ts,
                                            expected_status=status, expected_comment=comment)
    return rows


def set_uid_lenient(req: C_STORE, attr: str, value: str) -> None:
    """Set a command UID, also when pynetdicom would refuse it (e.g. > 64
    characters): tests may deliberately send malformed commands."""
    try:
        setattr(req, attr, value)
    except ValueError:
        private = {"AffectedSOPClassUID": "_affected_sop_class_uid",
                   "AffectedSOPInstanceUID": "_affected_sop_instance_uid"}[attr]
        setattr(req, private, UID(value))


def norm(s: str) -> str:
    return s.replace(" ", "").lower()


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def assoc_failure(assoc, connected: bool) -> dict:
    if not connected:
        return {"association": "failed", "reason": "could not connect"}
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        out = {"association": "rejected", "result": rsp.result, "source": rsp.result_source,
               "reason": rsp.diagnostic}
        try:
            out["description"] = f"{rsp.result_str}; {rsp.source_str}; {rsp.reason_str}"
        except Exception:  # noqa: BLE001 - description is best effort
            pass
        return out
    rsp = assoc.acceptor.primitive
    if rsp is not None and getattr(rsp, "result", None) == 0:
        # accepted, but pynetdicom aborts at once when no context was accepted
        return {"association": "aborted", "reason": "no presentation context accepted"}
    if assoc.is_aborted:
        return {"association": "aborted"}
    return {"association": "failed", "reason": "no A-ASSOCIATE response (ACSE timeout)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="C-STORE SCU sending data sets byte-for-byte under any command.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--aet", default="RAWSTORE", help="calling AE title (default RAWSTORE)")
    ap.add_argument("--aec", default="STUDYWATCH", help="called AE title (default STUDYWATCH)")
    ap.add_argument("--sop-class", help="Affected SOP Class UID and abstract syntax")
    ap.add_argument("--sop-instance", help="Affected SOP Instance UID")
    ap.add_argument("--ts", help="transfer syntax to propose (default: the file's)")
    ap.add_argument("--manifest", type=Path, help="test-dicom/MANIFEST: per-file UIDs")
    ap.add_argument("--check", action="store_true",
                    help="compare each status/comment with the MANIFEST row")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="connection, ACSE, DIMSE and network timeout in seconds")
    ap.add_argument("--max-pdu", type=int, default=16382,
                    help="our maximum PDU receive length (0 = unlimited)")
    ap.add_argument("--priority", type=int, choices=(0, 1, 2), default=0,
                    help="C-STORE priority: 0 medium, 1 high, 2 low")
    ap.add_argument("-v", "--verbose", action="store_true", help="pynetdicom debug log on stderr")
    ap.add_argument("files", nargs="+", type=Path, metavar="FILE")
    args = ap.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, format="%(levelname)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)

    try:
        explicit = any(v is not None for v in (args.sop_class, args.sop_instance, args.ts))
        if explicit and len(args.files) > 1 and (args.sop_class or args.sop_instance):
            raise UsageError("--sop-class/--sop-instance apply to a single FILE; "
                             "use --manifest for several")
        if args.check and not args.manifest:
            raise UsageError("--check needs --manifest")
        manifest = read_manifest(args.manifest) if args.manifest else {}
    except (UsageError, OSError) as e:
        print(f"rawstore: {e}", file=sys.stderr)
        return 64

    # Work out each file's command and context before opening the association.
    jobs = []
    unsendable = False
    for f in args.files:
        job = {"file": str(f)}
        try:
            meta, raw = split_part10(f.read_bytes())
        except (OSError, ValueError) as e:
            job["error"] = str(e)
            jobs.append(job)
            continue
        row = manifest.get(f.resolve(), {})
        if args.manifest and not row and not explicit:
            print(f"rawstore: warning: {f} not in {args.manifest}; using its file meta",
                  file=sys.stderr)
        job["sop_class"] = args.sop_class or row.get("sop_class") or meta.get("sop_class")
        job["sop_instance"] = (args.sop_instance or row.get("sop_instance")
                               or meta.get("sop_instance"))
        job["ts"] = args.ts or row.get("ts") or meta.get("ts")
        job["row"] = row
        job["raw"] = raw
        missing = [k for k in ("sop_class", "sop_instance", "ts") if not job[k]]
        if missing:
            job["error"] = f"no {', '.join(missing)} for this file (give options or --manifest)"
        jobs.append(job)

    ae = AE(ae_title=args.aet)
    ae.maximum_pdu_size = args.max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = args.timeout
    ae.connection_timeout = args.timeout
    contexts = []
    for job in jobs:
        if "error" in job:
            continue
        key = (job["sop_class"], job["ts"])
        if key not in contexts:
            contexts.append(key)
    if len(contexts) > 128:
        print("rawstore: more than 128 distinct (SOP class, transfer syntax) pairs",
              file=sys.stderr)
        return 64

    if not contexts:
        for job in jobs:
            emit({"file": job["file"], "status": None, "error_comment": None,
                  "error": job.get("error", "nothing to send")})
        return 1
    for cls, ts in contexts:
        ae.add_requested_context(cls, ts)

    connected = []
    assoc = ae.associate(args.host, args.port, ae_title=args.aec,
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(1))])
    if not assoc.is_established:
        emit(assoc_failure(assoc, bool(connected)))
        return 2

    accepted = {}
    for cx in assoc.accepted_contexts:
        accepted[(str(cx.abstract_syntax), str(cx.transfer_syntax[0]))] = cx.context_id

    mismatches = 0
    msg_id = 0
    for job in jobs:
        out = {"file": job["file"]}
        if "error" in job:
            emit({**out, "status": None, "error_comment": None, "error": job["error"]})
            unsendable = True
            continue
        cx_id = accepted.get((job["sop_class"], job["ts"]))
        if cx_id is None:
            emit({**out, "status": None, "error_comment": None,
                  "error": f"presentation context {job['sop_class']} / {job['ts']} not accepted"})
            unsendable = True
            continue
        msg_id = (msg_id % 65535) + 1
        req = C_STORE()
        req.MessageID = msg_id
        req.Priority = args.priority
        set_uid_lenient(req, "AffectedSOPClassUID", job["sop_class"])
        set_uid_lenient(req, "AffectedSOPInstanceUID", job["sop_instance"])
        req.DataSet = BytesIO(job["raw"])

        # Same dance as Association.send_c_store: pause the reactor so the
        # response is left for us on the DIMSE queue.
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused and assoc.is_established:
            time.sleep(0.0001)
        try:
            assoc.dimse.send_msg(req, cx_id)
            _, rsp = assoc.dimse.get_msg(block=True)
        finally:
            assoc._reactor_checkpoint.set()

        if rsp is None:
            emit({**out, "status": None, "error_comment": None,
                  "error": "no response (association aborted or DIMSE timeout)"})
            if assoc.is_established:
                assoc.abort()
            emit({"association": "aborted"})
            return 2
        if (not isinstance(rsp, C_STORE) or not rsp.is_valid_response
                or rsp.MessageIDBeingRespondedTo != msg_id):
            emit({**out, "status": None, "error_comment": None,
                  "error": f"invalid response {type(rsp).__name__}"})
            assoc.abort()
            emit({"association": "aborted"})
            return 2
        out["status"] = int(rsp.Status)
        comment = getattr(rsp, "ErrorComment", None)
        out["error_comment"] = None if comment is None else str(comment)
        if args.check:
            row = job["row"]
            exp = row.get("expected_status")
            if exp is None:
                out["expected_status"] = None
                out["ok"] = False
            else:
                out["expected_status"] = int(exp, 16)
                want = row.get("expected_comment", "-")
                ok = out["status"] == int(exp, 16) and (
                    want == "-" or norm(want) in norm(out["error_comment"] or ""))
                out["ok"] = ok
            if not out["ok"]:
                mismatches += 1
        emit(out)
        if not assoc.is_established:
            emit({"association": "aborted"})
            return 2

    assoc.release()
    return 1 if (unsendable or mismatches) else 0


if __name__ == "__main__":
    sys.exit(main())
