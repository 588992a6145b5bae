#!/usr/bin/env python3
"""Deterministic generator of studywatch's DICOM test corpus.

    python3 test-dicom/generate.py

writes test-dicom/valid/*.dcm, test-dicom/invalid/*.dcm and test-dicom/MANIFEST.
Running it twice gives byte-identical files (fixed UIDs, dates and seeded
pixels; no clock, no randomness, no floating point in the codecs).

Needs Python >= 3.10 and pydicom 3.0.x (used only to encode data elements).
The compressed pixel data is produced by small pure-Python encoders in this
file (JPEG baseline, JPEG-LS lossless, RLE, a minimal JPEG 2000 codestream),
so no image library is needed.

All people, places and identifiers in the corpus are made up.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import zlib
from pathlib import Path

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence

# Values that are deliberately invalid (bad UIDs) must be written as given.
pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# Fixed identifiers
# --------------------------------------------------------------------------

ROOT = "1.2.826.0.1.3680043.10.1234"  # made-up root for this corpus
IMPLEMENTATION_CLASS_UID = ROOT + ".0.1"
IMPLEMENTATION_VERSION_NAME = "SW_TESTCORPUS_1"

TS_IMPLICIT_LE = "1.2.840.10008.1.2"
TS_EXPLICIT_LE = "1.2.840.10008.1.2.1"
TS_DEFLATED_LE = "1.2.840.10008.1.2.1.99"
TS_EXPLICIT_BE = "1.2.840.10008.1.2.2"
TS_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
TS_JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
TS_J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
TS_RLE = "1.2.840.10008.1.2.5"

SC_CR = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
SC_CT = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
SC_MR = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
SC_US = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
SC_US_MF = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
SC_SC = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
SC_SC_MF_BIT = "1.2.840.10008.5.1.4.1.1.7.1"  # Multi-frame Single Bit SC
SC_SC_MF_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte SC
SC_XA = "1.2.840.10008.5.1.4.1.1.12.1"  # X-Ray Angiographic Image Storage
SC_BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def study_uid(n: int) -> str:
    return f"{ROOT}.1.{n}"


def series_uid(n: int, s: int) -> str:
    return f"{ROOT}.1.{n}.{s}"


def instance_uid(n: int, s: int, i: int) -> str:
    return f"{ROOT}.1.{n}.{s}.{i}"


def frame_of_reference_uid(key: str) -> str:
    """A valid UID derived from any string (also from a deliberately bad one),
    so that only the attribute under test is ever invalid."""
    return f"{ROOT}.2.{int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)}"


# --------------------------------------------------------------------------
# Seeded pseudo-random numbers (xorshift32: stable forever, no stdlib RNG)
# --------------------------------------------------------------------------


class Rng:
    def __init__(self, seed: int) -> None:
        self.state = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 1

    def next(self) -> int:
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n: int) -> int:
        return self.next() % n


def phantom(rows: int, cols: int, maxval: int, seed: int, frame: int = 0,
            noise: int = 4) -> list[list[int]]:
    """A smooth test image: gradient + a bright disc that moves per frame +
    a little seeded noise.  Values in [0, maxval]."""
    rng = Rng(seed * 1000 + frame)
    cy = rows // 2
    cx = cols // 3 + frame * (cols // 8)
    r2 = (min(rows, cols) // 4) ** 2
    img = []
    for y in range(rows):
        row = []
        for x in range(cols):
            v = (x * maxval) // (4 * max(cols - 1, 1)) + (y * maxval) // (4 * max(rows - 1, 1))
            if (y - cy) ** 2 + (x - cx) ** 2 <= r2:
                v += maxval // 3
            if noise:
                v += rng.below(2 * noise + 1) - noise
            row.append(min(max(v, 0), maxval))
        img.append(row)
    return img


def u8(img: list[list[int]]) -> bytes:
    return bytes(v for row in img for v in row)


def u16le(img: list[list[int]]) -> bytes:
    return b"".join(struct.pack("<H", v) for row in img for v in row)


def u16be(img: list[list[int]]) -> bytes:
    return b"".join(struct.pack(">H", v) for row in img for v in row)


# --------------------------------------------------------------------------
# Codec 1: JPEG baseline (ISO 10918-1, process 1), 8-bit greyscale.
# Integer-only forward DCT so the output does not depend on libm.
# --------------------------------------------------------------------------

ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]

STD_LUMA_Q = [
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
]

# Annex K.3 standard Huffman tables (luminance).
DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
DC_VALS = list(range(12))
AC_BITS = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]
AC_VALS = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06,
    0x13, 0x51, 0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08,
    0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72,
    0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
    0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
    0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75,
    0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3,
    0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
    0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9,
    0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4,
    0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
]

# DCT basis scaled by 2^12: T[u][x] = round(4096 * C(u)/2 * cos((2x+1)u*pi/16)).
# Written out so that no libm is involved.
DCT_T = [
    [1448, 1448, 1448, 1448, 1448, 1448, 1448, 1448],
    [2009, 1703, 1138, 400, -400, -1138, -1703, -2009],
    [1892, 784, -784, -1892, -1892, -784, 784, 1892],
    [1703, -400, -2009, -1138, 1138, 2009, 400, -1703],
    [1448, -1448, -1448, 1448, 1448, -1448, -1448, 1448],
    [1138, -2009, 400, 1703, -1703, -400, 2009, -1138],
    [784, -1892, 1892, -784, -784, 1892, -1892, 784],
    [400, -1138, 1703, -2009, 2009, -1703, 1138, -400],
]


def huffman_codes(bits: list[int], vals: list[int]) -> dict[int, tuple[int, int]]:
    codes = {}
    code = 0
    k = 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


class JpegBitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, nbits: int) -> None:
        for i in range(nbits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0x00)  # byte stuffing
                self.acc = 0
                self.n = 0

    def flush(self) -> bytes:
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1-bits
        return bytes(self.out)


def _jpeg_category(v: int) -> tuple[int, int]:
    a = abs(v)
    s = a.bit_length()
    bits = v if v >= 0 else v + (1 << s) - 1
    return s, bits


def jpeg_baseline_encode(img: list[list[int]], quality: int = 90) -> bytes:
    rows, cols = len(img), len(img[0])
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    qt = [min(255, max(1, (q * scale + 50) // 100)) for q in STD_LUMA_Q]
    dc_codes = huffman_codes(DC_BITS, DC_VALS)
    ac_codes = huffman_codes(AC_BITS, AC_VALS)
    bw = JpegBitWriter()
    pred = 0
    for by in range(0, rows, 8):
        for bx in range(0, cols, 8):
            # level-shifted block, edges replicated
            f = [[img[min(by + y, rows - 1)][min(bx + x, cols - 1)] - 128 for x in range(8)]
                 for y in range(8)]
            r = [[sum(DCT_T[u][x] * f[y][x] for x in range(8)) for u in range(8)] for y in range(8)]
            coef = [0] * 64
            for v in range(8):
                for u in range(8):
                    num = sum(DCT_T[v][y] * r[y][u] for y in range(8))
                    den = qt[v * 8 + u] << 24
                    q = (abs(num) + den // 2) // den
                    coef[v * 8 + u] = q if num >= 0 else -q
            zz = [coef[ZIGZAG[k]] for k in range(64)]
            diff = zz[0] - pred
            pred = zz[0]
            s, bits = _jpeg_category(diff)
            bw.write(*dc_codes[s])
            if s:
                bw.write(bits, s)
            run = 0
            for k in range(1, 64):
                if zz[k] == 0:
                    run += 1
                    continue
                while run > 15:
                    bw.write(*ac_codes[0xF0])
                    run -= 16
                s, bits = _jpeg_category(zz[k])
                bw.write(*ac_codes[(run << 4) | s])
                bw.write(bits, s)
                run = 0
            if run:
                bw.write(*ac_codes[0x00])  # EOB
    scan = bw.flush()

    def seg(marker: int, payload: bytes) -> bytes:
        return struct.pack(">HH", marker, len(payload) + 2) + payload

    out = bytearray(b"\xFF\xD8")
    out += seg(0xFFDB, bytes([0x00]) + bytes(qt[ZIGZAG[k]] for k in range(64)))
    out += seg(0xFFC0, struct.pack(">BHHB", 8, rows, cols, 1) + bytes([1, 0x11, 0]))
    out += seg(0xFFC4, bytes([0x00]) + bytes(DC_BITS) + bytes(DC_VALS))
    out += seg(0xFFC4, bytes([0x10]) + bytes(AC_BITS) + bytes(AC_VALS))
    out += seg(0xFFDA, bytes([1, 1, 0x00, 0, 63, 0]))
    out += scan
    out += b"\xFF\xD9"
    return bytes(out)


# --------------------------------------------------------------------------
# Codec 2: JPEG-LS lossless (ITU-T T.87), one component, NEAR = 0,
# default thresholds, regular and run mode.
# --------------------------------------------------------------------------

JLS_J = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
         4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15]


class JlsBitWriter:
    """MSB-first writer with JPEG-LS marker stuffing: after a 0xFF byte the
    next byte carries only 7 bits (its top bit is a stuffed 0)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0
        self.cap = 8

    def bit(self, b: int) -> None:
        self.acc = (self.acc << 1) | b
        self.n += 1
        if self.n == self.cap:
            self.out.append(self.acc)
            self.cap = 7 if self.acc == 0xFF else 8
            self.acc = 0
            self.n = 0

    def bits(self, value: int, nbits: int) -> None:
        for i in range(nbits - 1, -1, -1):
            self.bit((value >> i) & 1)

    def flush(self) -> bytes:
        if self.n:
            self.out.append(self.acc << (self.cap - self.n))
        if self.out and self.out[-1] == 0xFF:
            self.out.append(0x00)
        return bytes(self.out)


def jpegls_encode(img: list[list[int]], precision: int) -> bytes:
    rows, cols = len(img), len(img[0])
    maxval = (1 << precision) - 1
    rng = maxval + 1
    qbpp = precision
    bpp = max(2, precision)
    limit = 2 * (bpp + max(8, bpp))
    reset = 64
    if maxval >= 128:
        factor = (min(maxval, 4095) + 128) >> 8
        t1 = min(max(factor * (3 - 2) + 2, 1), maxval)
        t2 = min(max(factor * (7 - 3) + 3, t1), maxval)
        t3 = min(max(factor * (21 - 4) + 4, t2), maxval)
    else:
        factor = 256 // (maxval + 1)
        t1 = min(max(max(2, 3 // factor), 1), maxval)
        t2 = min(max(max(3, 7 // factor), t1), maxval)
        t3 = min(max(max(4, 21 // factor), t2), maxval)

    a_init = max(2, (rng + 32) // 64)
    A = [a_init] * 367
    B = [0] * 367
    C = [0] * 367
    N = [1] * 367
    Nn = [0] * 367
    run_index = 0
    bw = JlsBitWriter()

    def quant(d: int) -> int:
        if d <= -t3:
            return -4
        if d <= -t2:
            return -3
        if d <= -t1:
            return -2
        if d < 0:
            return -1
        if d == 0:
            return 0
        if d < t1:
            return 1
        if d < t2:
            return 2
        if d < t3:
            return 3
        return 4

    def modrange(e: int) -> int:
        if e < 0:
            e += rng
        if e >= (rng + 1) // 2:
            e -= rng
        return e

    def golomb(mapped: int, k: int, lim: int) -> None:
        high = mapped >> k
        if high < lim - qbpp - 1:
            bw.bits(1, high + 1)  # high zeros then a one
            if k:
                bw.bits(mapped & ((1 << k) - 1), k)
        else:
            bw.bits(1, lim - qbpp)  # (lim - qbpp - 1) zeros then a one
            bw.bits((mapped - 1) & ((1 << qbpp) - 1), qbpp)

    def encode_ri(q: int, ritype: int, err: int) -> None:
        temp = A[q] + (N[q] >> 1) * ritype
        k = 0
        while (N[q] << k) < temp:
            k += 1
        if k == 0 and err > 0 and 2 * Nn[q] < N[q]:
            mp = 1
        elif err < 0 and 2 * Nn[q] >= N[q]:
            mp = 1
        elif err < 0 and k != 0:
            mp = 1
        else:
            mp = 0
        em = 2 * abs(err) - ritype - mp
        golomb(em, k, limit - JLS_J[run_index] - 1)
        if err < 0:
            Nn[q] += 1
        A[q] += (em + 1 - ritype) >> 1
        if N[q] == reset:
            A[q] >>= 1
            N[q] >>= 1
            Nn[q] >>= 1
        N[q] += 1

    prev = [0] * (cols + 2)  # index 1..cols = samples; [0] = Rc source, [cols+1] = Rd at edge
    for y in range(rows):
        line = img[y]
        cur = [0] * (cols + 2)
        cur[1:cols + 1] = line
        cur[0] = prev[1]  # Ra of first sample = Rb
        prev[cols + 1] = prev[cols]  # Rd of last sample = Rb
        x = 1
        while x <= cols:
            ra = cur[x - 1]
            rb = prev[x]
            rc = prev[x - 1]
            rd = prev[x + 1]
            d1, d2, d3 = rd - rb, rb - rc, rc - ra
            if d1 == 0 and d2 == 0 and d3 == 0:
                # run mode
                run_len = 0
                remaining = cols - x + 1
                while run_len < remaining and cur[x + run_len] == ra:
                    run_len += 1
                eol = run_len == remaining
                rl = run_len
                while rl >= (1 << JLS_J[run_index]):
                    bw.bit(1)
                    rl -= 1 << JLS_J[run_index]
                    if run_index < 31:
                        run_index += 1
                if eol:
                    if rl:
                        bw.bit(1)
                    x += run_len
                    continue
                bw.bits(rl, JLS_J[run_index] + 1)  # a 0 bit, then rl in J bits
                x += run_len
                ix = cur[x]
                rb = prev[x]
                if ra == rb:
                    err = modrange(ix - ra)
                    encode_ri(366, 1, err)
                else:
                    sign = 1 if rb > ra else -1
                    err = modrange((ix - rb) * sign)
                    encode_ri(365, 0, err)
                if run_index > 0:
                    run_index -= 1
                x += 1
                continue
            # regular mode
            q1, q2, q3 = quant(d1), quant(d2), quant(d3)
            qs = 81 * q1 + 9 * q2 + q3
            sign = -1 if qs < 0 else 1
            q = abs(qs)
            if rc >= max(ra, rb):
                px = min(ra, rb)
            elif rc <= min(ra, rb):
                px = max(ra, rb)
            else:
                px = ra + rb - rc
            px += C[q] * sign
            px = min(max(px, 0), maxval)
            err = modrange((cur[x] - px) * sign)
            k = 0
            while (N[q] << k) < A[q]:
                k += 1
            if k == 0 and 2 * B[q] <= -N[q]:
                mapped = 2 * err + 1 if err >= 0 else -2 * (err + 1)
            else:
                mapped = 2 * err if err >= 0 else -2 * err - 1
            golomb(mapped, k, limit)
            B[q] += err
            A[q] += abs(err)
            if N[q] == reset:
                A[q] >>= 1
                B[q] >>= 1
                N[q] >>= 1
            N[q] += 1
            if B[q] <= -N[q]:
                B[q] += N[q]
                if C[q] > -128:
                    C[q] -= 1
                if B[q] <= -N[q]:
                    B[q] = -N[q] + 1
            elif B[q] > 0:
                B[q] -= N[q]
                if C[q] < 127:
                    C[q] += 1
                if B[q] > 0:
                    B[q] = 0
            x += 1
        prev = cur
    scan = bw.flush()
    out = bytearray(b"\xFF\xD8")
    out += b"\xFF\xF7" + struct.pack(">HBHHB", 11, precision, rows, cols, 1) + bytes([1, 0x11, 0])
    out += b"\xFF\xDA" + struct.pack(">HB", 8, 1) + bytes([1, 0, 0, 0, 0])  # NEAR=0 ILV=0
    out += scan
    out += b"\xFF\xD9"
    return bytes(out)


# --------------------------------------------------------------------------
# Codec 3: RLE Lossless (PS3.5 Annex G)
# --------------------------------------------------------------------------


def _packbits_row(row: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(row)
    while i < n:
        j = i + 1
        while j < n and j - i < 128 and row[j] == row[i]:
            j += 1
        if j - i >= 2:
            out.append(257 - (j - i))  # replicate run: -(len-1) as a byte
            out.append(row[i])
            i = j
            continue
        # literal run up to the next repeat of >= 2
        j = i + 1
        while j < n and j - i < 128 and not (j + 1 < n and row[j] == row[j + 1]):
            j += 1
        out.append(j - i - 1)
        out += row[i:j]
        i = j
    return bytes(out)


def rle_encode_frame(planes: list[bytes], cols: int) -> bytes:
    """planes: one byte plane per segment (most significant byte first, or
    R, G, B), each rows*cols bytes.  Rows are encoded separately."""
    segments = []
    for plane in planes:
        seg = b"".join(_packbits_row(plane[r:r + cols]) for r in range(0, len(plane), cols))
        if len(seg) % 2:
            seg += b"\x00"
        segments.append(seg)
    header = [len(segments)]
    off = 64
    for s in segments:
        header.append(off)
        off += len(s)
    header += [0] * (16 - len(header))
    return struct.pack("<16I", *header) + b"".join(segments)


# --------------------------------------------------------------------------
# Codec 4: minimal JPEG 2000 codestream (ISO 15444-1), lossless 5/3,
# 0 decomposition levels, one layer.  It codes a constant image of value
# 2^(precision-1): after the DC level shift every coefficient is zero, so
# the one packet is empty (a single 0x00 byte).  Real, decodable, lossless.
# --------------------------------------------------------------------------


def j2k_constant_encode(rows: int, cols: int, precision: int) -> bytes:
    siz = struct.pack(">HIIIIIIIIH", 0, cols, rows, 0, 0, cols, rows, 0, 0, 1)
    siz += bytes([precision - 1, 1, 1])
    cod = bytes([0x00, 0x00]) + struct.pack(">H", 1) + bytes([0, 0, 4, 4, 0, 1])
    qcd = bytes([0x40, precision << 3])  # 2 guard bits, no quantisation
    packet = b"\x00"  # empty packet header
    tile_body = b"\xFF\x93" + packet
    sot_len = 12
    psot = sot_len + len(tile_body)
    sot = b"\xFF\x90" + struct.pack(">HHIBB", 10, 0, psot, 0, 1)
    out = b"\xFF\x4F"
    out += b"\xFF\x51" + struct.pack(">H", len(siz) + 2) + siz
    out += b"\xFF\x52" + struct.pack(">H", len(cod) + 2) + cod
    out += b"\xFF\x5C" + struct.pack(">H", len(qcd) + 2) + qcd
    out += sot + tile_body
    out += b"\xFF\xD9"
    return out


# --------------------------------------------------------------------------
# Encapsulation (PS3.5 A.4)
# --------------------------------------------------------------------------


def item(data: bytes) -> bytes:
    if len(data) % 2:
        data += b"\x00"
    return b"\xFE\xFF\x00\xE0" + struct.pack("<I", len(data)) + data


def encapsulate(frames: list[bytes], with_offsets: bool = False) -> bytes:
    """Basic Offset Table item + one fragment item per frame.  The sequence
    delimiter is written by pydicom after the value (undefined length)."""
    items = [item(f) for f in frames]
    if with_offsets:
        offs, pos = [], 0
        for it in items:
            offs.append(pos)
            pos += len(it)
        bot = item(b"".join(struct.pack("<I", o) for o in offs))
    else:
        bot = item(b"")
    return bot + b"".join(items)


def set_encapsulated(ds: Dataset, value: bytes) -> None:
    ds.add_new(0x7FE00010, "OB", value)
    ds["PixelData"].is_undefined_length = True


# --------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------

PATIENT = dict(PatientName="TEST^CORPUS", PatientID="SWTEST0001",
               PatientBirthDate="19700101", PatientSex="O")


def base(sop_class: str, sop_instance: str | None, study: str, series: str, *,
         modality: str, accession: str, study_desc: str, series_desc: str,
         series_no: int = 1, instance_no: int = 1, date: str = "20260105",
         time: str = "101500") -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    if sop_instance is not None:
        ds.SOPInstanceUID = sop_instance
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.ContentDate = date
    ds.StudyTime = time
    ds.SeriesTime = time
    ds.ContentTime = time
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.Manufacturer = "STUDYWATCH TEST CORPUS"
    ds.InstitutionName = "STUDYWATCH TEST HOSPITAL"
    ds.ReferringPhysicianName = "TEST^REFERRER"
    ds.StudyDescription = study_desc
    ds.SeriesDescription = series_desc
    for k, v in PATIENT.items():
        setattr(ds, k, v)
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = series_no
    ds.InstanceNumber = instance_no
    return ds


def image_pixel(ds: Dataset, *, rows: int, cols: int, bits_alloc: int, bits_stored: int,
                samples: int = 1, photometric: str = "MONOCHROME2", signed: int = 0,
                frames: int | None = None) -> None:
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits_alloc
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = signed


def ct_like(sop_inst: str, study: str, series: str, accession: str, desc: str) -> Dataset:
    ds = base(SC_CT, sop_inst, study, series, modality="CT", accession=accession,
              study_desc=desc, series_desc="AXIAL 5MM")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.KVP = "120"
    ds.SliceThickness = "5"
    ds.ImagePositionPatient = [-160, -160, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = frame_of_reference_uid(sop_inst or series)
    ds.PixelSpacing = [5, 5]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    return ds


def mr_like(sop_inst: str, study: str, series: str, accession: str, desc: str) -> Dataset:
    ds = base(SC_MR, sop_inst, study, series, modality="MR", accession=accession,
              study_desc=desc, series_desc="T2 AX")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = "90"
    ds.RepetitionTime = "4000"
    ds.MagneticFieldStrength = "1.5"
    ds.ImagePositionPatient = [-160, -160, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = frame_of_reference_uid(sop_inst or series)
    ds.PixelSpacing = [5, 5]
    return ds


def sc_like(sop_class: str, sop_inst: str, study: str, series: str, accession: str,
            desc: str, modality: str = "OT") -> Dataset:
    ds = base(sop_class, sop_inst, study, series, modality=modality, accession=accession,
              study_desc=desc, series_desc="SECONDARY CAPTURE")
    ds.ConversionType = "WSD"
    return ds


# --------------------------------------------------------------------------
# Part 10 file assembly
# --------------------------------------------------------------------------


def encode_body(ds: Dataset, ts: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = ts != TS_EXPLICIT_BE
    fp.is_implicit_VR = ts == TS_IMPLICIT_LE
    write_dataset(fp, ds)
    body = fp.getvalue()
    if ts == TS_DEFLATED_LE:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY)
        body = c.compress(body) + c.flush()
        if len(body) % 2:
            body += b"\x00"  # as pydicom and DCMTK do: even length
    return body


def part10(meta_sop_class: str, meta_sop_instance: str, ts: str, body: bytes) -> bytes:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = meta_sop_class
    meta.MediaStorageSOPInstanceUID = meta_sop_instance
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + fp.getvalue() + body


class Entry:
    def __init__(self, path: str, data: bytes, sop_class: str, sop_instance: str, ts: str,
                 status: str, comment: str, note: str) -> None:
        self.path, self.data = path, data
        self.sop_class, self.sop_instance, self.ts = sop_class, sop_instance, ts
        self.status, self.comment, self.note = status, comment, note


ENTRIES: list[Entry] = []


def emit(path: str, ds: Dataset, ts: str, note: str, *, status: str = "0000",
         comment: str = "-", cmd_sop_class: str | None = None,
         cmd_sop_instance: str | None = None, meta_sop_instance: str | None = None,
         mutate=None) -> None:
    body = encode_body(ds, ts)
    if mutate is not None:
        body = mutate(body)
    data = part10(ds.SOPClassUID, meta_sop_instance or ds.SOPInstanceUID, ts, body)
    ENTRIES.append(Entry(path, data, cmd_sop_class or ds.SOPClassUID,
                         cmd_sop_instance or meta_sop_instance or ds.SOPInstanceUID,
                         ts, status, comment, note))


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------


def build_valid() -> None:
    # 1. CT, implicit VR little endian, 64x64 16-bit (12 stored)
    n = 1
    ds = ct_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0001",
                 "CT HEAD (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    ds.PixelData = u16le(phantom(64, 64, 4095, seed=n, noise=20))
    ds["PixelData"].VR = "OW"
    emit("valid/ct_implicit_le.dcm", ds, TS_IMPLICIT_LE,
         "CT 64x64 16-bit native, implicit VR LE; its study also holds sr_basic_text.dcm")

    # 2. MR, explicit VR little endian
    n = 2
    ds = mr_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0002",
                 "MR BRAIN (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    ds.PixelData = u16le(phantom(64, 64, 4095, seed=n, noise=30))
    ds["PixelData"].VR = "OW"
    emit("valid/mr_explicit_le.dcm", ds, TS_EXPLICIT_LE, "MR 64x64 16-bit native, explicit VR LE")

    # 3. CR, explicit VR big endian (retired TS, old equipment)
    n = 3
    ds = base(SC_CR, instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1),
              modality="CR", accession="SWT0003", study_desc="XR CHEST (TEST)",
              series_desc="PA")
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.ImagerPixelSpacing = [0.5, 0.5]
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=10,
                photometric="MONOCHROME1")
    ds.PixelData = u16be(phantom(64, 64, 1023, seed=n, noise=8))
    ds["PixelData"].VR = "OW"
    emit("valid/cr_explicit_be.dcm", ds, TS_EXPLICIT_BE,
         "CR 64x64 16-bit native, explicit VR BIG endian (OW words byte-swapped)")

    # 4. US multi-frame, RGB, 4 frames, explicit LE
    n = 4
    ds = base(SC_US_MF, instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1),
              modality="US", accession="SWT0004", study_desc="US ABDOMEN (TEST)",
              series_desc="CINE")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", ""]
    image_pixel(ds, rows=64, cols=64, bits_alloc=8, bits_stored=8, samples=3,
                photometric="RGB", frames=4)
    ds.FrameTime = "40"
    ds.FrameIncrementPointer = 0x00181063
    px = bytearray()
    for f in range(4):
        g = phantom(64, 64, 255, seed=n, frame=f, noise=6)
        for row in g:
            for v in row:
                px += bytes([v, (v * 3) // 4, 255 - v])
    ds.PixelData = bytes(px)
    ds["PixelData"].VR = "OB"
    emit("valid/us_multiframe_rgb.dcm", ds, TS_EXPLICIT_LE,
         "US multi-frame 4 frames 64x64 RGB 8-bit native, explicit VR LE")

    # 5. Basic Text SR in the CT's study (a formal report for it)
    n = 1
    ds = base(SC_BASIC_TEXT_SR, instance_uid(n, 99, 1), study_uid(n), series_uid(n, 99),
              modality="SR", accession="SWT0001", study_desc="CT HEAD (TEST)",
              series_desc="REPORT", series_no=99, date="20260105", time="101500")
    ds.ContentDate = "20260106"
    ds.ContentTime = "090000"
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    obs = Dataset()
    obs.VerifyingObserverName = "TEST^RADIOLOGIST"
    obs.VerifyingOrganization = "STUDYWATCH TEST HOSPITAL"
    obs.VerificationDateTime = "20260106090000"
    obs.VerifyingObserverIdentificationCodeSequence = Sequence([])
    ds.VerifyingObserverSequence = Sequence([obs])
    ds.PerformedProcedureCodeSequence = Sequence([])
    evid_inst = Dataset()
    evid_inst.ReferencedSOPClassUID = SC_CT
    evid_inst.ReferencedSOPInstanceUID = instance_uid(1, 1, 1)
    evid_series = Dataset()
    evid_series.SeriesInstanceUID = series_uid(1, 1)
    evid_series.ReferencedSOPSequence = Sequence([evid_inst])
    evid = Dataset()
    evid.StudyInstanceUID = study_uid(1)
    evid.ReferencedSeriesSequence = Sequence([evid_series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evid])
    ds.ContentSequence = Sequence([
        _text_item("121071", "DCM", "Finding", "No acute intracranial abnormality. TEST DATA."),
        _text_item("121073", "DCM", "Impression", "Normal study. TEST DATA."),
    ])
    # The content tree uses undefined lengths (sequence and items), the other
    # sequences explicit lengths: a parser must handle both.
    ds["ContentSequence"].is_undefined_length = True
    for it in ds.ContentSequence:
        it.is_undefined_length_sequence_item = True
    emit("valid/sr_basic_text.dcm", ds, TS_EXPLICIT_LE,
         "Basic Text SR COMPLETE+VERIFIED, same study and accession as ct_implicit_le.dcm (a final report); ContentSequence has undefined lengths")

    # 6. Deflated explicit VR little endian
    n = 6
    ds = sc_like(SC_SC, instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0006",
                 "SC DEFLATE (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=8, bits_stored=8)
    ds.PixelData = u8(phantom(64, 64, 255, seed=n, noise=0))
    ds["PixelData"].VR = "OB"
    emit("valid/sc_deflated.dcm", ds, TS_DEFLATED_LE,
         "SC 64x64 8-bit; data set after the meta is raw deflate (RFC 1951), even-padded with one 00")

    # 7. JPEG baseline, XA 2 frames, Basic Offset Table filled in
    n = 7
    ds = base(SC_XA, instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1),
              modality="XA", accession="SWT0007", study_desc="XA CORONARY (TEST)",
              series_desc="RUN 1")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    image_pixel(ds, rows=64, cols=64, bits_alloc=8, bits_stored=8, frames=2)
    ds.FrameTime = "66.7"
    ds.FrameIncrementPointer = 0x00181063
    ds.PositionerMotion = "STATIC"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    frames = [jpeg_baseline_encode(phantom(64, 64, 255, seed=n, frame=f, noise=3)) for f in range(2)]
    ds.LossyImageCompressionRatio = f"{(2 * 64 * 64) / sum(len(f) for f in frames):.2f}"
    set_encapsulated(ds, encapsulate(frames, with_offsets=True))
    emit("valid/xa_jpeg_baseline_2frames.dcm", ds, TS_JPEG_BASELINE,
         "XA 2 frames 64x64 8-bit JPEG baseline (real, decodable); BOT with 2 offsets; 1 fragment/frame")

    # 8. JPEG-LS lossless, CT 12-bit
    n = 8
    ds = ct_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0008",
                 "CT CHEST (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    set_encapsulated(ds, encapsulate([jpegls_encode(phantom(64, 64, 4095, seed=n, noise=10), 12)]))
    emit("valid/ct_jpegls_lossless.dcm", ds, TS_JPEG_LS_LOSSLESS,
         "CT 64x64 12-bit JPEG-LS lossless (real, decodable); empty BOT; 1 fragment")

    # 9. JPEG 2000 lossless, MR 12-bit (constant image, see j2k_constant_encode)
    n = 9
    ds = mr_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0009",
                 "MR SPINE (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    set_encapsulated(ds, encapsulate([j2k_constant_encode(64, 64, 12)]))
    emit("valid/mr_j2k_lossless.dcm", ds, TS_J2K_LOSSLESS,
         "MR 64x64 12-bit JPEG 2000 lossless; real minimal codestream of a constant image (2048); 1 fragment")

    # 10. RLE lossless, CT 16-bit (2 segments)
    n = 10
    ds = ct_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0010",
                 "CT ABDOMEN (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    img = phantom(64, 64, 4095, seed=n, noise=0)
    raw = u16le(img)
    frame = rle_encode_frame([raw[1::2], raw[0::2]], 64)
    set_encapsulated(ds, encapsulate([frame]))
    emit("valid/ct_rle_lossless.dcm", ds, TS_RLE,
         "CT 64x64 16-bit RLE lossless (real, 2 segments); empty BOT; 1 fragment")

    # 11. Odd-length native pixel data: 3x3 8-bit = 9 bytes, stored as 10.
    #     Also carries a SOP Instance UID of exactly 64 characters (valid).
    n = 11
    uid64 = instance_uid(n, 1, 1) + "."
    uid64 += "1" * (64 - len(uid64))
    ds = sc_like(SC_SC, uid64, study_uid(n), series_uid(n, 1), "SWT0011", "SC ODD (TEST)")
    image_pixel(ds, rows=3, cols=3, bits_alloc=8, bits_stored=8)
    ds.PixelData = bytes([0, 32, 64, 96, 128, 160, 192, 224, 255])
    ds["PixelData"].VR = "OB"  # pydicom writes 9 bytes + one 00 pad, length 10
    emit("valid/sc_odd_length_3x3.dcm", ds, TS_EXPLICIT_LE,
         "SC 3x3 8-bit: 9 pixel bytes + 1 pad byte (length 10); SOP Instance UID is exactly 64 chars")

    # 12. Bits Allocated 1: multi-frame single bit SC, 2 frames of 5x5.
    #     50 bits -> ceil(50/8) = 7 bytes -> 8 with pad.  Frames are packed
    #     back to back (frame 2 starts at bit 25, mid-byte), LSB first.
    n = 12
    ds = sc_like(SC_SC_MF_BIT, instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1),
                 "SWT0012", "SC BITMAP (TEST)")
    image_pixel(ds, rows=5, cols=5, bits_alloc=1, bits_stored=1, frames=2)
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = "1000"
    bits = []
    for f in range(2):
        for y in range(5):
            for x in range(5):
                bits.append(1 if (x == y) ^ (f == 1 and x + y == 4) else 0)
    packed = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        packed[i // 8] |= b << (i % 8)
    ds.PixelData = bytes(packed)  # 7 bytes; pydicom pads to 8
    ds["PixelData"].VR = "OB"
    emit("valid/sc_single_bit_2frames.dcm", ds, TS_EXPLICIT_LE,
         "Bits Allocated 1, 2 frames 5x5: 50 bits = 7 bytes, stored 8 (even pad)")

    # 13. Native YBR_FULL_422: length = rows*cols*2 (not *3)
    n = 13
    ds = base(SC_US, instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1),
              modality="US", accession="SWT0013", study_desc="US THYROID (TEST)",
              series_desc="B-MODE")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", ""]
    image_pixel(ds, rows=64, cols=64, bits_alloc=8, bits_stored=8, samples=3,
                photometric="YBR_FULL_422")
    g = phantom(64, 64, 255, seed=n, noise=5)
    px = bytearray()
    for row in g:
        for x in range(0, 64, 2):
            px += bytes([row[x], row[x + 1], 128, 128])  # Y1 Y2 Cb Cr
    ds.PixelData = bytes(px)
    ds["PixelData"].VR = "OB"
    emit("valid/us_ybr_full_422_native.dcm", ds, TS_EXPLICIT_LE,
         "US 64x64 YBR_FULL_422 native: 8192 bytes = rows*cols*2, not rows*cols*3")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue = value
    c.CodingSchemeDesignator = scheme
    c.CodeMeaning = meaning
    return c


def _text_item(value: str, scheme: str, meaning: str, text: str) -> Dataset:
    it = Dataset()
    it.RelationshipType = "CONTAINS"
    it.ValueType = "TEXT"
    it.ConceptNameCodeSequence = Sequence([_code(value, scheme, meaning)])
    it.TextValue = text
    return it


def build_invalid() -> None:
    # 101. Truncated: a CT whose data set stops in the middle of Pixel Data.
    n = 101
    ds = ct_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0101",
                 "CT TRUNCATED (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    ds.PixelData = u16le(phantom(64, 64, 4095, seed=n, noise=20))
    ds["PixelData"].VR = "OW"
    emit("invalid/truncated_ct.dcm", ds, TS_IMPLICIT_LE,
         "implicit LE CT; data set cut after 4096 of 8192 Pixel Data bytes (even length, so the DIMSE layer is fine)",
         status="C000", comment="truncated", mutate=lambda b: b[:len(b) - 8192 + 4096])

    # 102. SOP Class mismatch: CT data set, command says MR Image Storage.
    n = 102
    ds = ct_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0102",
                 "CT CLASS MISMATCH (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    ds.PixelData = u16le(phantom(64, 64, 4095, seed=n, noise=20))
    ds["PixelData"].VR = "OW"
    emit("invalid/sop_class_mismatch.dcm", ds, TS_EXPLICIT_LE,
         "data set is CT Image Storage; command (and presentation context) says MR Image Storage",
         status="A900", comment="SOPClassUID", cmd_sop_class=SC_MR)

    # 103. SOP Instance mismatch.
    n = 103
    ds = mr_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0103",
                 "MR INSTANCE MISMATCH (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    ds.PixelData = u16le(phantom(64, 64, 4095, seed=n, noise=20))
    ds["PixelData"].VR = "OW"
    emit("invalid/sop_instance_mismatch.dcm", ds, TS_EXPLICIT_LE,
         f"data set SOPInstanceUID is {instance_uid(n, 1, 1)}; command uses another valid UID",
         status="A900", comment="SOPInstanceUID", cmd_sop_instance=instance_uid(n, 1, 2))

    def bad_uid_case(n: int, path: str, *, study: str, series: str, sop: str | None,
                     attr: str, note: str, meta_sop: str | None = None) -> None:
        ds = mr_like(sop, study, series, f"SWT{n:04d}", "MR BAD UID (TEST)")
        image_pixel(ds, rows=16, cols=16, bits_alloc=16, bits_stored=12)
        ds.PixelData = u16le(phantom(16, 16, 4095, seed=n, noise=20))
        ds["PixelData"].VR = "OW"
        emit(path, ds, TS_EXPLICIT_LE, note, status="C000", comment=attr,
             meta_sop_instance=meta_sop)

    # 104. leading zero in a component of the Study Instance UID
    n = 104
    bad_uid_case(n, "invalid/uid_leading_zero.dcm", study=f"{ROOT}.1.{n}.03",
                 series=series_uid(n, 1), sop=instance_uid(n, 1, 1), attr="StudyInstanceUID",
                 note=f"StudyInstanceUID {ROOT}.1.{n}.03 (component '03' has a leading zero)")

    # 105. empty component in the Series Instance UID
    n = 105
    bad_uid_case(n, "invalid/uid_empty_component.dcm", study=study_uid(n),
                 series=f"{ROOT}.1.{n}..1", sop=instance_uid(n, 1, 1), attr="SeriesInstanceUID",
                 note=f"SeriesInstanceUID {ROOT}.1.{n}..1 (empty component)")

    # 106. Study Instance UID of 65 characters (66 on the wire with its NUL pad)
    n = 106
    long_uid = study_uid(n) + "."
    long_uid += "2" * (65 - len(long_uid))
    assert len(long_uid) == 65
    bad_uid_case(n, "invalid/uid_too_long.dcm", study=long_uid, series=series_uid(n, 1),
                 sop=instance_uid(n, 1, 1), attr="StudyInstanceUID",
                 note="StudyInstanceUID is 65 characters (+1 NUL pad)")

    # 107. path escape attempt in the Series Instance UID
    n = 107
    bad_uid_case(n, "invalid/uid_dotdot_escape.dcm", study=study_uid(n), series="../../etc",
                 sop=instance_uid(n, 1, 1), attr="SeriesInstanceUID",
                 note="SeriesInstanceUID '../../etc' (path traversal; must never reach a path)")

    # 108. no SOP Instance UID in the data set; command and file meta carry a valid one
    n = 108
    bad_uid_case(n, "invalid/uid_missing_sop_instance.dcm", study=study_uid(n),
                 series=series_uid(n, 1), sop=None, attr="SOPInstanceUID",
                 meta_sop=instance_uid(n, 1, 1),
                 note=f"data set has no (0008,0018); command and file meta use valid {instance_uid(n, 1, 1)}; missing wins over mismatch")

    # 109. native Pixel Data one row short
    n = 109
    ds = mr_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0109",
                 "MR SHORT PIXELS (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    ds.PixelData = u16le(phantom(64, 64, 4095, seed=n, noise=20))[: 63 * 64 * 2]
    ds["PixelData"].VR = "OW"
    emit("invalid/wrong_pixel_length_short.dcm", ds, TS_EXPLICIT_LE,
         "MR 64x64x16-bit needs 8192 Pixel Data bytes; has 8064 (one row short); parses fine",
         status="C000", comment="pixel")

    # 110. native Pixel Data one row too long
    n = 110
    ds = mr_like(instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1), "SWT0110",
                 "MR LONG PIXELS (TEST)")
    image_pixel(ds, rows=64, cols=64, bits_alloc=16, bits_stored=12)
    ds.PixelData = u16le(phantom(64, 65, 4095, seed=n, noise=20))
    ds["PixelData"].VR = "OW"
    emit("invalid/wrong_pixel_length_long.dcm", ds, TS_EXPLICIT_LE,
         "MR 64x64x16-bit needs 8192 Pixel Data bytes; has 8320 (one row extra); parses fine",
         status="C000", comment="pixel")

    # 111. encapsulated, NumberOfFrames 3 but only 2 fragments
    n = 111
    ds = sc_like(SC_SC_MF_BYTE, instance_uid(n, 1, 1), study_uid(n), series_uid(n, 1),
                 "SWT0111", "SC FEW FRAGMENTS (TEST)")
    image_pixel(ds, rows=32, cols=32, bits_alloc=8, bits_stored=8, frames=3)
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = "100"
    frames = [rle_encode_frame([u8(phantom(32, 32, 255, seed=n, frame=f, noise=0))], 32)
              for f in range(2)]
    set_encapsulated(ds, encapsulate(frames))
    emit("invalid/too_few_fragments.dcm", ds, TS_RLE,
         "RLE, NumberOfFrames 3 but only 2 fragment items (well-formed items and delimiter)",
         status="C000", comment="fragment")


MANIFEST_HEADER = """\
# studywatch DICOM test corpus -- generated by test-dicom/generate.py, do not edit.
# One line per file; whitespace-separated columns; the note is the rest of the line.
# sop_class_uid / sop_instance_uid: what the SENDER puts in the C-STORE command
#   (Affected SOP Class/Instance UID) and proposes as abstract syntax; they may
#   deliberately differ from the data set.
# transfer_syntax: the file's transfer syntax, to be proposed as is.
# expected_status: C-STORE response status, 4 hex digits.
# expected_comment_substring: must occur in the Error Comment (0000,0902);
#   compare case-insensitively after deleting spaces from both sides
#   (so "SOPClassUID" matches "SOP Class UID differs"); '-' means no check.
"""


def write_all(out: Path) -> None:
    for sub in ("valid", "invalid"):
        d = out / sub
        d.mkdir(exist_ok=True)
        for old in d.glob("*.dcm"):
            old.unlink()
    cols = ["#path", "sop_class_uid", "sop_instance_uid", "transfer_syntax",
            "expected_status", "expected_comment_substring", "note"]
    rows = [[e.path, e.sop_class, e.sop_instance, e.ts, e.status, e.comment, e.note]
            for e in ENTRIES]
    widths = [max(len(r[i]) for r in rows + [cols]) for i in range(6)]
    lines = [MANIFEST_HEADER.rstrip("\n")]
    for r in [cols] + rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(6)) + "  " + r[6])
    for e in ENTRIES:
        (out / e.path).write_bytes(e.data)
    (out / "MANIFEST").write_text("\n".join(lines) + "\n", encoding="ascii")


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE,
                    help="directory to write valid/, invalid/ and MANIFEST into "
                         "(default: this script's directory)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not pydicom.__version__.startswith("3.0"):
        print(f"warning: written for pydicom 3.0.x, found {pydicom.__version__}; "
              "the output may not be byte-identical to the committed corpus", file=sys.stderr)
    build_valid()
    build_invalid()
    write_all(args.out)
    total = 0
    for e in ENTRIES:
        total += len(e.data)
        print(f"{hashlib.sha256(e.data).hexdigest()[:16]}  {len(e.data):7d}  {e.path}")
    print(f"{len(ENTRIES)} files, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
