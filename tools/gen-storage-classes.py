#!/usr/bin/env python3
"""Regenerates src/scp/storage_classes.rs from the dicom-dictionary-std
source that cargo has downloaded (run `cargo fetch` first).

Every SOP class whose name says Storage is kept, retired ones included;
Storage Commitment and Media Storage Directory are services, not storage of
an instance, and are left out."""
import glob
import os
import re
import sys

root = os.path.join(os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")), "registry", "src")
candidates = sorted(glob.glob(os.path.join(root, "*", "dicom-dictionary-std-*", "src", "uids.rs")))
if not candidates:
    sys.exit("dicom-dictionary-std source not found; run `cargo fetch` first")
path = candidates[-1]
version = path.split("dicom-dictionary-std-")[1].split(os.sep)[0]
src = open(path).read()
block = src[src.index("pub(crate) const SOP_CLASSES"):]
block = block[: block.index("];")]
rows = re.findall(r'E::new\("([0-9.]+)", "([^"]+)", "([^"]+)", SopClass, (?:true|false)\)', block)
keep = [
    r for r in rows
    if "Storage" in r[1] and not any(x in r[1] for x in ("Commitment", "Media Storage Directory"))
]
out = [
    "//! The storage SOP classes the SCP accepts: every SOP class of the standard",
    f"//! dictionary (dicom-dictionary-std {version}, PS3.6) whose name says Storage,",
    "//! retired ones included, because old equipment still sends them. Storage",
    "//! Commitment and Media Storage Directory are services, not storage of an",
    "//! instance, and are left out. Regenerate with",
    "//! `python3 tools/gen-storage-classes.py` when the dictionary is updated.",
    "",
    "/// (UID, keyword) of each storage SOP class.",
    "pub const STORAGE_SOP_CLASSES: &[(&str, &str)] = &[",
]
out += [f'    ("{uid}", "{alias}"),' for uid, _, alias in keep]
out.append("];")
dest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "scp", "storage_classes.rs")
with open(dest, "w") as f:
    f.write("\n".join(out) + "\n")
print(f"{len(keep)} storage SOP classes from dicom-dictionary-std {version}")
