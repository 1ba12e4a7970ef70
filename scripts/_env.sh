# Sourced by scripts/demo.sh and scripts/test.sh: makes .venv with cnsx installed (editable).
# Usage: . scripts/_env.sh [extras]      e.g. ". scripts/_env.sh test"
# On Debian the system Python refuses pip installs (PEP 668) and venv needs python3-venv:
# install it with apt-get when we are root and it is missing.
_cnsx_extras="${1:-}"
_cnsx_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_cnsx_python="${PYTHON:-python3}"
if [ ! -x "$_cnsx_root/.venv/bin/python" ]; then
    if ! "$_cnsx_python" -m venv "$_cnsx_root/.venv" >/dev/null 2>&1; then
        rm -rf "$_cnsx_root/.venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing python3-venv with apt-get" >&2
            apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$_cnsx_python" -m venv "$_cnsx_root/.venv"
        else
            echo "error: '$_cnsx_python -m venv' fails; install python3-venv (Debian) and retry" >&2
            exit 4
        fi
    fi
fi
_cnsx_spec="$_cnsx_root"
[ -n "$_cnsx_extras" ] && _cnsx_spec="$_cnsx_root[$_cnsx_extras]"
"$_cnsx_root/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$_cnsx_spec" >&2
export PATH="$_cnsx_root/.venv/bin:$PATH"
unset _cnsx_extras _cnsx_python _cnsx_spec
