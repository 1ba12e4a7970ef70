#!/usr/bin/env bash
# The whole test suite, installing what it needs: the Python test dependencies at the versions of
# requirements.lock, and the programs the tests run besides Python, with apt-get when run as root
# (xmllint, OpenSSH, poppler-utils: cnsx_test_tools in scripts/_env.sh says what each is for).
# A skipped test fails the run (CNSX_NO_SKIP=1): in CI every test must really run.
#   scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_env.sh test
cnsx_test_tools
export CNSX_NO_SKIP=1
exec python -m pytest "$@"
