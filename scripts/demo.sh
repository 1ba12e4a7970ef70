#!/usr/bin/env bash
# The main job on embedded defaults, no CNS account needed: the whole exchange against a
# local drop box answered by the built-in CNS sandbox.
#   build the request and billing files from examples/ -> validate -> upload (file:// drop box)
#   -> the sandbox answers like the CNS -> fetch -> import into a fresh SQLite database -> status
#   scripts/demo.sh [OUTPUT_FOLDER]          (default: demo-out/, emptied first)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_env.sh ""   # (no extras; without an argument it would take the demo's folder for them)
out="${1:-demo-out}"
rm -rf "$out"
mkdir -p "$out/dropbox/upload" "$out/dropbox/download" "$out/outbox" "$out/config"
out="$(cd "$out" && pwd)"
# Everything of the demo lives in its folder: its own config, database, inbox and archive.
export CNSX_CONFIG_DIR="$out/config" CNSX_DATA_DIR="$out/data"
unset CNSX_CONFIG CNSX_PROFILE
cat > "$out/config/config.toml" <<TOML
provider = "123456"
remote = "file://$out/dropbox"
TOML
chmod 600 "$out/config/config.toml"
# A fixed creation time keeps the example prescriptions within their 90 days.
created="2026-11-20T09:00:00+01:00"
step() { printf '\n== %s\n' "$*" >&2; }
step "build the request and billing files"
cnsx build-request examples/requests.csv --created "$created" -o "$out/outbox"
cnsx build-invoice examples/sessions.csv --created "$created" -o "$out/outbox"
step "validate them"
cnsx validate "$out"/outbox/*.xml
step "upload them (prescription PDFs first) to the drop box $out/dropbox"
cnsx -v upload "$out"/outbox/*.xml
step "the CNS sandbox answers"
cnsx -v sandbox --once
step "fetch the return files and import them into $CNSX_DATA_DIR/practice.sqlite (the cron job)"
cnsx -v nightly
step "status"
cnsx status
