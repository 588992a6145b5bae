#!/usr/bin/env python3
"""Replaces one benchmark's section of a Markdown file with stdin.

  write_section.py FILE NAME < content

A section runs from the line `<!-- bench:NAME:begin -->` to the line
`<!-- bench:NAME:end -->`, markers included. Each bench script writes only its
own section, so docs/benchmarks.md can hold several benchmarks and
hand-written text around them. The section is replaced in place when the
file has one. Otherwise it is appended at the end, after a blank line. A
missing FILE is created with a `# Benchmarks` title. The rest of the file is
left byte for byte as it was. The file is replaced atomically (a temporary
file beside it, then a rename).

Exit status: 0 written; 1 the file has a begin marker without its end marker
(or the markers are doubled or out of order), so nothing was written; 2 usage.
"""
import os
import re
import sys


def main():
    if len(sys.argv) != 3 or not re.fullmatch(r"[a-z0-9_-]+", sys.argv[2]):
        print("usage: write_section.py FILE NAME < content   (NAME: a-z, 0-9, _ or -)",
              file=sys.stderr)
        return 2
    path, name = sys.argv[1], sys.argv[2]
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    content = sys.stdin.read()
    section = f"{begin}\n{content.rstrip(chr(10))}\n{end}\n"

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"

    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == end]
    if not starts and not ends:
        if text and not text.endswith("\n"):
            text += "\n"
        new = text + ("\n" if text.strip() else "") + section
    elif len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0]:
        new = "".join(lines[:starts[0]]) + section + "".join(lines[ends[0] + 1:])
    else:
        print(f"write_section.py: {path}: the markers of section {name!r} are unbalanced "
              f"({len(starts)} begin, {len(ends)} end); nothing written", file=sys.stderr)
        return 1

    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
