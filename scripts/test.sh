#!/usr/bin/env bash
# Runs every test of studywatch, then checks the clinical safety hazard log
# against that run.
#
#   bash scripts/test.sh              # everything (what CI runs)
#   bash scripts/test.sh -E 'test(/^safety::/)'
#                                     # arguments go to `cargo nextest run`;
#                                     # the hazard log is then checked
#                                     # without the test run (see the end)
#
# First installs the real peers the tests drive when they are missing: DCMTK,
# strace, python3-hl7 (for its mllp_send), python3-aiosmtpd (a real SMTP
# server), openssl (test certificates), chromium and chromium-driver (the
# dashboard's browser test), orthanc (a real PACS: storage, query and storage
# commitment) from Debian packages, pynetdicom (with pydicom) and selenium
# from PyPI, and cargo-nextest from crates.io. Installing orthanc never
# leaves its system service running: the tests start their own Orthanc on
# free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
[ -x /usr/bin/storescu ] && [ -x /usr/bin/dcmsend ] && [ -x /usr/bin/echoscu ] && [ -x /usr/bin/dcmdump ] || missing+=(dcmtk)
command -v strace >/dev/null || missing+=(strace)
command -v mllp_send >/dev/null || missing+=(python3-hl7)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=(python3-aiosmtpd)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing from Debian: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [[ " ${missing[*]} " == *" orthanc "* ]]; then
    # The package may start and enable a service on the default ports
    # (4242, 8042); the tests need neither.
    "${sudo_cmd[@]}" service orthanc stop >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null; then
      "${sudo_cmd[@]}" systemctl disable orthanc >/dev/null 2>&1 || true
    fi
  fi
fi

# pydicom is pinned: the corpus generator's byte-identical output depends on it.
if ! python3 -c 'import pynetdicom, pydicom, numpy; assert pydicom.__version__ == "3.0.2"' 2>/dev/null; then
  echo "installing from PyPI: pynetdicom pydicom numpy"
  python3 -m pip install --quiet --disable-pip-version-check 'pynetdicom==3.0.4' 'pydicom==3.0.2' numpy
fi
# Selenium's WebDriver client drives Debian's chromium-driver (never a
# downloaded driver) in the dashboard's browser test.
if ! python3 -c 'import selenium' 2>/dev/null; then
  echo "installing from PyPI: selenium"
  python3 -m pip install --quiet --disable-pip-version-check 'selenium==4.51.0'
fi

# The corpus is committed; its generator must still reproduce it byte for
# byte, and an independent reading of the intact rules must agree with the
# expected statuses in its MANIFEST.
python3 test-dicom/verify.py

# The hazard-log check needs nextest's JUnit report to know which tests ran
# and passed, so nextest is required: there is no `cargo test` fallback.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing from crates.io: cargo-nextest (the hazard-log check reads its JUnit report)"
  if ! cargo install --locked cargo-nextest; then
    echo "scripts/test.sh: cargo-nextest is required and could not be installed;" >&2
    echo "  install it (https://nexte.st) and run this script again" >&2
    exit 1
  fi
fi

# --workspace also builds the fuzz targets (fuzz/), so they never rot.
cargo build --locked --workspace --all-targets

# nextest writes its JUnit report here (.config/nextest.toml), under the
# workspace root whatever CARGO_TARGET_DIR says. A report left by an earlier
# run must not vouch for this one.
junit=target/nextest/default/junit.xml
test_list=target/nextest/test-list.json
rm -f "$junit" "$test_list"
status=0
cargo nextest run --locked --workspace --no-fail-fast "$@" || status=$?

# The checker's own tests (fixtures in temporary directories).
python3 -m unittest discover -s scripts -p 'test_*.py' || status=1

# Every test the hazard log names must exist, have run in this run, and have
# passed; every hazard file must be valid and still be there (see
# docs/clinical-safety/hazards/README.md). Only a full run can say that a
# named test passed: a filtered run checks the hazard files alone.
mkdir -p target/nextest
cargo nextest list --locked --workspace --message-format json >"$test_list"
if [ $# -eq 0 ]; then
  python3 scripts/check_hazards.py --junit "$junit" --test-list "$test_list" || status=1
else
  echo "filtered run: checking the hazard log without the test run"
  python3 scripts/check_hazards.py --test-list "$test_list" || status=1
fi
exit "$status"
