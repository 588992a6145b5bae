#!/usr/bin/env python3
"""Tests of scripts/check_hazards.py: each builds a small repository in a
temporary directory (hazard files, their index, the safety case report and
deployer's pack, a source file, a nextest test list and JUnit report), then
breaks one thing and checks that the checker fails and names it.

    python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import io
import json
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_hazards  # noqa: E402

# Tests of the fixture's suite: (binary id, name), and whether each passed.
SUITE = {
    ("studywatch::it", "ingest::a_study_is_stored"): "passed",
    ("studywatch::it", "watchdog::an_alarm_is_raised"): "passed",
    ("studywatch", "watchdog::rules::tests::the_first_match_wins"): "passed",
}


def hazard(
    hid,
    *,
    status="closed",
    initial=("Medium", 3, "Major", 4, 3),
    residual=("Very Low", 1, "Major", 4, 2),
    tests=('"it::ingest::a_study_is_stored"', '"lib::watchdog::rules::tests::the_first_match_wins"'),
    code=('"src/ingest.rs#store"',),
    extra="",
):
    """A hazard file's text; each keyword replaces one part of a good one."""
    risk = lambda name, r: textwrap.dedent(  # noqa: E731
        f"""
        [{name}]
        likelihood = "{r[0]}"
        likelihood_score = {r[1]}
        consequence = "{r[2]}"
        consequence_score = {r[3]}
        rating = {r[4]}
        """
    )
    closure = 'closure = "Controls built and verified."\n' if status == "closed" else ""
    transfer = 'transferred_to = "the deploying organisation"\n' if status == "transferred" else ""
    return (
        "+++\n"
        f'id = "{hid}"\n'
        f'title = "Something goes wrong ({hid})"\n'
        f'status = "{status}"\n'
        f"{closure}{transfer}"
        'cause = ["a cause"]\n'
        'effect = "an effect"\n'
        'hazard = "a hazard"\n'
        'harm = "a harm"\n'
        f"{extra}"
        f"{risk('initial', initial)}"
        f"{risk('residual', residual)}"
        "\n[[controls]]\n"
        'kind = "design"\n'
        'description = "the gateway guards against it"\n'
        f"code = [{', '.join(code)}]\n"
        f"tests = [{', '.join(tests)}]\n"
        "\n[[controls]]\n"
        'kind = "training"\n'
        'description = "people are told"\n'
        "code = []\n"
        "tests = []\n"
        "+++\n\n"
        f"# {hid}\n\nWhat can go wrong, for a reader.\n"
    )


def junit_xml(results):
    suites = {}
    for (binary, name), outcome in results.items():
        suites.setdefault(binary, []).append((name, outcome))
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="nextest-run">']
    for binary, cases in suites.items():
        parts.append(f'<testsuite name="{binary}" tests="{len(cases)}">')
        for name, outcome in cases:
            body = {
                "passed": "",
                "failed": '<failure type="test failure">assertion failed</failure>',
                "skipped": "<skipped/>",
            }[outcome]
            parts.append(f'<testcase name="{name}" classname="{binary}">{body}</testcase>')
        parts.append("</testsuite>")
    parts.append("</testsuites>\n")
    return "\n".join(parts)


def test_list_json(names):
    suites = {}
    for binary, name in names:
        suites.setdefault(binary, {"binary-id": binary, "testcases": {}})
        suites[binary]["testcases"][name] = {"kind": "test", "ignored": False}
    return json.dumps({"rust-suites": suites})


class Fixture:
    """A good repository; tests break one thing at a time."""

    def __init__(self, tmp: Path):
        self.root = tmp
        (tmp / "src").mkdir()
        (tmp / "src/ingest.rs").write_text("pub fn store() {}\n")
        self.hazards = tmp / "docs/clinical-safety/hazards"
        self.hazards.mkdir(parents=True)
        self.write("H-001", hazard("H-001"))
        self.write(
            "H-002",
            hazard(
                "H-002",
                status="transferred",
                residual=("Low", 2, "Major", 4, 3),
                tests=('"it::watchdog::an_alarm_is_raised"',),
                extra=(
                    "acceptance = { by = \"the project\", date = 2026-11-23, "
                    "rationale = \"the trust configures the rest\" }\n"
                ),
            ),
        )
        (self.hazards / "INDEX").write_text("# every hazard ever raised\nH-001\nH-002\n")
        docs = tmp / "docs/clinical-safety"
        (docs / "deployer-pack.md").write_text("# Deployer's pack\n\nH-002 is yours.\n")
        (docs / "safety-case-report.md").write_text(
            f"# Report\n\n{check_hazards.SUMMARY_BEGIN}\n{check_hazards.SUMMARY_END}\n\nEnd.\n"
        )
        self.suite = dict(SUITE)
        self.listed = set(SUITE)
        code, out = self.check(write_summary=True)
        assert code == 0, out

    def write(self, hid, text):
        (self.hazards / f"{hid}.md").write_text(text)

    def check(self, *, write_summary=False, with_run=True):
        junit = self.root / "junit.xml"
        junit.write_text(junit_xml(self.suite))
        listing = self.root / "list.json"
        listing.write_text(test_list_json(self.listed))
        argv = ["--root", str(self.root)]
        if with_run:
            argv += ["--junit", str(junit), "--test-list", str(listing)]
        if write_summary:
            argv.append("--write-summary")
        out = io.StringIO()
        code = check_hazards.main(argv, out=out)
        return code, out.getvalue()


class CheckHazards(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.f = Fixture(Path(self._tmp.name))

    def tearDown(self):
        self._tmp.cleanup()

    def fails_with(self, *needles):
        code, out = self.f.check()
        self.assertEqual(code, 1, out)
        for needle in needles:
            self.assertIn(needle, out)
        return out

    def test_a_good_hazard_log_passes(self):
        code, out = self.f.check()
        self.assertEqual(code, 0, out)
        self.assertIn("2 hazards", out)
        self.assertIn("ran and passed in this run", out)

    def test_a_named_test_that_does_not_exist_fails(self):
        self.f.write("H-001", hazard("H-001", tests=('"it::ingest::no_such_test"',)))
        self.fails_with(
            "H-001.md: controls[0].tests[0]: it::ingest::no_such_test is not in the test suite"
        )

    def test_a_named_test_that_did_not_run_fails(self):
        del self.f.suite[("studywatch::it", "ingest::a_study_is_stored")]
        self.fails_with("it::ingest::a_study_is_stored did not run in this run")

    def test_without_a_test_list_a_test_absent_from_the_report_fails(self):
        del self.f.suite[("studywatch::it", "ingest::a_study_is_stored")]
        junit = self.f.root / "junit.xml"
        junit.write_text(junit_xml(self.f.suite))
        out = io.StringIO()
        code = check_hazards.main(["--root", str(self.f.root), "--junit", str(junit)], out=out)
        self.assertEqual(code, 1, out.getvalue())
        self.assertIn("it does not exist or did not run", out.getvalue())

    def test_a_named_test_that_failed_or_was_skipped_fails(self):
        self.f.suite[("studywatch::it", "ingest::a_study_is_stored")] = "failed"
        self.f.suite[("studywatch", "watchdog::rules::tests::the_first_match_wins")] = "skipped"
        self.fails_with(
            "it::ingest::a_study_is_stored failed in this run",
            "lib::watchdog::rules::tests::the_first_match_wins skipped in this run",
        )

    def test_a_removed_hazard_file_fails(self):
        (self.f.hazards / "H-002.md").unlink()
        self.fails_with("H-002 is listed but", "never deleted")

    def test_a_hazard_left_out_of_the_index_fails(self):
        (self.f.hazards / "INDEX").write_text("H-001\n")
        self.fails_with("H-002.md: H-002 is not listed in")

    def test_an_open_hazard_with_residual_3_needs_an_acceptance(self):
        self.f.write(
            "H-001",
            hazard("H-001", status="open", residual=("Low", 2, "Major", 4, 3)),
        )
        self.fails_with("H-001.md: acceptance: missing: the residual rating is 3")

    def test_residual_4_is_unacceptable_even_when_accepted(self):
        self.f.write(
            "H-001",
            hazard(
                "H-001",
                status="open",
                initial=("High", 4, "Major", 4, 4),
                residual=("High", 4, "Major", 4, 4),
                extra='acceptance = { by = "x", date = 2026-11-23, rationale = "y" }\n',
            ),
        )
        self.fails_with("H-001.md: residual.rating: 4 is unacceptable")

    def test_a_rating_that_disagrees_with_the_matrix_fails(self):
        self.f.write("H-001", hazard("H-001", initial=("Medium", 3, "Major", 4, 4)))
        self.fails_with("initial.rating: is 4, but the matrix gives 3 for Medium x Major")
        self.f.write("H-001", hazard("H-001", residual=("Very Low", 2, "Major", 4, 2)))
        self.fails_with("residual.likelihood_score: is 2, but Very Low is 1")

    def test_a_residual_above_the_initial_rating_fails(self):
        self.f.write(
            "H-001",
            hazard(
                "H-001",
                initial=("Low", 2, "Significant", 2, 2),
                residual=("Medium", 3, "Major", 4, 3),
                extra='acceptance = { by = "x", date = 2026-11-23, rationale = "y" }\n',
            ),
        )
        self.fails_with("residual.rating: 3 is higher than the initial rating 2")

    def test_unknown_values_and_fields_are_named(self):
        text = hazard("H-001").replace('status = "closed"', 'status = "done"')
        text = text.replace('kind = "training"', 'kind = "hope"')
        text = text.replace('harm = "a harm"', 'harm = "a harm"\nseverity = 3')
        self.f.write("H-001", text)
        self.fails_with("H-001.md: severity: unknown field")
        text = text.replace("severity = 3\n", "")
        self.f.write("H-001", text)
        self.fails_with(
            "H-001.md: status: 'done' is not one of open, transferred, closed",
            "H-001.md: controls[1].kind: 'hope' is not one of",
        )

    def test_a_missing_field_is_named(self):
        self.f.write("H-001", hazard("H-001").replace('effect = "an effect"\n', ""))
        self.fails_with("H-001.md: effect: missing")

    def test_code_that_does_not_exist_fails(self):
        self.f.write(
            "H-001",
            hazard("H-001", code=('"src/ingest.rs#stored"', '"src/nowhere.rs"')),
        )
        self.fails_with(
            "controls[0].code[0]: src/ingest.rs has no symbol stored",
            "controls[0].code[1]: src/nowhere.rs does not exist",
        )

    def test_a_hazard_needs_a_design_control_with_an_interface_test(self):
        self.f.write(
            "H-001",
            hazard("H-001", tests=('"lib::watchdog::rules::tests::the_first_match_wins"',)),
        )
        self.fails_with("no design control names a test through the product's interfaces")

    def test_a_transferred_hazard_must_be_in_the_deployer_pack(self):
        (self.f.root / "docs/clinical-safety/deployer-pack.md").write_text("# Pack\n")
        self.fails_with("H-002.md: status: transferred, but")

    def test_a_stale_summary_fails_and_write_summary_fixes_it(self):
        self.f.write("H-001", hazard("H-001").replace("Something goes wrong", "Renamed"))
        self.fails_with("hazard summary: does not match the hazard files")
        code, out = self.f.check(write_summary=True)
        self.assertEqual(code, 0, out)
        report = (self.f.root / "docs/clinical-safety/safety-case-report.md").read_text()
        self.assertIn("| [H-001](hazards/H-001.md) | Renamed (H-001) | closed |", report)
        self.assertTrue(report.endswith("\n\nEnd.\n"), report)

    def test_without_a_test_run_only_the_files_are_checked(self):
        self.f.listed = set()
        code, out = self.f.check(with_run=False)
        self.assertEqual(code, 0, out)
        self.assertIn("not checked against a test run", out)


class TheRepository(unittest.TestCase):
    def test_the_committed_hazard_log_passes_the_checks_of_its_files(self):
        """The repository's own hazard log, without a test run: every file
        parses and holds, the index agrees, the summary is current."""
        out = io.StringIO()
        code = check_hazards.main([], out=out)
        self.assertEqual(code, 0, out.getvalue())


if __name__ == "__main__":
    unittest.main()
