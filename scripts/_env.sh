# Sourced by scripts/demo.sh, scripts/test.sh and scripts/test-newest.sh: makes .venv with cnsx
# installed (editable) and puts it first on PATH.
# Usage: . scripts/_env.sh [extras] [--newest]      e.g. ". scripts/_env.sh test"
# Versions: exactly those of requirements.lock, the ones the suite passed with; a .venv that holds
# others is brought back to them. --newest (scripts/test-newest.sh): .venv-newest/ instead, with
# the newest release of every dependency that pyproject.toml allows, and no lock.
# On Debian the system Python refuses pip installs (PEP 668) and venv needs python3-venv:
# install it with apt-get when we are root and it is missing.
_cnsx_extras="${1:-}"
_cnsx_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_cnsx_python="${PYTHON:-python3}"
_cnsx_venv="$_cnsx_root/.venv"
[ "${2:-}" = --newest ] && _cnsx_venv="$_cnsx_root/.venv-newest"

# Installs the Debian packages named when we are root (as in CI); else says how and exits 4.
cnsx_apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing $* with apt-get" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "error: missing $*; install with: sudo apt-get install $*" >&2
        exit 4
    fi
}

# The programs the tests run besides Python (scripts/test.sh and scripts/test-newest.sh):
# xmllint (libxml2-utils, the independent validator the tests cross-check with), OpenSSH (the
# SFTP transport tests run a real sshd, tests/sshd.py, and cross-check with sftp), pdftoppm and
# pdftotext (poppler-utils: the printed PDFs are rendered to PNG in tests/artefacts/ and read by
# a second PDF reader), msgfmt (gettext: checks the French catalogue, which cnsx compiles itself).
cnsx_test_tools() {
    local need=()
    command -v xmllint >/dev/null || need+=(libxml2-utils)
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v sftp >/dev/null || need+=(openssh-client)
    command -v pdftoppm >/dev/null || need+=(poppler-utils)
    command -v msgfmt >/dev/null || need+=(gettext)
    if [ ${#need[@]} -gt 0 ]; then cnsx_apt_install "${need[@]}"; fi
}

if [ ! -x "$_cnsx_venv/bin/python" ]; then
    if ! "$_cnsx_python" -m venv "$_cnsx_venv" >/dev/null 2>&1; then
        rm -rf "$_cnsx_venv"
        cnsx_apt_install python3-venv
        "$_cnsx_python" -m venv "$_cnsx_venv"
    fi
fi
_cnsx_spec="$_cnsx_root"
[ -n "$_cnsx_extras" ] && _cnsx_spec="$_cnsx_root[$_cnsx_extras]"
if [ "${2:-}" = --newest ]; then
    env -u PIP_CONSTRAINT "$_cnsx_venv/bin/python" -m pip install -q --disable-pip-version-check \
        --upgrade --upgrade-strategy eager -e "$_cnsx_spec" >&2
else
    # -c pins this install; PIP_CONSTRAINT also reaches the isolated environment in which pip
    # builds the editable wheel (hatchling), which -c does not.
    PIP_CONSTRAINT="$_cnsx_root/requirements.lock" "$_cnsx_venv/bin/python" -m pip install -q \
        --disable-pip-version-check -c "$_cnsx_root/requirements.lock" -e "$_cnsx_spec" >&2
fi
export PATH="$_cnsx_venv/bin:$PATH"
unset _cnsx_extras _cnsx_python _cnsx_spec _cnsx_venv
