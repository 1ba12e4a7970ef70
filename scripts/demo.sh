#!/usr/bin/env bash
# The main job on the bundled examples, no CNS account needed: build the request file and the
# billing file from examples/, validate both, and say where they went.
#   scripts/demo.sh [OUTPUT_FOLDER]          (default: demo-out/)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_env.sh
out="${1:-demo-out}"
mkdir -p "$out"
rm -f "$out"/*.xml
# A fixed creation time keeps the example prescriptions within their 90 days.
created="2026-11-20T09:00:00+01:00"
cnsx build-request examples/requests.csv --provider 123456 --created "$created" -o "$out"
cnsx build-invoice examples/sessions.csv --provider 123456 --created "$created" -o "$out"
cnsx validate "$out"/*.xml
echo "documents in $(cd "$out" && pwd):" >&2
ls -l "$out" >&2
