"""Throw-away TLS certificates for loopback tests, made with the openssl CLI.

make(dir) writes, into dir:
  ca.pem      a self-signed test CA (the file the client is told to trust)
  server.pem  a certificate for 127.0.0.1 and localhost, signed by that CA
  server.key  its private key
and returns (ca.pem, server.pem, server.key) as paths. Both live one day.
"""
import os
import subprocess


def _run(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make(cert_dir):
    os.makedirs(cert_dir, exist_ok=True)
    p = lambda name: os.path.join(cert_dir, name)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _run("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"),
         "-days", "1", "-subj", "/CN=studywatch test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _run("req", *ec, "-keyout", p("server.key"), "-out", p("server.csr"),
         "-subj", "/CN=127.0.0.1")
    with open(p("server.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"),
         "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "1",
         "-extfile", p("server.ext"), "-out", p("server.pem"))
    return p("ca.pem"), p("server.pem"), p("server.key")
