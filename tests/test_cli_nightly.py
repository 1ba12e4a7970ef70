"""cnsx nightly, and the pipe it replaces (cnsx fetch | cnsx import -), against a file:// drop
box. The same as cron runs them, through a real sshd and the CNS sandbox: test_cron.py."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import sqlite3
import subprocess
import sys

import pytest

from conftest import EXAMPLES

REQUEST = EXAMPLES / "123456_DTP_20261120_000001.xml"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
ACK = EXAMPLES / "CNS_ACR_20261120_000001.xml"
ANSWERS = EXAMPLES / "CNS_RTP_20261120_000002.xml"
PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"


@pytest.fixture
def dropbox(tmp_path, isolated_config, monkeypatch):
    """A file:// drop box and a profile pointing at it; returns (root, data folder)."""
    root = tmp_path / "dropbox"
    (root / "upload").mkdir(parents=True)
    (root / "download").mkdir()
    data = tmp_path / "data"
    monkeypatch.setenv("CNSX_DATA_DIR", str(data))
    config = isolated_config / "config.toml"
    config.write_text(f'provider = "123456"\nremote = "file://{root}"\nretries = 0\nbackoff = 0\n')
    config.chmod(0o600)
    return root, data


@pytest.fixture
def sent(run, dropbox):
    """The practice's own request and billing files, recorded as an upload records them, so
    that every return of examples/ matches something (no `note:` line)."""
    r = run("import", str(REQUEST), str(BILLING))
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    return dropbox


def _count(data, table) -> int:
    conn = sqlite3.connect(data / "practice.sqlite")
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- the pipe: cnsx fetch | cnsx import - ----------------------------------------------------

@pytest.mark.parametrize("stdin", ["", "\n", " \n\t\n"])
def test_import_of_an_empty_stdin_is_nothing_to_do(run, dropbox, stdin):
    """What a fetch prints on a quiet night, or when it failed: no file, no error, no lock."""
    root, data = dropbox
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / "practice.sqlite.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another run at work: no reason to fail when there is nothing to do
    try:
        r = run("import", "-", input=stdin)
        no_db = run("import", "--no-db", "--csv", "-", input=stdin)
    finally:
        os.close(fd)
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert (no_db.exit_code, no_db.stdout, no_db.stderr) == (0, "", "")
    assert list(data.rglob("*.xml")) == []  # no stdin-….xml, in the inbox or in errors/


def test_the_pipe_typed_at_a_terminal_sends_the_list_down_the_pipe(dropbox, tmp_path):
    """With stderr on a terminal fetch draws a progress bar; its list must still go to stdout
    (rich would take stdout for the bar's terminal, and the pipe would get nothing)."""
    root, data = dropbox
    for f in (ACK, ANSWERS):
        shutil.copy(f, root / "download")
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "cns_exchange", "fetch"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ), timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert [json.loads(line)["name"] for line in proc.stdout.decode().splitlines()] == [ACK.name, ANSWERS.name]
