#!/usr/bin/env python3
"""Writes N small, valid CT instances of one study into OUTDIR, each file
named by its SOP Instance UID, for the crash and durability tests.

  make_series.py N OUTDIR [--series K]

With --series K (default 1) the instances are dealt round-robin into K
series of the same study: instance i goes to series ((i - 1) mod K) + 1.
Series 1 keeps the single-series UID, so K = 1 writes the same files as
leaving the option out."""
import argparse
import os

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.10.1234.9"
CT = "1.2.840.10008.5.1.4.1.1.2"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int)
    parser.add_argument("out")
    parser.add_argument("--series", type=int, default=1)
    args = parser.parse_args()
    n, out, k = args.n, args.out, args.series
    if k < 1:
        parser.error("--series must be at least 1")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(1, n + 1):
        sop = f"{ROOT}.3.{i}"
        series = (i - 1) % k + 1
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = f"{ROOT}.99"
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = f"{ROOT}.1"
        ds.SeriesInstanceUID = f"{ROOT}.2" if series == 1 else f"{ROOT}.2.{series}"
        ds.PatientID = "CRASH001"
        ds.PatientName = "TEST^CRASH"
        ds.AccessionNumber = "CRASH0001"
        ds.Modality = "CT"
        ds.StudyDate = "20260105"
        ds.StudyTime = "101500"
        ds.SeriesNumber = series
        ds.InstanceNumber = i
        ds.Rows = ds.Columns = 64
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 4096, size=(64, 64), dtype=np.uint16).tobytes()
        ds.save_as(os.path.join(out, f"{sop}.dcm"), enforce_file_format=True)


if __name__ == "__main__":
    main()
