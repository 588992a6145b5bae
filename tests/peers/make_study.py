#!/usr/bin/env python3
"""Writes one small, valid instance of a chosen study into OUTDIR (named
by its SOP Instance UID), for the report-linking tests: the study's UID,
accession number and patient ID are the keys reports link by.

  make_study.py OUTDIR --study-uid UID [--accession A] [--accession-issuer I]
                [--patient-id P] [--patient-issuer I]
                [--study-date YYYYMMDD] [--index N] [--modality M]
                [--instance-created YYYYMMDDHHMMSS]

--modality (default CT) sets Modality and a matching image storage class
(CT, MR, CR, DX, US; Secondary Capture for any other). --instance-created
sets Instance Creation Date and Time (local time, no offset), for the
clock-skew checks; without it the instance carries neither.
--accession-issuer adds an Issuer of Accession Number Sequence whose item
names the issuer as its Local Namespace Entity ID. --patient-issuer sets
Issuer of Patient ID."""
import argparse
import os

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
CLASSES = {
    "CT": CT,
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--study-uid", required=True)
    p.add_argument("--accession", default="")
    p.add_argument("--accession-issuer", default="")
    p.add_argument("--patient-id", default="RXX0000001")
    p.add_argument("--patient-issuer", default="")
    p.add_argument("--study-date", default="20261120")
    p.add_argument("--index", type=int, default=1)
    p.add_argument("--modality", default="CT")
    p.add_argument("--instance-created", default="")
    a = p.parse_args()
    if a.instance_created and (len(a.instance_created) != 14 or not a.instance_created.isdigit()):
        p.error("--instance-created is YYYYMMDDHHMMSS")
    sop_class = CLASSES.get(a.modality, SECONDARY_CAPTURE)
    series = f"{a.study_uid}.1"
    sop = f"{a.study_uid}.1.{a.index}"
    assert len(sop) <= 64, "study UID too long for derived instance UIDs"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1234.99"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = a.study_uid
    ds.SeriesInstanceUID = series
    ds.PatientID = a.patient_id
    if a.patient_issuer:
        ds.IssuerOfPatientID = a.patient_issuer
    ds.PatientName = "TEST^REPORTS"
    ds.AccessionNumber = a.accession
    if a.accession_issuer:
        issuer = Dataset()
        issuer.LocalNamespaceEntityID = a.accession_issuer
        ds.IssuerOfAccessionNumberSequence = [issuer]
    ds.Modality = a.modality
    if a.instance_created:
        ds.InstanceCreationDate = a.instance_created[:8]
        ds.InstanceCreationTime = a.instance_created[8:]
    ds.StudyDate = a.study_date
    ds.StudyTime = "101500"
    ds.SeriesNumber = 1
    ds.InstanceNumber = a.index
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = np.full((16, 16), a.index, dtype=np.uint16).tobytes()
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"{sop}.dcm")
    ds.save_as(path, enforce_file_format=True)
    print(path)


if __name__ == "__main__":
    main()
