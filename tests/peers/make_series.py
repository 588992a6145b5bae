#!/usr/bin/env python3
"""Writes N small, valid CT instances of one study into OUTDIR, each file
named by its SOP Instance UID, for the crash and durability tests.

  make_series.py N OUTDIR"""
import os
import sys

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.10.1234.9"
CT = "1.2.840.10008.5.1.4.1.1.2"


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(1, n + 1):
        sop = f"{ROOT}.3.{i}"
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
        ds.SeriesInstanceUID = f"{ROOT}.2"
        ds.PatientID = "CRASH001"
        ds.PatientName = "TEST^CRASH"
        ds.AccessionNumber = "CRASH0001"
        ds.Modality = "CT"
        ds.StudyDate = "20260105"
        ds.StudyTime = "101500"
        ds.SeriesNumber = 1
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
