#!/usr/bin/env python3
"""Check the committed corpus against itself and against a reference
implementation of studywatch's "intact" rules (shared/DESIGN.md).

    python3 test-dicom/verify.py

1. Regenerates the corpus into a temporary directory and checks that every
   file and the MANIFEST are byte-identical to the committed ones.
2. Parses every file with DCMTK's /usr/bin/dcmdump (when installed): valid
   files must parse without a message; compressed valid files must also
   decompress with dcmdjpeg / dcmdjpls / dcmdrle (and opj_decompress for
   JPEG 2000, when installed).
3. Runs the small, independent checker below over each MANIFEST row (with
   the row's command UIDs) and checks that it reaches the expected status
   and that its own comment contains the expected substring.

The checker applies the rules in this order: the data set parses to its end
(else C000 "truncated"/"unparseable"); Study/Series/SOP Instance UID present
and valid (C000 naming the attribute); SOP Class/Instance UID equal the
command's (A900); pixel data consistent with its attributes (C000).
Exit status 0 when everything holds, 1 otherwise.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
TS_DEFLATED_LE = "1.2.840.10008.1.2.1.99"
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
          "1.2.840.10008.1.2.1.99"}
VIDEO = {"1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102",
         "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105",
         "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"}
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
            b"UT", b"UV"}
# Tags that are SQ, needed for implicit VR (only those the corpus can contain
# are essential; unknown undefined-length elements are treated as SQ too).
SQ_TAGS = {0x0040A043, 0x0040A073, 0x0040A088, 0x0040A372, 0x0040A375, 0x00081115,
           0x00081199, 0x0040A730, 0x00081032, 0x00081140, 0x0040A370}

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class Truncated(Exception):
    pass


class Malformed(Exception):
    pass


def valid_uid(raw: bytes) -> bool:
    s = raw.rstrip(b"\x00").decode("ascii", "replace")
    return 0 < len(s) <= 64 and UID_RE.match(s) is not None


def split_part10(data: bytes) -> tuple[dict[int, bytes], int]:
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Malformed("no DICM prefix")
    pos = 132
    tag, = struct.unpack_from("<I", data, pos)
    if data[pos:pos + 4] != b"\x02\x00\x00\x00" or data[pos + 4:pos + 6] != b"UL":
        raise Malformed("no (0002,0000) group length")
    glen, = struct.unpack_from("<I", data, pos + 8)
    end = pos + 12 + glen
    meta = {}
    p = pos + 12
    while p < end:
        g, e = struct.unpack_from("<HH", data, p)
        vr = data[p + 4:p + 6]
        if vr in LONG_VRS:
            ln, = struct.unpack_from("<I", data, p + 8)
            p += 12
        else:
            ln, = struct.unpack_from("<H", data, p + 6)
            p += 8
        meta[(g << 16) | e] = data[p:p + ln]
        p += ln
    return meta, end


class Parser:
    def __init__(self, buf: bytes, implicit: bool, little: bool) -> None:
        self.buf, self.implicit = buf, implicit
        self.e = "<" if little else ">"

    def need(self, pos: int, n: int) -> None:
        if pos + n > len(self.buf):
            raise Truncated(f"data set truncated at byte {pos} (needs {n} more)")

    def header(self, pos: int) -> tuple[int, bytes | None, int, int]:
        self.need(pos, 8)
        g, el = struct.unpack_from(self.e + "HH", self.buf, pos)
        tag = (g << 16) | el
        if g == 0xFFFE or self.implicit:
            ln, = struct.unpack_from(self.e + "I", self.buf, pos + 4)
            return tag, None, ln, pos + 8
        vr = self.buf[pos + 4:pos + 6]
        if vr in LONG_VRS:
            self.need(pos, 12)
            ln, = struct.unpack_from(self.e + "I", self.buf, pos + 8)
            return tag, vr, ln, pos + 12
        ln, = struct.unpack_from(self.e + "H", self.buf, pos + 6)
        return tag, vr, ln, pos + 8

    def dataset(self, pos: int, end: int | None, top: dict | None = None) -> int:
        """Parse elements from pos until end (or an item delimiter when end is
        None).  Top-level elements go into `top`.  Returns the end position."""
        while True:
            if end is not None and pos >= end:
                if pos > end:
                    raise Malformed("element overruns its item")
                return pos
            if end is None and pos >= len(self.buf):
                raise Truncated("data set truncated inside an undefined-length item")
            tag, vr, ln, vpos = self.header(pos)
            if tag == 0xFFFEE00D:
                if end is not None:
                    raise Malformed("stray item delimiter")
                return vpos
            if tag >> 16 == 0xFFFE:
                raise Malformed(f"unexpected item tag {tag:08X} in a data set")
            is_sq = vr == b"SQ" or (vr is None and (tag in SQ_TAGS or ln == 0xFFFFFFFF)
                                    and tag != 0x7FE00010)
            if ln == 0xFFFFFFFF:
                if is_sq:
                    items, npos = self.sequence(vpos, None)
                    value = ("SQ", items)
                else:
                    frags, npos = self.fragments(vpos)
                    value = ("ENCAPS", frags)
            else:
                self.need(vpos, ln)
                npos = vpos + ln
                if is_sq:
                    items, _ = self.sequence(vpos, npos)
                    value = ("SQ", items)
                else:
                    value = (vr.decode() if vr else "??", self.buf[vpos:npos])
            if top is not None:
                top[tag] = value
            pos = npos

    def sequence(self, pos: int, end: int | None) -> tuple[int, int]:
        n = 0
        while True:
            if end is not None and pos >= end:
                return n, pos
            tag, _, ln, vpos = self.header(pos)
            if tag == 0xFFFEE0DD:
                if end is not None:
                    raise Malformed("sequence delimiter in a defined-length sequence")
                return n, vpos
            if tag != 0xFFFEE000:
                raise Malformed(f"expected an item, found {tag:08X}")
            if ln == 0xFFFFFFFF:
                pos = self.dataset(vpos, None)
            else:
                self.need(vpos, ln)
                pos = self.dataset(vpos, vpos + ln)
            n += 1

    def fragments(self, pos: int) -> tuple[list[bytes], int]:
        frags = []
        while True:
            self.need(pos, 8)
            g, el, ln = struct.unpack_from(self.e + "HHI", self.buf, pos)
            tag = (g << 16) | el
            if tag == 0xFFFEE0DD:
                return frags, pos + 8
            if tag != 0xFFFEE000 or ln == 0xFFFFFFFF:
                raise Malformed(f"bad encapsulated item {tag:08X}")
            self.need(pos + 8, ln)
            frags.append(self.buf[pos + 8:pos + 8 + ln])
            pos += 8 + ln


def check(data: bytes, cmd_class: str, cmd_inst: str) -> tuple[str, str]:
    """Return (status, error comment) as studywatch should answer."""
    try:
        meta, off = split_part10(data)
    except Malformed as e:
        return "C000", f"unparseable: {e}"
    ts = meta.get(0x00020010, b"").rstrip(b"\x00 ").decode()
    body = data[off:]
    if ts == TS_DEFLATED_LE:
        d = zlib.decompressobj(-15)
        try:
            body = d.decompress(body) + d.flush()
        except zlib.error as e:
            return "C000", f"unparseable deflate stream: {e}"
        if not d.eof:
            return "C000", "deflate stream truncated"
        if d.unused_data.strip(b"\x00"):
            return "C000", "data after the end of the deflate stream"
    p = Parser(body, implicit=ts == TS_IMPLICIT_LE, little=ts != TS_EXPLICIT_BE)
    top: dict = {}
    try:
        p.dataset(0, len(body), top)
    except Truncated as e:
        return "C000", f"truncated: {e}"
    except Malformed as e:
        return "C000", f"unparseable: {e}"

    def raw(tag: int) -> bytes | None:
        v = top.get(tag)
        return None if v is None else v[1]

    for tag, name in ((0x0020000D, "StudyInstanceUID"), (0x0020000E, "SeriesInstanceUID"),
                      (0x00080018, "SOPInstanceUID"), (0x00080016, "SOPClassUID")):
        v = raw(tag)
        if v is None:
            return "C000", f"{name} missing"
        if not valid_uid(v):
            return "C000", f"{name} is not a valid UID"
    if raw(0x00080016).rstrip(b"\x00 ").decode() != cmd_class:
        return "A900", "SOP Class UID in data set differs from the command"
    if raw(0x00080018).rstrip(b"\x00 ").decode() != cmd_inst:
        return "A900", "SOP Instance UID in data set differs from the command"

    pix = top.get(0x7FE00010)
    if pix is None:
        return "0000", ""

    def us(tag: int, default: int | None = None) -> int:
        v = raw(tag)
        if v is None:
            if default is None:
                raise KeyError(tag)
            return default
        return struct.unpack(p.e + "H", v[:2])[0]

    def text(tag: int, default: str) -> str:
        v = raw(tag)
        return default if v is None else v.decode("ascii", "replace").strip(" \x00")

    try:
        frames = int(text(0x00280008, "1") or "1")
        rows, cols = us(0x00280010), us(0x00280011)
        bits, samples = us(0x00280100), us(0x00280002, 1)
    except (KeyError, ValueError):
        return "C000", "pixel data without usable Rows/Columns/Bits Allocated"
    photometric = text(0x00280004, "")
    if pix[0] == "ENCAPS":
        if ts in NATIVE:
            return "C000", "encapsulated pixel data in a native transfer syntax"
        if ts not in VIDEO and len(pix[1]) - 1 < frames:
            return "C000", (f"{len(pix[1]) - 1} pixel data fragments for {frames} frames")
        return "0000", ""
    if ts not in NATIVE:
        return "C000", "native pixel data in an encapsulated transfer syntax"
    if bits == 1:
        need = (rows * cols * samples * frames + 7) // 8
    elif photometric in ("YBR_FULL_422", "YBR_PARTIAL_422"):
        need = rows * cols * 2 * (bits // 8) * frames
    else:
        need = rows * cols * samples * (bits // 8) * frames
    need += need % 2
    have = len(pix[1])
    if have != need:
        return "C000", f"pixel data length {have}, attributes need {need}"
    return "0000", ""


def norm(s: str) -> str:
    return s.replace(" ", "").lower()


def read_manifest(path: Path) -> list[list[str]]:
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(None, 6)
        rows.append(parts + [""] * (7 - len(parts)))
    return rows


def main() -> int:
    failures = 0

    def fail(msg: str) -> None:
        nonlocal failures
        failures += 1
        print("FAIL", msg)

    # 1. byte-identical regeneration
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, str(HERE / "generate.py"), "--out", tmp],
                           capture_output=True, text=True)
        if r.returncode:
            fail(f"generate.py failed: {r.stderr}")
        else:
            fresh = sorted(p.relative_to(tmp) for p in Path(tmp).rglob("*") if p.is_file())
            committed = sorted(p.relative_to(HERE) for p in HERE.rglob("*.dcm"))
            committed.append(Path("MANIFEST"))
            if sorted(fresh) != sorted(committed):
                fail(f"file sets differ: {sorted(set(map(str, fresh)) ^ set(map(str, committed)))}")
            for rel in fresh:
                a, b = (Path(tmp) / rel).read_bytes(), (HERE / rel)
                if not b.exists() or a != b.read_bytes():
                    fail(f"{rel} is not byte-identical to a fresh generation")
            print(f"regeneration: {len(fresh)} files compared")

    rows = read_manifest(HERE / "MANIFEST")
    dcmdump = Path("/usr/bin/dcmdump")
    decoders = {"1.2.840.10008.1.2.4.50": "/usr/bin/dcmdjpeg",
                "1.2.840.10008.1.2.4.80": "/usr/bin/dcmdjpls",
                "1.2.840.10008.1.2.5": "/usr/bin/dcmdrle"}
    with tempfile.TemporaryDirectory() as tmp:
        for path, cls, inst, ts, status, sub, note in rows:
            f = HERE / path
            data = f.read_bytes()
            # 3. reference checker
            got, comment = check(data, cls, inst)
            ok = got == status and (sub == "-" or norm(sub) in norm(comment))
            print(f"{'ok  ' if ok else 'FAIL'} {path:42s} {got} {comment}")
            if not ok:
                failures += 1
            # 2. DCMTK
            if status != "0000" or not dcmdump.exists():
                continue
            r = subprocess.run([str(dcmdump), "-ll", "warn", str(f)], capture_output=True,
                               text=True)
            if r.returncode or r.stderr.strip():
                fail(f"dcmdump {path}: rc={r.returncode} {r.stderr.strip()[:200]}")
            dec = decoders.get(ts)
            if dec and Path(dec).exists():
                r = subprocess.run([dec, str(f), str(Path(tmp) / "out.dcm")],
                                   capture_output=True, text=True)
                if r.returncode:
                    fail(f"{dec} {path}: {r.stderr.strip()[:200]}")
            if ts == "1.2.840.10008.1.2.4.90" and shutil.which("opj_decompress"):
                frags = []
                meta, off = split_part10(data)
                pr = Parser(data[off:], False, True)
                top: dict = {}
                pr.dataset(0, len(data) - off, top)
                for i, frag in enumerate(top[0x7FE00010][1][1:]):
                    j2k = Path(tmp) / f"f{i}.j2k"
                    j2k.write_bytes(frag.rstrip(b"\x00") if frag.endswith(b"\xff\xd9\x00")
                                    else frag)
                    r = subprocess.run(["opj_decompress", "-i", str(j2k), "-o",
                                        str(Path(tmp) / f"f{i}.pgm")], capture_output=True,
                                       text=True)
                    if r.returncode:
                        fail(f"opj_decompress {path} frame {i}: {r.stderr.strip()[:200]}")
    total = sum(p.stat().st_size for p in HERE.rglob("*.dcm"))
    print(f"{len(rows)} manifest rows, corpus {total} bytes, {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
