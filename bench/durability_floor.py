#!/usr/bin/env python3
"""The durability floor of a disk: how many instances per second a loop can make
durable when it does nothing but the steps a durable C-STORE needs.

  durability_floor.py WORKDIR FILE...
  durability_floor.py --stream WORKDIR FILE...

For each FILE (read into memory before the clock starts: no network, no
parsing, no hashing inside the loop):
  1. write its bytes to a new temp file under WORKDIR/.tmp   (open, write)
  2. fsync the temp file
  3. rename it into WORKDIR/store/
  4. fsync WORKDIR/store (the directory)
  5. one SQLite transaction inserting a row, journal_mode=WAL,
     synchronous=FULL (the commit fsyncs the WAL)
Prints "COUNT SECONDS DURABLE_SECONDS" on stdout: the loop's wall time, and
the part of it spent in steps 2-5 (what stays to be done once the last byte
of an instance has been written).

With --stream it measures the disk's sequential durable bandwidth instead:
the same bytes, back to back, written to ONE file in 4 MiB writes, then one
fdatasync. Prints "COUNT SECONDS". No receiver that makes every byte durable
before its last answer can take in these files faster than that.
"""

import os
import sqlite3
import sys
import time

STREAM_WRITE = 4 * 1024 * 1024


def load(files):
    payloads = []
    for path in files:
        with open(path, "rb") as f:
            payloads.append((os.path.basename(path), f.read()))
    return payloads


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def stream(work, files):
    payloads = load(files)
    count = len(payloads)
    blob = b"".join(data for _, data in payloads)
    del payloads
    path = os.path.join(work, "stream.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        start = time.perf_counter()
        view = memoryview(blob)
        for off in range(0, len(view), STREAM_WRITE):
            write_all(fd, view[off:off + STREAM_WRITE])
        os.fdatasync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)
    print(f"{count} {elapsed:.6f}")
    return 0


def floor(work, files):
    tmp_dir = os.path.join(work, ".tmp")
    store_dir = os.path.join(work, "store")
    os.makedirs(tmp_dir, exist_ok=True)
    os.makedirs(store_dir, exist_ok=True)
    payloads = load(files)

    db = sqlite3.connect(os.path.join(work, "catalog.sqlite3"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS instances ("
        " name TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL)"
    )
    store_fd = os.open(store_dir, os.O_RDONLY | os.O_DIRECTORY)

    durable = 0.0
    start = time.perf_counter()
    for name, data in payloads:
        tmp = os.path.join(tmp_dir, name + ".part")
        final = os.path.join(store_dir, name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            write_all(fd, data)
            written = time.perf_counter()
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        os.fsync(store_fd)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO instances (name, path, size) VALUES (?, ?, ?)",
                   (name, final, len(data)))
        db.execute("COMMIT")
        durable += time.perf_counter() - written
    elapsed = time.perf_counter() - start

    os.close(store_fd)
    db.close()
    print(f"{len(payloads)} {elapsed:.6f} {durable:.6f}")
    return 0


def main(argv):
    args = argv[1:]
    mode = floor
    if args and args[0] == "--stream":
        mode, args = stream, args[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    return mode(args[0], args[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
