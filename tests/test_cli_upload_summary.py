"""upload says what it did in one line ("2 sent, 31 already sent"), and --move-sent keeps the
outbox small: a file moves only once recorded sent, a request's PDFs with it, never over a file."""

from __future__ import annotations

import shutil
import sqlite3

from conftest import EXAMPLES

REQUEST = EXAMPLES / "123456_DTP_20261120_000001.xml"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
PDFS = sorted(EXAMPLES.glob("123456_ORD_*.pdf"))


def _outbox(tmp_path, *files):
    outbox = tmp_path / "outbox"
    outbox.mkdir(parents=True)
    for f in files:
        shutil.copy(f, outbox)
    return outbox


def test_upload_ends_with_one_line_counting_what_was_sent_and_what_was_not(run, dropbox, tmp_path):
    outbox = _outbox(tmp_path, REQUEST, BILLING, *PDFS)
    first = run("upload", str(outbox / REQUEST.name))
    assert first.exit_code == 0, first.stderr
    assert first.stderr.strip() == f"{len(PDFS) + 1} sent"
    again = run("upload", str(outbox / REQUEST.name), str(outbox / BILLING.name))
    assert again.exit_code == 0, again.stderr
    assert again.stderr.strip() == f"1 sent, {len(PDFS) + 1} already sent (--force resends)"
    assert again.stdout == ""
    assert run("-q", "upload", str(outbox / BILLING.name)).stderr == ""
    verbose = run("-v", "upload", str(outbox / BILLING.name))
    assert f"{BILLING.name}: already sent as {BILLING.name}" in verbose.stderr


def test_move_sent_moves_a_request_with_its_pdfs_once_recorded_sent(run, dropbox, tmp_path):
    root, data = dropbox
    outbox = _outbox(tmp_path, REQUEST, BILLING, *PDFS)
    sent = tmp_path / "sent" / "2026"
    r = run("upload", "--move-sent", str(sent), str(outbox / REQUEST.name), str(outbox / BILLING.name))
    assert r.exit_code == 0, r.stderr
    names = sorted([REQUEST.name, BILLING.name, *(p.name for p in PDFS)])
    assert r.stderr.strip() == f"{len(names)} sent, {len(names)} moved to {sent}"
    assert sorted(p.name for p in sent.iterdir()) == names
    assert list(outbox.iterdir()) == []
    assert sent.stat().st_mode & 0o777 == 0o700
    assert (sent / BILLING.name).read_bytes() == BILLING.read_bytes()
    conn = sqlite3.connect(data / "practice.sqlite")
    assert sorted(n for (n,) in conn.execute("SELECT name FROM uploads WHERE result = 'sent'")) == names


def test_move_sent_never_replaces_a_file_and_moves_nothing_that_was_not_sent(run, dropbox, tmp_path):
    outbox = _outbox(tmp_path, BILLING)
    sent = tmp_path / "sent"
    sent.mkdir()
    (sent / BILLING.name).write_bytes(b"another file of that name")
    r = run("upload", "--move-sent", str(sent), str(outbox / BILLING.name))
    assert r.exit_code == 0, r.stderr
    assert "is another file; left where it is" in r.stderr and "0 moved" in r.stderr
    assert (sent / BILLING.name).read_bytes() == b"another file of that name"
    assert (outbox / BILLING.name).read_bytes() == BILLING.read_bytes()
    # The same bytes there already (moved by hand): the copy in the outbox goes.
    (sent / BILLING.name).write_bytes(BILLING.read_bytes())
    again = run("upload", "--move-sent", str(sent), str(outbox / BILLING.name))
    assert again.exit_code == 0 and "1 moved" in again.stderr, again.stderr
    assert list(outbox.iterdir()) == []
    # An invalid document is sent nowhere and moved nowhere.
    broken = _outbox(tmp_path / "b", BILLING) / BILLING.name
    broken.write_bytes(BILLING.read_bytes().replace(b"<NombreSeances>", b"<NombreSeances>9", 1))
    refused = run("upload", "--move-sent", str(sent), str(broken))
    assert refused.exit_code == 3
    assert broken.exists()
