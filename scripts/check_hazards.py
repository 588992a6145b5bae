#!/usr/bin/env python3
"""Checks the clinical safety hazard log (DCB0129) against the repository
and against the test run that just happened.

    check_hazards.py [--root DIR] [--junit FILE] [--test-list FILE]
                     [--write-summary]

Every hazard is one file, docs/clinical-safety/hazards/H-NNN.md: TOML front
matter between two `+++` lines, then Markdown for a reader. The format is
described in docs/clinical-safety/hazards/README.md. This script checks:

  1. every hazard file parses, has every field it must have and no other,
     and each value is from its vocabulary;
  2. each likelihood, consequence and rating agrees with the NHS 5x5 matrix
     (encoded below as data), and no residual rating exceeds its initial
     one or is 4 or 5 (unacceptable whatever the status);
  3. a hazard whose residual rating is 3 carries an `acceptance` (who
     accepted it, when, and why); a transferred hazard names whom it is
     transferred to and is listed in the deployer's pack; a closed one
     says why it was closed;
  4. every hazard has a design control that names a test through the
     product's interfaces (`it::...`), and every design or test control
     names the code it lives in and the tests that exercise it;
  5. every code reference (`path` or `path#symbol`) exists in the repository;
  6. with --test-list (the JSON of `cargo nextest list`), every named test
     exists in the suite; with --junit (nextest's JUnit report), every
     named test ran in this run and passed;
  7. the IDs in docs/clinical-safety/hazards/INDEX and the hazard files are
     the same set, so a deleted hazard fails (hazards are closed, never
     deleted);
  8. the hazard summary table in safety-case-report.md is what the hazard
     files say (--write-summary rewrites it).

Test names: `it::MODULE::TEST` is a test of the integration binary
(tests/it/, nextest binary id `studywatch::it`); `lib::MODULE::...::TEST`
is a unit test of the library (nextest binary id `studywatch`).

Exit status: 0 when everything holds, 1 otherwise (each problem is printed
with its file and field), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

# --- the NHS 5x5 risk matrix, as data ----------------------------------------

LIKELIHOODS = ["Very Low", "Low", "Medium", "High", "Very High"]
CONSEQUENCES = ["Minor", "Significant", "Considerable", "Major", "Catastrophic"]
# RATING[likelihood score - 1][consequence score - 1]
RATING = [
    # Minor Significant Considerable Major Catastrophic
    [1, 1, 2, 2, 3],  # Very Low
    [1, 2, 2, 3, 4],  # Low
    [2, 2, 3, 3, 4],  # Medium
    [2, 3, 3, 4, 5],  # High
    [3, 4, 4, 5, 5],  # Very High
]
# A residual rating from this value up needs a recorded acceptance.
ACCEPTANCE_FROM = 3
# A residual rating from this value up is never acceptable.
UNACCEPTABLE_FROM = 4

STATUSES = ("open", "transferred", "closed")
KINDS = ("design", "test", "training", "business_process")
# Kinds whose controls must name the code they live in and their tests.
BUILT_KINDS = ("design", "test")

# Test-name prefixes and the nextest binary IDs they stand for.
BINARIES = {"it": "studywatch::it", "lib": "studywatch"}
TEST_NAME = re.compile(r"^(it|lib)(::[A-Za-z_][A-Za-z0-9_]*){2,}$")
ID = re.compile(r"^H-\d{3}$")

HAZARD_DIR = Path("docs/clinical-safety/hazards")
INDEX = HAZARD_DIR / "INDEX"
REPORT = Path("docs/clinical-safety/safety-case-report.md")
DEPLOYER_PACK = Path("docs/clinical-safety/deployer-pack.md")
SUMMARY_BEGIN = (
    "<!-- hazard-summary: begin. Generated from the hazard files by "
    "`python3 scripts/check_hazards.py --write-summary`; do not edit by hand. -->"
)
SUMMARY_END = "<!-- hazard-summary: end -->"

TOP_REQUIRED = (
    "id",
    "title",
    "status",
    "cause",
    "effect",
    "hazard",
    "harm",
    "initial",
    "residual",
    "controls",
)
TOP_OPTIONAL = ("acceptance", "transferred_to", "closure")
RISK_KEYS = ("likelihood", "likelihood_score", "consequence", "consequence_score", "rating")
CONTROL_KEYS = ("kind", "description", "code", "tests")
ACCEPTANCE_KEYS = ("by", "date", "rationale")


@dataclass
class Control:
    kind: str
    description: str
    code: list[str]
    tests: list[str]


@dataclass
class Hazard:
    path: Path  # relative to the root
    id: str
    title: str
    status: str
    initial: dict
    residual: dict
    controls: list[Control] = field(default_factory=list)


class Problems:
    """Problems found, each naming a file and, where there is one, a field."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: Path | str, field_name: str | None, message: str) -> None:
        prefix = f"{where}: {field_name}: " if field_name else f"{where}: "
        self.items.append(prefix + message)

    def __bool__(self) -> bool:
        return bool(self.items)


# --- reading one hazard file --------------------------------------------------


def split_front_matter(text: str) -> tuple[str, str] | None:
    """The TOML between the opening and closing `+++` lines, and the body."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "+++":
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() == "+++":
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    return None


def is_text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def check_risk(rel: Path, name: str, value, problems: Problems) -> dict | None:
    if not isinstance(value, dict):
        problems.add(rel, name, "must be a table with " + ", ".join(RISK_KEYS))
        return None
    ok = True
    for key in RISK_KEYS:
        if key not in value:
            problems.add(rel, f"{name}.{key}", "missing")
            ok = False
    for key in value:
        if key not in RISK_KEYS:
            problems.add(rel, f"{name}.{key}", "unknown field")
            ok = False
    if not ok:
        return None
    likelihood, consequence = value["likelihood"], value["consequence"]
    if likelihood not in LIKELIHOODS:
        problems.add(
            rel, f"{name}.likelihood", f"{likelihood!r} is not one of {', '.join(LIKELIHOODS)}"
        )
        ok = False
    if consequence not in CONSEQUENCES:
        problems.add(
            rel,
            f"{name}.consequence",
            f"{consequence!r} is not one of {', '.join(CONSEQUENCES)}",
        )
        ok = False
    for key in ("likelihood_score", "consequence_score", "rating"):
        v = value[key]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 5:
            problems.add(rel, f"{name}.{key}", f"{v!r} is not a whole number from 1 to 5")
            ok = False
    if not ok:
        return None
    l_score = LIKELIHOODS.index(likelihood) + 1
    c_score = CONSEQUENCES.index(consequence) + 1
    if value["likelihood_score"] != l_score:
        problems.add(
            rel,
            f"{name}.likelihood_score",
            f"is {value['likelihood_score']}, but {likelihood} is {l_score}",
        )
        ok = False
    if value["consequence_score"] != c_score:
        problems.add(
            rel,
            f"{name}.consequence_score",
            f"is {value['consequence_score']}, but {consequence} is {c_score}",
        )
        ok = False
    expected = RATING[l_score - 1][c_score - 1]
    if value["rating"] != expected:
        problems.add(
            rel,
            f"{name}.rating",
            f"is {value['rating']}, but the matrix gives {expected} for "
            f"{likelihood} x {consequence}",
        )
        ok = False
    return value if ok else None


def check_code_ref(root: Path, rel: Path, where: str, ref, problems: Problems) -> None:
    if not is_text(ref):
        problems.add(rel, where, f"{ref!r} is not a repository path")
        return
    path_text, _, symbol = ref.partition("#")
    path = Path(path_text)
    if path.is_absolute() or ".." in path.parts or path_text != path_text.strip():
        problems.add(rel, where, f"{ref!r} must be a path inside the repository")
        return
    full = root / path
    if not full.exists():
        problems.add(rel, where, f"{path_text} does not exist")
        return
    if symbol:
        if not full.is_file():
            problems.add(rel, where, f"{path_text} is not a file, so it has no symbol {symbol}")
            return
        text = full.read_text(encoding="utf-8", errors="replace")
        if not re.search(r"(?<![A-Za-z0-9_])" + re.escape(symbol) + r"(?![A-Za-z0-9_])", text):
            problems.add(rel, where, f"{path_text} has no symbol {symbol}")


def read_hazard(root: Path, path: Path, problems: Problems) -> Hazard | None:
    rel = path.relative_to(root)
    text = path.read_text(encoding="utf-8")
    split = split_front_matter(text)
    if split is None:
        problems.add(rel, None, "does not start with TOML front matter between two +++ lines")
        return None
    front, body = split
    try:
        data = tomllib.loads(front)
    except tomllib.TOMLDecodeError as e:
        problems.add(rel, None, f"front matter is not valid TOML: {e}")
        return None
    if not body.strip():
        problems.add(rel, None, "has no Markdown body explaining the hazard")

    before = len(problems.items)
    for key in TOP_REQUIRED:
        if key not in data:
            problems.add(rel, key, "missing")
    for key in data:
        if key not in TOP_REQUIRED and key not in TOP_OPTIONAL:
            problems.add(rel, key, "unknown field")
    if len(problems.items) > before:
        return None

    hazard_id = data["id"]
    if not isinstance(hazard_id, str) or not ID.match(hazard_id):
        problems.add(rel, "id", f"{hazard_id!r} is not of the form H-NNN")
    elif path.stem != hazard_id:
        problems.add(rel, "id", f"{hazard_id} does not match the file name {path.name}")
    for key in ("title", "effect", "hazard", "harm"):
        if not is_text(data[key]):
            problems.add(rel, key, "must be non-empty text")
    cause = data["cause"]
    if not isinstance(cause, list) or not cause or not all(is_text(c) for c in cause):
        problems.add(rel, "cause", "must be a non-empty list of non-empty texts")
    status = data["status"]
    if status not in STATUSES:
        problems.add(rel, "status", f"{status!r} is not one of {', '.join(STATUSES)}")

    initial = check_risk(rel, "initial", data["initial"], problems)
    residual = check_risk(rel, "residual", data["residual"], problems)
    if initial and residual:
        if residual["rating"] > initial["rating"]:
            problems.add(
                rel,
                "residual.rating",
                f"{residual['rating']} is higher than the initial rating {initial['rating']}",
            )
        if residual["rating"] >= UNACCEPTABLE_FROM:
            problems.add(
                rel,
                "residual.rating",
                f"{residual['rating']} is unacceptable whatever the status: "
                "add controls until it is 3 or less",
            )

    acceptance = data.get("acceptance")
    if acceptance is not None:
        if not isinstance(acceptance, dict):
            problems.add(rel, "acceptance", "must be a table with by, date and rationale")
        else:
            for key in ACCEPTANCE_KEYS:
                if key not in acceptance:
                    problems.add(rel, f"acceptance.{key}", "missing")
            for key in acceptance:
                if key not in ACCEPTANCE_KEYS:
                    problems.add(rel, f"acceptance.{key}", "unknown field")
            for key in ("by", "rationale"):
                if key in acceptance and not is_text(acceptance[key]):
                    problems.add(rel, f"acceptance.{key}", "must be non-empty text")
            if "date" in acceptance and not isinstance(acceptance["date"], datetime.date):
                problems.add(rel, "acceptance.date", "must be a TOML date (2026-11-23)")
    if residual and residual["rating"] >= ACCEPTANCE_FROM and acceptance is None:
        problems.add(
            rel,
            "acceptance",
            f"missing: the residual rating is {residual['rating']}, which needs a "
            "recorded acceptance (who, when, why)",
        )
    if status == "transferred" and not is_text(data.get("transferred_to")):
        problems.add(rel, "transferred_to", "missing: say to whom the hazard is transferred")
    if status != "transferred" and "transferred_to" in data:
        problems.add(rel, "transferred_to", f"only a transferred hazard has one (status is {status})")
    if status == "closed" and not is_text(data.get("closure")):
        problems.add(rel, "closure", "missing: say why the hazard was closed")

    controls: list[Control] = []
    raw = data["controls"]
    if not isinstance(raw, list) or not raw:
        problems.add(rel, "controls", "must list at least one control")
        raw = []
    for i, c in enumerate(raw):
        where = f"controls[{i}]"
        if not isinstance(c, dict):
            problems.add(rel, where, "must be a table")
            continue
        bad = False
        for key in CONTROL_KEYS:
            if key not in c:
                problems.add(rel, f"{where}.{key}", "missing")
                bad = True
        for key in c:
            if key not in CONTROL_KEYS:
                problems.add(rel, f"{where}.{key}", "unknown field")
                bad = True
        if bad:
            continue
        if c["kind"] not in KINDS:
            problems.add(rel, f"{where}.kind", f"{c['kind']!r} is not one of {', '.join(KINDS)}")
        if not is_text(c["description"]):
            problems.add(rel, f"{where}.description", "must be non-empty text")
        code, tests = c["code"], c["tests"]
        if not isinstance(code, list):
            problems.add(rel, f"{where}.code", "must be a list of repository paths")
            code = []
        if not isinstance(tests, list):
            problems.add(rel, f"{where}.tests", "must be a list of test names")
            tests = []
        if c["kind"] in BUILT_KINDS:
            if not code:
                problems.add(rel, f"{where}.code", f"a {c['kind']} control names the code it lives in")
            if not tests:
                problems.add(rel, f"{where}.tests", f"a {c['kind']} control names the tests that exercise it")
        for j, ref in enumerate(code):
            check_code_ref(root, rel, f"{where}.code[{j}]", ref, problems)
        good_tests = []
        for j, name in enumerate(tests):
            if not isinstance(name, str) or not TEST_NAME.match(name):
                problems.add(
                    rel,
                    f"{where}.tests[{j}]",
                    f"{name!r} is not a test name (it::MODULE::TEST or lib::MODULE::...::TEST)",
                )
            else:
                good_tests.append(name)
        controls.append(Control(c["kind"], c["description"], code, good_tests))

    if controls and not any(
        c.kind == "design" and any(t.startswith("it::") for t in c.tests) for c in controls
    ):
        problems.add(
            rel,
            "controls",
            "no design control names a test through the product's interfaces (an it:: test)",
        )
    if initial is None or residual is None or status not in STATUSES:
        return None
    return Hazard(rel, hazard_id, data["title"], status, initial, residual, controls)


# --- the index ------------------------------------------------------------------


def read_index(root: Path, problems: Problems) -> list[str] | None:
    path = root / INDEX
    if not path.exists():
        problems.add(INDEX, None, "missing: the committed list of every hazard ID")
        return None
    ids: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not ID.match(text):
            problems.add(INDEX, f"line {n}", f"{text!r} is not a hazard ID (H-NNN)")
            continue
        if text in ids:
            problems.add(INDEX, f"line {n}", f"{text} is listed twice")
            continue
        ids.append(text)
    return ids


# --- the test run -----------------------------------------------------------------


def split_test(name: str) -> tuple[str, str]:
    prefix, _, rest = name.partition("::")
    return BINARIES[prefix], rest


def read_test_list(path: Path) -> set[tuple[str, str]]:
    """(binary id, test name) of every test `cargo nextest list
    --message-format json` printed."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out = set()
    for binary_id, suite in data.get("rust-suites", {}).items():
        for test in suite.get("testcases", {}):
            out.add((binary_id, test))
    return out


def read_junit(path: Path) -> dict[tuple[str, str], str]:
    """(binary id, test name) -> passed | failed | skipped, from nextest's
    JUnit report: one <testsuite> per binary (named by its binary id), one
    <testcase> per test (named by its path in the binary)."""
    results: dict[tuple[str, str], str] = {}
    tree = ET.parse(path)
    for suite in tree.getroot().iter("testsuite"):
        binary_id = suite.get("name", "")
        for case in suite.iter("testcase"):
            tags = {child.tag for child in case}
            if "failure" in tags or "error" in tags:
                outcome = "failed"
            elif "skipped" in tags:
                outcome = "skipped"
            else:
                outcome = "passed"
            results[(binary_id, case.get("name", ""))] = outcome
    return results


def check_tests(
    hazards: list[Hazard],
    suite: set[tuple[str, str]] | None,
    junit: dict[tuple[str, str], str] | None,
    junit_path: Path | None,
    problems: Problems,
) -> None:
    for h in hazards:
        for i, c in enumerate(h.controls):
            for j, name in enumerate(c.tests):
                where = f"controls[{i}].tests[{j}]"
                key = split_test(name)
                if suite is not None and key not in suite:
                    problems.add(
                        h.path, where, f"{name} is not in the test suite (cargo nextest list)"
                    )
                    continue
                if junit is None:
                    continue
                outcome = junit.get(key)
                if outcome is None:
                    problems.add(
                        h.path,
                        where,
                        f"{name} did not run in this run (not in {junit_path})"
                        if suite is not None
                        else f"{name} is not in {junit_path}: it does not exist or did not run",
                    )
                elif outcome != "passed":
                    problems.add(h.path, where, f"{name} {outcome} in this run")


# --- the summary table ---------------------------------------------------------------


def risk_text(r: dict) -> str:
    return f"{r['rating']} ({r['likelihood']} × {r['consequence']})"


def render_summary(hazards: list[Hazard]) -> str:
    lines = [
        "| ID | Hazard | Status | Initial risk | Residual risk | Controls (design) | Named tests |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in sorted(hazards, key=lambda h: h.id):
        tests = sorted({t for c in h.controls for t in c.tests})
        design = sum(1 for c in h.controls if c.kind == "design")
        lines.append(
            f"| [{h.id}](hazards/{h.id}.md) | {h.title} | {h.status} | "
            f"{risk_text(h.initial)} | {risk_text(h.residual)} | "
            f"{len(h.controls)} ({design}) | {len(tests)} |"
        )
    counts = {s: sum(1 for h in hazards if h.status == s) for s in STATUSES}
    top = max((h.residual["rating"] for h in hazards), default=0)
    lines.append("")
    lines.append(
        f"{len(hazards)} hazards: {counts['open']} open, {counts['transferred']} "
        f"transferred, {counts['closed']} closed. Highest residual rating: {top}."
    )
    return "\n".join(lines) + "\n"


def replace_summary(text: str, table: str) -> str | None:
    begin = text.find(SUMMARY_BEGIN)
    end = text.find(SUMMARY_END)
    if begin < 0 or end < begin:
        return None
    return text[: begin + len(SUMMARY_BEGIN)] + "\n" + table + text[end:]


# --- main ------------------------------------------------------------------------------


def run(
    root: Path,
    junit_path: Path | None,
    list_path: Path | None,
    write_summary: bool,
    out=sys.stdout,
) -> int:
    problems = Problems()
    hazard_dir = root / HAZARD_DIR
    if not hazard_dir.is_dir():
        problems.add(HAZARD_DIR, None, "missing")
        files = []
    else:
        files = sorted(hazard_dir.glob("H-*.md"))
    hazards = [h for h in (read_hazard(root, f, problems) for f in files) if h]

    index = read_index(root, problems)
    if index is not None:
        on_disk = {f.stem for f in files}
        for hid in index:
            if hid not in on_disk:
                problems.add(
                    INDEX,
                    None,
                    f"{hid} is listed but {HAZARD_DIR / (hid + '.md')} is missing: "
                    "hazards are never deleted, only closed",
                )
        for f in files:
            if f.stem not in index:
                problems.add(f.relative_to(root), None, f"{f.stem} is not listed in {INDEX}")

    pack = root / DEPLOYER_PACK
    pack_text = pack.read_text(encoding="utf-8") if pack.exists() else None
    for h in hazards:
        if h.status == "transferred":
            if pack_text is None:
                problems.add(DEPLOYER_PACK, None, f"missing, but {h.id} is transferred")
            elif not re.search(re.escape(h.id) + r"(?!\d)", pack_text):
                problems.add(h.path, "status", f"transferred, but {DEPLOYER_PACK} does not mention {h.id}")

    suite = junit = None
    unreadable = False
    if list_path is not None:
        try:
            suite = read_test_list(list_path)
        except (OSError, ValueError) as e:
            problems.add(list_path, None, f"cannot be read as nextest's JSON test list: {e}")
            unreadable = True
    if junit_path is not None:
        try:
            junit = read_junit(junit_path)
        except (OSError, ET.ParseError) as e:
            problems.add(junit_path, None, f"cannot be read as a JUnit report: {e}")
            unreadable = True
    if not unreadable:
        check_tests(hazards, suite, junit, junit_path, problems)

    report = root / REPORT
    if not report.exists():
        problems.add(REPORT, None, "missing")
    else:
        text = report.read_text(encoding="utf-8")
        updated = replace_summary(text, render_summary(hazards))
        if updated is None:
            problems.add(REPORT, None, "has no hazard summary markers (hazard-summary: begin/end)")
        elif updated != text:
            if write_summary:
                report.write_text(updated, encoding="utf-8")
                print(f"check_hazards: rewrote the hazard summary in {REPORT}", file=out)
            else:
                problems.add(
                    REPORT,
                    "hazard summary",
                    "does not match the hazard files; run "
                    "`python3 scripts/check_hazards.py --write-summary` and commit the result",
                )

    if problems:
        for p in problems.items:
            print(p, file=out)
        print(f"check_hazards: {len(problems.items)} problem(s) in the hazard log", file=out)
        return 1
    n_tests = len({t for h in hazards for c in h.controls for t in c.tests})
    checked = []
    if suite is not None:
        checked.append("exist in the suite")
    if junit is not None:
        checked.append("ran and passed in this run")
    print(
        f"check_hazards: {len(hazards)} hazards, "
        f"{sum(len(h.controls) for h in hazards)} controls, {n_tests} named tests"
        + (f" ({' and '.join(checked)})" if checked else " (not checked against a test run)")
        + ": all checks pass",
        file=out,
    )
    return 0


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parent.parent,
        help="the repository (default: the one this script is in)",
    )
    parser.add_argument("--junit", type=Path, help="nextest's JUnit report of this run")
    parser.add_argument(
        "--test-list", type=Path, help="output of `cargo nextest list --message-format json`"
    )
    parser.add_argument(
        "--write-summary", action="store_true",
        help="rewrite the hazard summary table in safety-case-report.md",
    )
    args = parser.parse_args(argv)
    return run(args.root.resolve(), args.junit, args.test_list, args.write_summary, out)


if __name__ == "__main__":
    sys.exit(main())
