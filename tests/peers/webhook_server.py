#!/usr/bin/env python3
"""An HTTPS webhook receiver for studywatch's notification tests (stdlib only).

    webhook_server.py --port PORT --cert-dir DIR --out DIR
                      [--secret-file FILE] [--status CODE]

Listens on 127.0.0.1:PORT with TLS (certificates made at start in --cert-dir;
ca.pem is the CA to trust). Each POST is answered with --status (default 200)
and kept as OUT/<n>.json, written whole (temp file, then rename):
  {"path": ..., "headers": {lower-case name: value}, "body": <text>,
   "signature_ok": true | false | null}
signature_ok is this script's own check of X-Studywatch-Signature
("sha256=" + hex HMAC-SHA256(secret, body)) with Python's hmac module, so the
test does not only agree with studywatch's verify_signature; null without
--secret-file. Stops on SIGINT or SIGTERM.
"""
import argparse
import hashlib
import hmac
import http.server
import json
import os
import signal
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import testcerts  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--secret-file")
    ap.add_argument("--status", type=int, default=200)
    a = ap.parse_args()

    secret = None
    if a.secret_file:
        with open(a.secret_file, "rb") as f:
            secret = f.read().rstrip(b"\r\n")
    os.makedirs(a.out, exist_ok=True)
    counter = iter(range(1, 1 << 30))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            ok = None
            if secret is not None:
                want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
                got = self.headers.get("X-Studywatch-Signature", "")
                ok = hmac.compare_digest(want, got)
            record = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "signature_ok": ok,
            }
            with lock:
                n = next(counter)
            tmp = os.path.join(a.out, f".{n}.tmp")
            with open(tmp, "w") as f:
                json.dump(record, f)
            os.rename(tmp, os.path.join(a.out, f"{n}.json"))
            answer = b'{"status":"success"}'
            self.send_response(a.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    _, cert, key = testcerts.make(a.cert_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"listening on 127.0.0.1:{a.port}", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    server.shutdown()


if __name__ == "__main__":
    main()
