#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for studywatch's notification tests.

    smtp_server.py --port PORT --maildir DIR
                   [--user NAME --password PASSWORD] [--mechanisms LOGIN,PLAIN]
                   [--tls starttls|tls --cert-dir DIR]

Listens on 127.0.0.1:PORT only. Every accepted message is kept as one file in
DIR/new (a maildir; files appear there whole). Besides aiosmtpd's X-Peer,
X-MailFrom and X-RcptTo (the envelope) each message gets:
  X-Test-Auth: "<MECHANISM> <user>" or "none"
  X-Test-TLS:  "starttls", "tls" or "no"
With --user, AUTH (PLAIN and LOGIN, or only --mechanisms) is required before
MAIL. With --tls starttls, STARTTLS is required before anything else and AUTH is
only offered after it (as NHSmail does); with --tls tls the connection is TLS
from the first byte. Certificates are made at start in --cert-dir (ca.pem is
the CA to trust). Recipients whose local part is "tempfail" get 451, "permfail"
550. Stops on SIGINT or SIGTERM.

Needs Debian's python3-aiosmtpd and the openssl CLI (for --tls).
"""
import argparse
import logging
import os
import signal
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.handlers import Mailbox  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

import testcerts  # noqa: E402

MECHANISMS = {"LOGIN", "PLAIN"}

# aiosmtpd 1.4 logs a warning about its own use of a deprecated attribute on
# every AUTH; errors (a session that fails) are still logged.
logging.getLogger("mail.log").setLevel(logging.ERROR)


class Handler(Mailbox):
    def __init__(self, mail_dir, tls_mode):
        super().__init__(mail_dir)
        self.tls_mode = tls_mode

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local == "tempfail":
            return "451 4.3.0 Try again later"
        if local == "permfail":
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = self.prepare_message(session, envelope)
        message["X-Test-Auth"] = session.auth_data or "none"
        if session.ssl is not None:
            tls = "starttls"
        elif self.tls_mode == "tls":
            tls = "tls"
        else:
            tls = "no"
        message["X-Test-TLS"] = tls
        self.handle_message(message)
        return "250 2.0.0 OK: queued"


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == self.user
              and auth_data.password == self.password)
        if not ok:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=f"{mechanism} {self.user.decode()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--mechanisms", default="LOGIN,PLAIN")
    ap.add_argument("--tls", choices=["starttls", "tls"])
    ap.add_argument("--cert-dir")
    a = ap.parse_args()
    if (a.user is None) != (a.password is None):
        ap.error("--user and --password go together")
    if a.tls and not a.cert_dir:
        ap.error("--tls needs --cert-dir")

    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(a.maildir, sub), exist_ok=True)
    kwargs = {}
    if a.user is not None:
        offered = {m.strip().upper() for m in a.mechanisms.split(",")}
        kwargs.update(
            authenticator=Authenticator(a.user, a.password),
            auth_required=True,
            auth_exclude_mechanism=sorted(MECHANISMS - offered),
            # Implicit TLS encrypts everything, but aiosmtpd only counts
            # STARTTLS as encryption; plain mode is for loopback tests.
            auth_require_tls=(a.tls == "starttls"),
        )
    controller_kwargs = {}
    if a.tls:
        _, cert, key = testcerts.make(a.cert_dir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if a.tls == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        else:
            controller_kwargs["ssl_context"] = context

    # Block the stop signals in every thread; the main thread waits for them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    controller = Controller(
        Handler(a.maildir, a.tls),
        hostname="127.0.0.1",
        port=a.port,
        server_hostname="studywatch-test-smtp",
        **controller_kwargs,
        **kwargs,
    )
    controller.start()
    print(f"listening on 127.0.0.1:{a.port}", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    controller.stop()


if __name__ == "__main__":
    main()
