#!/usr/bin/env python3
"""DIMSE probes for the gateway's integration tests, from a third-party
stack (pynetdicom), printing one JSON line per exchange.

  dimse_probe.py echo  --port N --ids 5,6,7    C-ECHOs with those Message IDs
                                               on one association
  dimse_probe.py find  --port N                a C-FIND-RQ on the CT Image
                                               Storage context (not a service
                                               the gateway offers)
  dimse_probe.py hold  --port N --seconds S    associate, print, hold, release
"""
import argparse
import json
import sys
import time

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_ECHO, C_FIND

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def pause_reactor(assoc):
    """Stops pynetdicom's reactor from taking messages off the DIMSE queue,
    for the whole of the probe's exchanges, the way its own send_c_* methods
    do for one. The reactor raises its paused flag on every turn of its loop
    (1 ms each), not only when it blocks, so seeing it once proves little:
    the probe waits for it, lets 20 ms of turns pass, and waits for it
    again, by when the reactor is blocked at its checkpoint. Pausing and
    resuming around each exchange let a loaded machine's reactor take a
    response as unsolicited (a None response after the DIMSE timeout)."""
    assoc._reactor_checkpoint.clear()
    for _ in range(2):
        while not assoc._is_paused:
            time.sleep(0.0001)
        time.sleep(0.02)


def resume_reactor(assoc):
    assoc._reactor_checkpoint.set()


def exchange(assoc, primitive, context_id):
    assoc.dimse.send_msg(primitive, context_id)
    _, rsp = assoc.dimse.get_msg(block=True)
    return rsp


def context_for(assoc, sop_class):
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == sop_class:
            return cx.context_id
    sys.exit(f"no accepted context for {sop_class}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "find", "hold"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--aet", default="PROBE")
    p.add_argument("--aec", default="STUDYWATCH")
    p.add_argument("--ids", default="1")
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args()

    ae = AE(ae_title=a.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CT)
    assoc = ae.associate(a.host, a.port, ae_title=a.aec)
    if not assoc.is_established:
        print(json.dumps({"association": "rejected"}), flush=True)
        sys.exit(2)
    pause_reactor(assoc)
    if a.mode == "echo":
        cx = context_for(assoc, VERIFICATION)
        for msg_id in [int(x) for x in a.ids.split(",")]:
            req = C_ECHO()
            req.MessageID = msg_id
            req.AffectedSOPClassUID = VERIFICATION
            rsp = exchange(assoc, req, cx)
            print(json.dumps({"message_id": msg_id, "responded_to": rsp.MessageIDBeingRespondedTo, "status": rsp.Status}), flush=True)
    elif a.mode == "find":
        cx = context_for(assoc, CT)
        req = C_FIND()
        req.MessageID = 9
        req.AffectedSOPClassUID = CT
        req.Priority = 0
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = ""
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset
        buf = DicomBytesIO()
        buf.is_little_endian = True
        buf.is_implicit_VR = True
        write_dataset(buf, ident)
        from io import BytesIO
        req.Identifier = BytesIO(buf.getvalue())
        rsp = exchange(assoc, req, cx)
        print(json.dumps({"responded_to": rsp.MessageIDBeingRespondedTo, "status": rsp.Status}), flush=True)
        # The association must still work after the refusal. The echo goes
        # through the same exchange() as the find: mixing it with pynetdicom's
        # own send_c_echo races its reactor on a loaded machine.
        echo = C_ECHO()
        echo.MessageID = 10
        echo.AffectedSOPClassUID = VERIFICATION
        rsp = exchange(assoc, echo, context_for(assoc, VERIFICATION))
        print(json.dumps({"echo_after": int(rsp.Status)}), flush=True)
    else:
        print(json.dumps({"association": "established"}), flush=True)
        time.sleep(a.seconds)
    resume_reactor(assoc)
    assoc.release()


if __name__ == "__main__":
    main()
