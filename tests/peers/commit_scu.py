#!/usr/bin/env python3
"""A Storage Commitment Push Model SCU (pynetdicom) asking the gateway to
commit instances, for the tests.

  commit_scu.py same HOST PORT CALLED CALLING TRANSACTION CLASS:INSTANCE...
  commit_scu.py new  HOST PORT CALLED CALLING TRANSACTION LISTEN_PORT CLASS:INSTANCE...

`same` keeps the association open and waits there for the N-EVENT-REPORT;
`new` releases at once and waits for the report on an association the
gateway opens to LISTEN_PORT (accepting its SCP/SCU role selection). Either
way it prints one JSON object: the N-ACTION-RSP status, the report's event
type, transaction UID, committed instances and failed ones with reasons.
Exits 1 when no report arrived within 60 seconds.
"""
import json
import sys
import threading

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

WELL_KNOWN = "1.2.840.10008.1.20.1.1"
WAIT = 60


def request(transaction, items):
    ds = Dataset()
    ds.TransactionUID = transaction
    refs = []
    for item in items:
        sop_class, sop_instance = item.split(":", 1)
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_instance
        refs.append(ref)
    ds.ReferencedSOPSequence = refs
    return ds


def main():
    mode, host, port, called, calling, transaction = sys.argv[1:7]
    port = int(port)
    listen_port = None
    items = sys.argv[7:]
    if mode == "new":
        listen_port = int(items.pop(0))

    got = threading.Event()
    result = {}

    def on_report(event):
        info = event.event_information
        result["event_type"] = int(event.request.EventTypeID)
        result["transaction_uid"] = str(info.TransactionUID)
        result["committed"] = [
            str(r.ReferencedSOPInstanceUID) for r in info.get("ReferencedSOPSequence", [])
        ]
        result["failed"] = [
            [str(r.ReferencedSOPInstanceUID), int(r.FailureReason)]
            for r in info.get("FailedSOPSequence", [])
        ]
        result["calling_ae"] = event.assoc.requestor.ae_title
        got.set()
        return 0x0000, None

    ae = AE(ae_title=calling)
    ae.add_requested_context(StorageCommitmentPushModel)
    server = None
    if mode == "new":
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        server = ae.start_server(
            ("127.0.0.1", listen_port),
            block=False,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
        )
    assoc = ae.associate(
        host,
        port,
        ae_title=called,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
    )
    if not assoc.is_established:
        print(json.dumps({"error": "association not established"}))
        sys.exit(1)
    status, _ = assoc.send_n_action(
        request(transaction, items), 1, StorageCommitmentPushModel, WELL_KNOWN
    )
    result["action_status"] = int(status.Status) if status else None
    if mode == "same":
        # Keep the association open: the report comes on it.
        got.wait(WAIT)
        assoc.release()
    else:
        assoc.release()
        got.wait(WAIT)
    if server is not None:
        server.shutdown()
    print(json.dumps(result))
    sys.exit(0 if got.is_set() else 1)


if __name__ == "__main__":
    main()
