#!/usr/bin/env python3
"""The durability floor of a disk: how many instances per second a loop can make
durable when it does nothing but the steps a durable C-STORE needs.

  durability_floor.py WORKDIR FILE...

For each FILE (read into memory before the clock starts: no network, no
parsing, no hashing inside the loop):
  1. write its bytes to a new temp file under WORKDIR/.tmp   (open, write)
  2. fsync the temp file
  3. rename it into WORKDIR/store/
  4. fsync WORKDIR/store (the directory)
  5. one SQLite transaction inserting a row, journal_mode=WAL,
     synchronous=FULL (the commit fsyncs the WAL)
Prints "COUNT SECONDS" on stdout: the loop's wall time.
"""

import os
import sqlite3
import sys
import time


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    work, files = argv[1], argv[2:]
    tmp_dir = os.path.join(work, ".tmp")
    store_dir = os.path.join(work, "store")
    os.makedirs(tmp_dir, exist_ok=True)
    os.makedirs(store_dir, exist_ok=True)
    payloads = []
    for path in files:
        with open(path, "rb") as f:
            payloads.append((os.path.basename(path), f.read()))

    db = sqlite3.connect(os.path.join(work, "catalog.sqlite3"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS instances ("
        " name TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL)"
    )
    store_fd = os.open(store_dir, os.O_RDONLY | os.O_DIRECTORY)

    start = time.perf_counter()
    for name, data in payloads:
        tmp = os.path.join(tmp_dir, name + ".part")
        final = os.path.join(store_dir, name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        os.fsync(store_fd)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO instances (name, path, size) VALUES (?, ?, ?)",
                   (name, final, len(data)))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start

    os.close(store_fd)
    db.close()
    print(f"{len(payloads)} {elapsed:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
