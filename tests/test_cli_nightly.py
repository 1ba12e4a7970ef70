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
def sent(run, dropbox):
    """The drop box (conftest), and the practice's own request and billing files recorded as an
    upload records them, so that every return of examples/ matches something (no `note:` line)."""
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


def test_a_fetch_whose_list_cannot_be_written_fails_in_one_line(dropbox):
    """`cnsx fetch > /dev/full`: the files are fetched and recorded, their list is lost; that is
    exit 8 (a local I/O error) and one line saying where the files are, never exit 0."""
    root, data = dropbox
    shutil.copy(ACK, root / "download")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "cns_exchange", "fetch"], stdin=subprocess.DEVNULL, stdout=full,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ), timeout=120)
    assert proc.returncode == 8
    assert proc.stderr.splitlines() == [
        f"error: stdout: No space left on device: the list of fetched files is lost; they are in the inbox "
        f"{data / 'inbox'}, where cnsx nightly or cnsx import imports them"]
    assert _files(data / "inbox") == [ACK.name]



# --- cnsx nightly ----------------------------------------------------------------------------

def test_a_quiet_night_says_nothing(run, dropbox):
    root, data = dropbox
    r = run("nightly")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert _files(data / "errors") == [] and _files(data / "inbox") == []


def test_a_night_imports_what_is_new_and_what_an_earlier_run_left(run, sent):
    root, data = sent
    (data / "inbox").mkdir(parents=True, exist_ok=True)
    shutil.copy(ACK, data / "inbox")  # fetched by an earlier night whose import never ran
    shutil.copy(ANSWERS, root / "download")
    shutil.copy(PAYMENT, root / "download")
    r = run("nightly")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert _count(data, "documents") == 5 and _count(data, "payment_lines") == 8
    assert _files(data / "inbox") == [] and _files(data / "errors") == []
    assert {ACK.name, ANSWERS.name, PAYMENT.name} <= set(_files(data / "archive"))
    again = run("nightly")  # the next night: nothing new
    assert (again.exit_code, again.stdout, again.stderr) == (0, "", "")
    assert _count(data, "documents") == 5


def test_files_whose_fetch_list_was_lost_are_imported_by_the_next_night(run, sent):
    root, data = sent
    for f in (ACK, ANSWERS, PAYMENT):
        shutil.copy(f, root / "download")
    assert run("fetch").exit_code == 0  # its list went nowhere: the import half died
    assert len(_files(data / "inbox")) == 3
    assert run("fetch").stdout == ""  # recorded: no fetch lists them again
    r = run("nightly")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert _count(data, "documents") == 5 and _files(data / "inbox") == []


def test_an_unreadable_file_is_one_line_and_exit_3(run, sent):
    root, data = sent
    broken = root / "download" / "CNS_DEC_20261125_000009.xml"
    broken.write_text("<JustificatifPaiement><EnTete>")
    shutil.copy(ACK, root / "download")
    r = run("nightly")
    assert r.exit_code == 3 and r.stdout == ""
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {broken.name}: not imported, cannot be read (XML01: ")
    assert line.endswith(f"; moved to {data / 'errors' / broken.name} (see .why.txt)")
    assert broken.name in _files(data / "errors") and _files(data / "inbox") == []
    assert _count(data, "documents") == 3  # the request, the billing file and the acknowledgement


def test_a_failed_fetch_still_imports_the_inbox_and_its_code_comes_first(run, sent):
    root, data = sent
    shutil.rmtree(root / "download")  # the drop box lost its folder: fatal, exit 6
    (data / "inbox").mkdir(parents=True, exist_ok=True)
    shutil.copy(ACK, data / "inbox")
    (data / "inbox" / "CNS_DEC_20261125_000009.xml").write_text("")  # an earlier night's broken file
    r = run("nightly")
    assert r.exit_code == 6 and r.stdout == ""  # the first failure's code, not the 3 that follows
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("error: ") and "folder download does not exist; hint: " in lines[0]
    assert lines[1].startswith("error: CNS_DEC_20261125_000009.xml: not imported, cannot be read (XML01")
    assert _count(data, "documents") == 3 and _files(data / "inbox") == []


def test_a_file_imported_with_warnings_is_one_line_naming_the_command_that_shows_them(run, sent, tmp_path):
    root, data = sent
    text = PAYMENT.read_text("utf-8")
    (root / "download" / PAYMENT.name).write_text(text.replace("<MontantFacture>", "<MontantFacture>x", 1), "utf-8")
    r = run("nightly")
    assert r.exit_code == 0 and r.stdout == ""
    [line] = r.stderr.splitlines()
    archived = data / "archive" / PAYMENT.name
    assert line.startswith(f"warning: {PAYMENT.name}: imported with ") and "XSD01" in line
    assert line.endswith(f"; all of them: cnsx import --no-db {archived}")
    assert _count(data, "payment_lines") == 7
    shown = run("import", "--no-db", str(archived))
    assert shown.exit_code == 0 and "warning XSD01" in shown.stderr


def test_what_an_import_changed_is_a_note_naming_the_file(run, sent):
    """A billing file billed again under another number: its sessions count once, said once."""
    root, data = sent
    copy = data / "inbox" / "123456_FAC_20261120_000002.xml"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(BILLING.read_text("utf-8").replace("<NumeroSequence>1<", "<NumeroSequence>2<", 1), "utf-8")
    r = run("nightly")
    assert r.exit_code == 0 and r.stdout == ""
    notes = [line for line in r.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [line for line in notes if line.startswith(f"note: {copy.name}: ")] != [], r.stderr
    assert "billed before and are counted once" in notes[0]
    assert _files(data / "inbox") == []


def test_another_run_holding_the_lock_is_one_line_and_exit_7(run, dropbox):
    root, data = dropbox
    shutil.copy(ACK, root / "download")
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / "practice.sqlite.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run("nightly")
    finally:
        os.close(fd)
    assert r.exit_code == 7 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "another cnsx run" in r.stderr
    assert _files(data / "inbox") == []  # nothing done: the next run does it all


def test_verbose_says_what_was_fetched_and_imported(run, sent):
    root, data = sent
    shutil.copy(ACK, root / "download")
    r = run("-v", "nightly")
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr.splitlines() == [f"{ACK.name} → {data / 'inbox' / ACK.name}", f"{ACK.name}: imported (ack)"]


def test_notes_on_what_matches_nothing_come_once_after_the_imports(run, dropbox):
    root, data = dropbox
    for f in (ACK, ANSWERS):
        shutil.copy(f, root / "download")
    r = run("nightly")
    assert r.exit_code == 0
    assert r.stderr.splitlines() == ["note: 3 answers match no request",
                                     "note: 1 acknowledgement matches no uploaded or imported file"]
    assert run("nightly").stderr == ""  # a night that imports nothing repeats nothing
