#!/usr/bin/env bash
# The whole test suite, installing what it needs: xmllint (Debian libxml2-utils, the
# independent validator the tests cross-check with), OpenSSH (openssh-server and
# openssh-client, for the real SFTP test server), pdftoppm and pdftotext (poppler-utils: the
# printed PDFs are rendered to PNG in tests/artefacts/ and read by a second PDF reader) and the
# Python test dependencies.
# A skipped test fails the run (CNSX_NO_SKIP=1): in CI every test must really run.
#   scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v xmllint >/dev/null || need+=(libxml2-utils)
# OpenSSH: the SFTP transport tests run a real sshd (tests/sshd.py) and cross-check with sftp.
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v sftp >/dev/null || need+=(openssh-client)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${need[*]} with apt-get" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "error: missing ${need[*]}; install with: sudo apt-get install ${need[*]}" >&2
        exit 4
    fi
fi
. scripts/_env.sh test
export CNSX_NO_SKIP=1
exec python -m pytest "$@"
