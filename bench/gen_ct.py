#!/usr/bin/env python3
"""Deterministic test data for bench/ingest.sh.

  gen_ct.py ct DIR COUNT        COUNT single-frame CT instances, 512x512x16 bit
                                (about 512 KiB each), DIR/ct_00000.dcm ...
  gen_ct.py multiframe FILE     one Multi-frame Grayscale Word Secondary Capture
                                instance of 512x512x16 bit x 2048 frames: 1 GiB
                                of Pixel Data, streamed to disk frame by frame.

Everything (UIDs, dates, pixel values) is derived from fixed seeds, so two runs
produce byte-identical files. A file that already exists is kept, which makes
the cache in bench/.data cheap to reuse; delete the directory to regenerate.
Explicit VR Little Endian, native pixel data: what storescu sends unchanged.
"""

import os
import struct
import uuid
import sys

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROWS = COLS = 512
PER_SERIES = 250  # instances per series; one series per study
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MF_WORD_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"
MF_FRAMES = 2048


def uid(*parts):
    """A 2.25 UID (PS3.5 B.2) from a name-based UUID of the parts: stable across
    runs and machines. (pydicom's generate_uid ignores its entropy sources when
    asked for a 2.25 UID, so it cannot be used here.)"""
    name = "/".join(["studywatch-bench", *map(str, parts)])
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, name).int)


def base_image():
    """A smooth 'phantom' (a disc in air) plus fixed noise, 12-bit values."""
    rng = np.random.default_rng(20261122)
    y, x = np.mgrid[0:ROWS, 0:COLS]
    r2 = (x - COLS / 2) ** 2 + (y - ROWS / 2) ** 2
    img = np.where(r2 < (0.42 * COLS) ** 2, 1064.0, 24.0)  # water / air + 1024 offset
    img += rng.normal(0.0, 20.0, size=(ROWS, COLS))
    return np.clip(img, 0, 4095).astype("<u2")


def common(ds, study, series, sop_class, sop_uid, modality):
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20261122"
    ds.StudyTime = "080000"
    ds.ContentDate = "20261122"
    ds.ContentTime = "080000"
    ds.AccessionNumber = f"BENCH{study:05d}"
    ds.Modality = modality
    ds.Manufacturer = "studywatch bench"
    ds.InstitutionName = "Bench Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Benchmark study"
    ds.PatientName = f"BENCH^PATIENT{study:05d}"
    ds.PatientID = f"BENCH{study:05d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uid("study", study)
    ds.SeriesInstanceUID = uid("series", study, series)
    ds.StudyID = str(study)
    ds.SeriesNumber = series + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def file_meta(sop_class, sop_uid):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid("implementation")
    meta.ImplementationVersionName = "SW_BENCH_1"
    return meta


def write_ct(directory, count):
    os.makedirs(directory, exist_ok=True)
    base = base_image()
    made = 0
    for i in range(count):
        path = os.path.join(directory, f"ct_{i:05d}.dcm")
        if os.path.exists(path):
            continue
        study, n = divmod(i, PER_SERIES)
        sop_uid = uid("ct", i)
        ds = Dataset()
        ds.file_meta = file_meta(CT_IMAGE_STORAGE, sop_uid)
        common(ds, study, 0, CT_IMAGE_STORAGE, sop_uid, "CT")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = uid("for", study)
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [-250.0, -250.0, -0.5 * n]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceThickness = 0.5
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.KVP = 120
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        # Every slice differs (so no two instances hash alike), cheaply.
        ds.PixelData = np.roll(base, i, axis=1).tobytes()
        tmp = path + ".tmp"
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
        made += 1
    return made


def write_multiframe(path):
    if os.path.exists(path):
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sop_uid = uid("multiframe", 0)
    ds = Dataset()
    ds.file_meta = file_meta(MF_WORD_SC_STORAGE, sop_uid)
    common(ds, 99999, 0, MF_WORD_SC_STORAGE, sop_uid, "OT")
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.NumberOfFrames = MF_FRAMES
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = 40.0
    tmp = path + ".tmp"
    ds.save_as(tmp, enforce_file_format=True)
    frame_bytes = ROWS * COLS * 2
    length = frame_bytes * MF_FRAMES  # 2**30: fits the 32-bit length of OW
    base = base_image()
    with open(tmp, "ab") as f:
        # (7FE0,0010) OW, explicit VR little endian: tag, VR, 2 reserved, u32 length.
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        for frame in range(MF_FRAMES):
            f.write(np.roll(base, frame, axis=0).tobytes())
    os.replace(tmp, path)
    return 1


def main(argv):
    if len(argv) == 4 and argv[1] == "ct":
        made = write_ct(argv[2], int(argv[3]))
        print(f"gen_ct: {made} CT instance(s) written to {argv[2]}", file=sys.stderr)
    elif len(argv) == 3 and argv[1] == "multiframe":
        if write_multiframe(argv[2]):
            print(f"gen_ct: 1 GiB multi-frame instance written to {argv[2]}", file=sys.stderr)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
