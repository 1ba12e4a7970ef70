#!/usr/bin/env bash
# The whole test suite on the newest release of every dependency, in its own .venv-newest/
# (scripts/_env.sh --newest: upgraded eagerly, no lock), with the same programs as scripts/test.sh.
# Run it before bumping requirements.lock: it prints which versions differ from the lock and
# which dependencies have a newer release that pyproject.toml's bounds keep out, writes the
# lock those versions would make to .venv-newest/requirements.lock, and exits with pytest's code.
#   scripts/test-newest.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_env.sh test --newest
cnsx_test_tools
python - requirements.lock .venv-newest/requirements.lock <<'PY'
import importlib.metadata as md
import json
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon

lock_path, out_path = sys.argv[1:]
header, locked = [], {}
with open(lock_path, encoding="utf-8") as f:
    for line in f:
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            locked[canon(name)] = version.split(";")[0].strip()
        elif not locked and line.startswith("#"):
            header.append(line)

# What cnsx[test] pulls in here, transitive ones included (not whatever else the venv holds).
dists = {canon(d.metadata["Name"]): d for d in md.distributions()}
wanted: dict[str, set[str]] = {}
todo = [("cnsx", {"test"})]
while todo:
    name, extras = todo.pop()
    key = canon(name)
    if key not in dists or (key in wanted and extras <= wanted[key]):
        continue
    wanted[key] = wanted.get(key, set()) | extras
    for spec in dists[key].requires or []:
        req = Requirement(spec)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted[key] | {""}):
            todo.append((req.name, set(req.extras)))
wanted.pop("cnsx")
newest = {key: (dists[key].metadata["Name"], dists[key].version) for key in wanted}

changed = []
for key in sorted(set(locked) | set(newest)):
    was, now = locked.get(key), newest.get(key, (key, None))[1]
    if was != now:
        changed.append(f"  {newest.get(key, (key,))[0]}: {was or '(not in the lock)'} -> {now or '(no longer needed)'}")
print("versions that differ from requirements.lock:" if changed else "same versions as requirements.lock", file=sys.stderr)
print("\n".join(changed) or "", file=sys.stderr, end="\n" if changed else "")

# After the eager upgrade, a dependency with a newer release is one that a bound holds back.
try:
    listed = subprocess.run([sys.executable, "-m", "pip", "list", "--outdated", "--exclude-editable", "--format=json",
                             "--disable-pip-version-check"], capture_output=True, text=True, check=True, timeout=300)
    held = [f"  {p['name']}: {p['version']} (newest {p['latest_version']})"
            for p in json.loads(listed.stdout) if canon(p["name"]) in wanted]
    print("held back by pyproject.toml's bounds:\n" + "\n".join(held) if held else "no dependency held back by a bound",
          file=sys.stderr)
except (subprocess.SubprocessError, ValueError) as exc:
    print(f"could not list newer releases ({exc})", file=sys.stderr)

with open(out_path, "w", encoding="utf-8") as f:
    f.writelines(header)
    f.writelines(f"{name}=={version}\n" for name, version in sorted(newest.values(), key=lambda nv: nv[0].lower()))
PY
export CNSX_NO_SKIP=1
status=0
python -m pytest "$@" || status=$?
if [ $status = 0 ] && [ $# = 0 ]; then
    echo "the whole suite passes: to bump the lock, cp .venv-newest/requirements.lock requirements.lock" >&2
fi
exit $status
