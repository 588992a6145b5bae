#!/usr/bin/env python3
"""Writes the Storage Commitment command sets and data sets that
src/commit/wire.rs decodes in its tests, as encoded by two independent DICOM
implementations.

Command sets (Implicit VR Little Endian), as pynetdicom encodes them:

  n-action-rq.bin                 Message ID 7, Requested SOP Class/Instance,
                                  Action Type ID 1, a data set follows.
  n-action-rsp.bin                Responding to 7, status 0x0000.
  n-event-report-rq.bin           Message ID 3, Affected SOP Class/Instance,
                                  Event Type ID 2, a data set follows.
  n-event-report-rsp.bin          Responding to 3, Event Type ID 2,
                                  status 0x0110.

Data sets:

  request.implicit.bin            N-ACTION-RQ data set (Request Storage
                                  Commitment), Implicit VR Little Endian, as
                                  pynetdicom puts it on the wire (sequences
                                  and items of defined length).
  report-failures.implicit.bin    N-EVENT-REPORT-RQ data set of Event Type 2
                                  (failures exist): one committed instance,
                                  two failed ones, plus Retrieve AE Title.
  report-all-failed.implicit.bin  Event Type 2 with every instance failed and
                                  an EMPTY Referenced SOP Sequence, the shape
                                  Orthanc sends.
  request.explicit.bin            request.implicit.bin re-encoded by DCMTK's
  report-failures.explicit.bin    dcmconv (and report-failures likewise) in
                                  Explicit VR Little Endian with sequences
                                  and items of undefined length.

Run from anywhere: python3 src/commit/testdata/generate.py
Needs pydicom, pynetdicom and DCMTK's dcmconv. The UIDs below are the values
the tests expect; change both together.
"""

import os
import subprocess
import tempfile
from io import BytesIO

from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import (
    N_ACTION_RQ,
    N_ACTION_RSP,
    N_EVENT_REPORT_RQ,
    N_EVENT_REPORT_RSP,
)
from pynetdicom.dimse_primitives import N_ACTION, N_EVENT_REPORT
from pynetdicom.dsutils import encode

HERE = os.path.dirname(os.path.abspath(__file__))

COMMITMENT_CLASS = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
TRANSACTION = "2.25.110411718472630947123504398412570926771"
INSTANCES = [
    (CT, "1.2.826.0.1.3680043.10.543.1.1"),
    (CT, "1.2.826.0.1.3680043.10.543.1.2"),
    (MR, "1.2.826.0.1.3680043.10.543.1.3"),
]
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


def reference(sop_class, sop_instance, failure_reason=None):
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    if failure_reason is not None:
        item.FailureReason = failure_reason
    return item


def request():
    ds = Dataset()
    ds.TransactionUID = TRANSACTION
    ds.ReferencedSOPSequence = [reference(c, i) for c, i in INSTANCES]
    return ds


def report_failures():
    ds = Dataset()
    ds.TransactionUID = TRANSACTION
    ds.RetrieveAETitle = "STUDYWATCH"
    ds.ReferencedSOPSequence = [reference(*INSTANCES[0])]
    ds.FailedSOPSequence = [
        reference(*INSTANCES[1], NO_SUCH_OBJECT_INSTANCE),
        reference(*INSTANCES[2], CLASS_INSTANCE_CONFLICT),
    ]
    return ds


def report_all_failed():
    ds = Dataset()
    ds.TransactionUID = TRANSACTION
    ds.ReferencedSOPSequence = []
    ds.FailedSOPSequence = [
        reference(c, i, NO_SUCH_OBJECT_INSTANCE) for c, i in INSTANCES
    ]
    return ds


def command_set(message, primitive):
    msg = message()
    msg.primitive_to_message(primitive)
    return encode(msg.command_set, True, True)


def n_action_rq():
    p = N_ACTION()
    p.MessageID = 7
    p.RequestedSOPClassUID = COMMITMENT_CLASS
    p.RequestedSOPInstanceUID = COMMITMENT_INSTANCE
    p.ActionTypeID = 1
    p.ActionInformation = BytesIO(b"\0\0")
    return command_set(N_ACTION_RQ, p)


def n_action_rsp():
    p = N_ACTION()
    p.MessageIDBeingRespondedTo = 7
    p.AffectedSOPClassUID = COMMITMENT_CLASS
    p.AffectedSOPInstanceUID = COMMITMENT_INSTANCE
    p.ActionTypeID = 1
    p.Status = 0x0000
    return command_set(N_ACTION_RSP, p)


def n_event_report_rq():
    p = N_EVENT_REPORT()
    p.MessageID = 3
    p.AffectedSOPClassUID = COMMITMENT_CLASS
    p.AffectedSOPInstanceUID = COMMITMENT_INSTANCE
    p.EventTypeID = 2
    p.EventInformation = BytesIO(b"\0\0")
    return command_set(N_EVENT_REPORT_RQ, p)


def n_event_report_rsp():
    p = N_EVENT_REPORT()
    p.MessageIDBeingRespondedTo = 3
    p.AffectedSOPClassUID = COMMITMENT_CLASS
    p.AffectedSOPInstanceUID = COMMITMENT_INSTANCE
    p.EventTypeID = 2
    p.Status = 0x0110
    return command_set(N_EVENT_REPORT_RSP, p)


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def dcmconv_explicit(implicit_name, explicit_name):
    """Re-encodes an implicit data set with DCMTK: explicit VR, undefined lengths."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.bin")
        subprocess.run(
            ["dcmconv", "-f", "-ti", os.path.join(HERE, implicit_name),
             "-F", "+te", "-e", out],
            check=True,
        )
        with open(out, "rb") as f:
            write(explicit_name, f.read())


def main():
    write("n-action-rq.bin", n_action_rq())
    write("n-action-rsp.bin", n_action_rsp())
    write("n-event-report-rq.bin", n_event_report_rq())
    write("n-event-report-rsp.bin", n_event_report_rsp())
    write("request.implicit.bin", encode(request(), True, True))
    write("report-failures.implicit.bin", encode(report_failures(), True, True))
    write("report-all-failed.implicit.bin", encode(report_all_failed(), True, True))
    dcmconv_explicit("request.implicit.bin", "request.explicit.bin")
    dcmconv_explicit("report-failures.implicit.bin", "report-failures.explicit.bin")


if __name__ == "__main__":
    main()
