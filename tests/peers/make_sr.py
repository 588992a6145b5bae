#!/usr/bin/env python3
"""Writes ONE report-like DICOM object to --out, for the report-intake tests.

  make_sr.py --kind KIND --study-uid UID --out PATH [options]

Kinds (SOP Class UID in brackets):
  basic-text        Basic Text SR          (1.2.840.10008.5.1.4.1.1.88.11)
  enhanced          Enhanced SR            (1.2.840.10008.5.1.4.1.1.88.22)
  comprehensive     Comprehensive SR       (1.2.840.10008.5.1.4.1.1.88.33)
  comprehensive-3d  Comprehensive 3D SR    (1.2.840.10008.5.1.4.1.1.88.34)
      The four that count as reports when Completion Flag is COMPLETE and
      Verification Flag is VERIFIED: Modality SR, a CONTAINER root
      (18748-4, LN, "Diagnostic Imaging Report", TID 2000) holding one TEXT
      item (121071, DCM, "Finding") with --text.
  dose              X-Ray Radiation Dose SR (1.2.840.10008.5.1.4.1.1.88.67)
  cad               Mammography CAD SR     (1.2.840.10008.5.1.4.1.1.88.50)
      Never count, even though they carry COMPLETE/VERIFIED flags too.
  kos               Key Object Selection   (1.2.840.10008.5.1.4.1.1.88.59)
      Modality KO, root (113000, DCM, "Of Interest"); the IOD has no
      completion or verification flags. Never counts.
  pdf               Encapsulated PDF       (1.2.840.10008.5.1.4.1.1.104.1)
      Modality DOC, a small valid PDF with --text; no flags. Counts as a
      final report unless config says otherwise.
  gsps              Grayscale Softcopy Presentation State
                                           (1.2.840.10008.5.1.4.1.1.11.1)
      Modality PR, the minimal required attributes. Never counts.

Every kind takes the common options (--study-uid, --series-uid, --sop-uid,
--accession, --patient-id, --patient-name, --study-date, --study-time,
--ref-study-uid, --ref-accession, --ref-accession-issuer). --ref-study-uid
adds a Current Requested Procedure Evidence Sequence naming that study (with
a made-up CT image in it); --ref-accession adds a Referenced Request Sequence
item with that Accession Number, and --ref-accession-issuer its Issuer of
Accession Number Sequence (as a Local Namespace Entity ID). The SR kinds, dose and cad also take --text, --completion,
--verification, --author and --verified-at; pdf takes --text and --author.
Content Date/Time are the date and time of --verified-at.

The output depends only on the arguments. By default the Series Instance UID
is derived from --study-uid and --kind, and the SOP Instance UID from every
argument that shapes the content (so a PARTIAL and a COMPLETE report of the
same study get different SOP Instance UIDs, and the same arguments give the
same file again, byte for byte). Files are written with Part 10 file meta in
explicit VR little endian.
"""
import argparse
import hashlib
import os

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.10.1661.9"
CT = "1.2.840.10008.5.1.4.1.1.2"

SOP_CLASS = {
    "basic-text": "1.2.840.10008.5.1.4.1.1.88.11",
    "enhanced": "1.2.840.10008.5.1.4.1.1.88.22",
    "comprehensive": "1.2.840.10008.5.1.4.1.1.88.33",
    "comprehensive-3d": "1.2.840.10008.5.1.4.1.1.88.34",
    "dose": "1.2.840.10008.5.1.4.1.1.88.67",
    "cad": "1.2.840.10008.5.1.4.1.1.88.50",
    "kos": "1.2.840.10008.5.1.4.1.1.88.59",
    "pdf": "1.2.840.10008.5.1.4.1.1.104.1",
    "gsps": "1.2.840.10008.5.1.4.1.1.11.1",
}
TEXT_SR = ("basic-text", "enhanced", "comprehensive", "comprehensive-3d")
FLAGGED = TEXT_SR + ("dose", "cad")
MODALITY = {"kos": "KO", "pdf": "DOC", "gsps": "PR"}  # every other kind: SR
# Root concept name and template (TID, mapping resource DCMR) of each kind
# whose content is an SR tree.
ROOT_CONCEPT = {
    "basic-text": (("18748-4", "LN", "Diagnostic Imaging Report"), "2000"),
    "enhanced": (("18748-4", "LN", "Diagnostic Imaging Report"), "2000"),
    "comprehensive": (("18748-4", "LN", "Diagnostic Imaging Report"), "2000"),
    "comprehensive-3d": (("18748-4", "LN", "Diagnostic Imaging Report"), "2000"),
    "dose": (("113701", "DCM", "X-Ray Radiation Dose Report"), "10001"),
    "cad": (("111036", "DCM", "Mammography CAD Report"), "4000"),
    "kos": (("113000", "DCM", "Of Interest"), "2010"),
}


def derived_uid(role, *parts):
    """A valid UID under ROOT: role, then a 64-bit number from the parts."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    number = int.from_bytes(digest[:8], "big") or 1
    return f"{ROOT}.{role}.{number}"


def code(value, scheme, meaning):
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def template(tid):
    item = Dataset()
    item.MappingResource = "DCMR"
    item.TemplateIdentifier = tid
    return item


def content_item(relationship, value_type, concept):
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = [code(*concept)]
    return item


def image_ref(sop_class, sop_instance):
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def made_up_ct(study_uid):
    """The (series, instance) UIDs of a CT image that the object refers to."""
    return derived_uid(4, study_uid, "ct-series"), derived_uid(5, study_uid, "ct-image")


def evidence(study_uid):
    """One Hierarchical SOP Instance Reference item: a CT image of study_uid."""
    series_uid, sop_uid = made_up_ct(study_uid)
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.ReferencedSOPSequence = [image_ref(CT, sop_uid)]
    study = Dataset()
    study.StudyInstanceUID = study_uid
    study.ReferencedSeriesSequence = [series]
    return study


def pdf_string(text):
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def tiny_pdf(title, text, author):
    """A one-page PDF 1.4 with correct cross-reference offsets, printable
    ASCII only (anything else becomes '?')."""
    def ascii(s):
        return "".join(c if " " <= c <= "~" else "?" for c in s)

    stream = (
        "BT /F1 14 Tf 72 770 Td " + pdf_string(ascii(title)) + " Tj "
        "0 -24 Td /F1 11 Tf " + pdf_string(ascii(text)) + " Tj "
        "0 -18 Td " + pdf_string("Reported by " + ascii(author)) + " Tj ET"
    )
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("ascii")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode("ascii")
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode("ascii")
    return out


def add_patient_study_series(ds, args, kind, series_uid, sop_uid):
    ds.SOPClassUID = SOP_CLASS[kind]
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = args.patient_name
    ds.PatientID = args.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = args.study_uid
    ds.StudyDate = args.study_date
    ds.StudyTime = args.study_time
    ds.ReferringPhysicianName = "REFERRER^RAJ"
    ds.StudyID = "1"
    ds.AccessionNumber = args.accession
    ds.Modality = MODALITY.get(kind, "SR")
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 900
    ds.ReferencedPerformedProcedureStepSequence = []
    # General and Enhanced General Equipment (the latter is required by the
    # dose SR, harmless elsewhere).
    ds.Manufacturer = "studywatch tests"
    ds.ManufacturerModelName = "make_sr.py"
    ds.DeviceSerialNumber = "1"
    ds.SoftwareVersions = "1"
    ds.InstanceNumber = 1
    ds.ContentDate = args.verified_at[:8]
    ds.ContentTime = args.verified_at[8:14] or "000000"


def add_references(ds, args):
    if args.ref_accession is not None:
        request = Dataset()
        request.StudyInstanceUID = args.ref_study_uid or args.study_uid
        request.AccessionNumber = args.ref_accession
        if args.ref_accession_issuer:
            issuer = Dataset()
            issuer.LocalNamespaceEntityID = args.ref_accession_issuer
            request.IssuerOfAccessionNumberSequence = [issuer]
        request.PlacerOrderNumberImagingServiceRequest = ""
        request.FillerOrderNumberImagingServiceRequest = ""
        request.RequestedProcedureID = "RP1"
        request.RequestedProcedureDescription = "CT Chest with contrast"
        request.RequestedProcedureCodeSequence = []
        ds.ReferencedRequestSequence = [request]
    if args.ref_study_uid is not None:
        ds.CurrentRequestedProcedureEvidenceSequence = [evidence(args.ref_study_uid)]


def add_flags(ds, args):
    ds.CompletionFlag = args.completion
    ds.VerificationFlag = args.verification
    if args.verification == "VERIFIED":
        observer = Dataset()
        observer.VerifyingObserverName = args.author
        observer.VerifyingObserverIdentificationCodeSequence = []
        observer.VerifyingOrganization = "Radiology"
        observer.VerificationDateTime = args.verified_at
        ds.VerifyingObserverSequence = [observer]
    ds.PerformedProcedureCodeSequence = []


def add_sr_tree(ds, kind, children):
    concept, tid = ROOT_CONCEPT[kind]
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [code(*concept)]
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentTemplateSequence = [template(tid)]
    ds.ContentSequence = Sequence(children)


def build(args, series_uid, sop_uid):
    kind = args.kind
    ds = Dataset()
    add_patient_study_series(ds, args, kind, series_uid, sop_uid)

    if kind in TEXT_SR:
        finding = content_item("CONTAINS", "TEXT", ("121071", "DCM", "Finding"))
        finding.TextValue = args.text
        add_flags(ds, args)
        add_sr_tree(ds, kind, [finding])
    elif kind == "dose":
        procedure = content_item("HAS CONCEPT MOD", "CODE", ("121058", "DCM", "Procedure reported"))
        procedure.ConceptCodeSequence = [code("113704", "DCM", "Projection X-Ray")]
        add_flags(ds, args)
        add_sr_tree(ds, kind, [procedure])
    elif kind == "cad":
        summary = content_item(
            "CONTAINS", "CODE", ("111017", "DCM", "CAD Processing and Findings Summary"))
        summary.ConceptCodeSequence = [
            code("111242", "DCM", "All algorithms succeeded; without findings")]
        add_flags(ds, args)
        add_sr_tree(ds, kind, [summary])
    elif kind == "kos":
        # The key image is in this object's own study; the evidence sequence
        # (type 1 in this IOD) always lists it, plus --ref-study-uid's image.
        ct_series, ct_sop = made_up_ct(args.study_uid)
        image = Dataset()
        image.RelationshipType = "CONTAINS"
        image.ValueType = "IMAGE"
        image.ReferencedSOPSequence = [image_ref(CT, ct_sop)]
        add_sr_tree(ds, kind, [image])
        add_references(ds, args)
        own = evidence(args.study_uid)
        if args.ref_study_uid is not None and args.ref_study_uid != args.study_uid:
            ds.CurrentRequestedProcedureEvidenceSequence.append(own)
        else:
            ds.CurrentRequestedProcedureEvidenceSequence = [own]
        return ds
    elif kind == "pdf":
        document = tiny_pdf("Radiology report", args.text, args.author)
        ds.ConversionType = "WSD"
        ds.AcquisitionDateTime = args.verified_at
        ds.BurnedInAnnotation = "NO"
        ds.DocumentTitle = "Radiology report"
        ds.ConceptNameCodeSequence = [code("18748-4", "LN", "Diagnostic Imaging Report")]
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
        ds.EncapsulatedDocumentLength = len(document)
        # OB values have even length: pad with one NUL when needed (the
        # Encapsulated Document Length keeps the unpadded length).
        ds.EncapsulatedDocument = document + b"\0" * (len(document) % 2)
    elif kind == "gsps":
        ct_series, ct_sop = made_up_ct(args.study_uid)
        ds.ContentLabel = "KEY_VIEW"
        ds.ContentDescription = "Window for the report"
        ds.ContentCreatorName = args.author
        ds.PresentationCreationDate = ds.ContentDate
        ds.PresentationCreationTime = ds.ContentTime
        series = Dataset()
        series.SeriesInstanceUID = ct_series
        series.ReferencedImageSequence = [image_ref(CT, ct_sop)]
        ds.ReferencedSeriesSequence = [series]
        area = Dataset()
        area.DisplayedAreaTopLeftHandCorner = [1, 1]
        area.DisplayedAreaBottomRightHandCorner = [512, 512]
        area.PresentationSizeMode = "SCALE TO FIT"
        area.PresentationPixelAspectRatio = [1, 1]
        ds.DisplayedAreaSelectionSequence = [area]
        voi = Dataset()
        voi.WindowCenter = 40
        voi.WindowWidth = 400
        ds.SoftcopyVOILUTSequence = [voi]
        ds.PresentationLUTShape = "IDENTITY"
    add_references(ds, args)
    return ds


def character_set(ds):
    """None when every text value (at any depth) is ASCII; otherwise Latin-1
    (ISO_IR 100, which DCMTK's checkers read) when that covers them all, else
    UTF-8 (ISO_IR 192)."""
    texts = [str(elem.value) for elem in ds.iterall()
             if elem.VR in ("PN", "LO", "SH", "ST", "LT", "UT") and elem.value is not None]
    if all(t.isascii() for t in texts):
        return None
    if all(max(t, default="") <= "\xff" for t in texts):
        return "ISO_IR 100"
    return "ISO_IR 192"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", required=True, choices=sorted(SOP_CLASS))
    parser.add_argument("--out", required=True, help="file to write")
    parser.add_argument("--study-uid", required=True, help="the object's own Study Instance UID")
    parser.add_argument("--series-uid", help="default: derived from --study-uid and --kind")
    parser.add_argument("--sop-uid", help="default: derived from the content-shaping arguments")
    parser.add_argument("--accession", default="", help="Accession Number of the object")
    parser.add_argument("--patient-id", default="SR0001")
    parser.add_argument("--patient-name", default="TEST^SR")
    parser.add_argument("--study-date", default="20261120")
    parser.add_argument("--study-time", default="091500")
    parser.add_argument("--ref-study-uid", help="adds Current Requested Procedure Evidence")
    parser.add_argument("--ref-accession", help="adds a Referenced Request Sequence item")
    parser.add_argument("--ref-accession-issuer", help="the issuer of --ref-accession")
    parser.add_argument("--text", default="No acute abnormality.")
    parser.add_argument("--completion", default="COMPLETE", choices=["COMPLETE", "PARTIAL"])
    parser.add_argument("--verification", default="VERIFIED", choices=["VERIFIED", "UNVERIFIED"])
    parser.add_argument("--author", default="REPORTER^ANNA")
    parser.add_argument("--verified-at", default="20261120143000", help="DICOM DT")
    args = parser.parse_args()

    shaping = {k: v for k, v in sorted(vars(args).items()) if k not in ("out", "sop_uid")}
    series_uid = args.series_uid or derived_uid(2, args.study_uid, args.kind)
    sop_uid = args.sop_uid or derived_uid(3, *(f"{k}={v}" for k, v in shaping.items()))

    ds = build(args, series_uid, sop_uid)
    charset = character_set(ds)
    if charset is not None:
        ds.SpecificCharacterSet = charset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = f"{ROOT}.99"
    meta.ImplementationVersionName = "MAKE_SR_1"
    ds.file_meta = meta
    directory = os.path.dirname(args.out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    ds.save_as(args.out, enforce_file_format=True)


if __name__ == "__main__":
    main()
