"""upload and fetch against a file:// drop box: exactly once, never clobbering, ledger kept."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3

import pytest

from conftest import EXAMPLES

REQUEST = EXAMPLES / "123456_DTP_20261120_000001.xml"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
RETURNS = sorted(EXAMPLES.glob("CNS_*.xml"))


def _ledger(data, table):
    conn = sqlite3.connect(data / "practice.sqlite")
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


def test_upload_sends_pdfs_first_then_once(run, dropbox, tmp_path):
    root, data = dropbox
    work = tmp_path / "work"
    work.mkdir()
    for f in [REQUEST, BILLING, *EXAMPLES.glob("123456_ORD_*.pdf")]:
        shutil.copy(f, work)
    r = run("upload", "--json", str(work / REQUEST.name), str(work / BILLING.name))
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["name"] for x in lines] == ["123456_ORD_REQ-0001.pdf", "123456_ORD_REQ-0002.pdf", "123456_ORD_REQ-0003.pdf",
                                          REQUEST.name, BILLING.name]
    assert {x["status"] for x in lines} == {"sent"}
    remote = sorted(p.name for p in (root / "upload").iterdir())
    assert remote == sorted(x["name"] for x in lines)  # no temporary file left
    assert (root / "upload" / BILLING.name).read_bytes() == BILLING.read_bytes()
    assert all((root / "upload" / n).stat().st_mode & 0o777 == 0o600 for n in remote)
    assert [row[-2] for row in _ledger(data, "uploads")] == ["sent"] * 5
    assert (data / "practice.sqlite").stat().st_mode & 0o777 == 0o600
    # second run: nothing sent, and it says so
    again = run("upload", "--json", str(work / BILLING.name))
    assert again.exit_code == 0
    assert json.loads(again.stdout)["status"] == "already-sent"
    assert "already sent" in again.stderr
    assert len(_ledger(data, "uploads")) == 5


def test_force_resends_under_next_sequence(run, dropbox):
    root, data = dropbox
    assert run("upload", str(BILLING)).exit_code == 0
    r = run("upload", "--force", "--json", str(BILLING))
    assert r.exit_code == 0, r.stderr
    sent = json.loads(r.stdout)
    assert sent["name"] == "123456_FAC_20261120_000002.xml" and sent["status"] == "sent"
    copy = (root / "upload" / sent["name"]).read_text("utf-8")
    assert "<NumeroSequence>2</NumeroSequence>" in copy
    assert run("validate", str(root / "upload" / sent["name"])).exit_code == 0


def test_invalid_document_sends_nothing(run, dropbox, tmp_path):
    root, data = dropbox
    bad = tmp_path / BILLING.name
    bad.write_text(BILLING.read_text("utf-8").replace("<NombreSeances>8<", "<NombreSeances>9<"), "utf-8")
    r = run("upload", str(REQUEST), str(bad))
    assert r.exit_code == 3
    assert "DOC01" in r.stderr and "nothing was sent" in r.stderr
    assert list((root / "upload").iterdir()) == []


def test_request_with_missing_pdf_sends_nothing(run, dropbox, tmp_path):
    root, _ = dropbox
    lonely = tmp_path / REQUEST.name
    shutil.copy(REQUEST, lonely)
    r = run("upload", str(lonely))
    assert r.exit_code == 3 and "123456_ORD_REQ-0001.pdf is not beside" in r.stderr
    assert list((root / "upload").iterdir()) == []


def test_never_overwrites_a_different_remote_file(run, dropbox):
    root, data = dropbox
    (root / "upload" / BILLING.name).write_text("someone else's file")
    r = run("upload", str(BILLING))
    assert r.exit_code == 6
    assert "different file of that name" in r.stderr
    assert (root / "upload" / BILLING.name).read_text() == "someone else's file"


def test_recovers_a_publish_not_recorded(run, dropbox):
    """A run killed between the rename and the ledger update: the next run finds the file."""
    root, data = dropbox
    shutil.copy(BILLING, root / "upload" / BILLING.name)
    r = run("upload", "--json", str(BILLING))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "recovered"
    assert sorted(p.name for p in (root / "upload").iterdir()) == [BILLING.name]


def test_stale_temporary_files_are_removed(run, dropbox):
    root, _ = dropbox
    stale = root / "upload" / f".cnsx-{BILLING.name}.dead.part"
    stale.write_text("half")
    assert run("upload", str(BILLING)).exit_code == 0
    assert not stale.exists()


def test_upload_from_stdin_needs_a_name(run, dropbox):
    root, data = dropbox
    r = run("upload", "-", input=BILLING.read_bytes())
    assert r.exit_code == 2 and "--name" in r.stderr
    r = run("upload", "-", "--name", BILLING.name, input=BILLING.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert (root / "upload" / BILLING.name).read_bytes() == BILLING.read_bytes()


def test_fetch_once_then_nothing(run, dropbox):
    root, data = dropbox
    for f in RETURNS:
        shutil.copy(f, root / "download")
    r = run("fetch")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [g["name"] for g in got] == [f.name for f in RETURNS]
    for g, f in zip(got, RETURNS):
        path = data / "inbox" / f.name
        assert g["path"] == str(path) and path.read_bytes() == f.read_bytes()
        assert path.stat().st_mode & 0o777 == 0o600
        assert g["size"] == f.stat().st_size
    assert sorted(p.name for p in (data / "inbox").iterdir()) == [f.name for f in RETURNS]
    again = run("fetch")
    assert again.exit_code == 0 and again.stdout == "" and again.stderr == ""
    assert len(_ledger(data, "fetched")) == len(RETURNS)


def test_fetch_dry_run_transfers_nothing(run, dropbox):
    root, data = dropbox
    shutil.copy(RETURNS[0], root / "download")
    r = run("fetch", "--dry-run")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["name"] == RETURNS[0].name
    assert not (data / "inbox" / RETURNS[0].name).exists()
    assert _ledger(data, "fetched") == []


def test_new_content_under_known_name_is_kept_beside(run, dropbox):
    root, data = dropbox
    target = root / "download" / RETURNS[0].name
    shutil.copy(RETURNS[0], target)
    assert run("fetch").exit_code == 0
    target.write_bytes(RETURNS[0].read_bytes().replace(b"accepte", b"rejete"))
    os.utime(target, (1_900_000_000, 1_900_000_000))
    r = run("fetch")
    assert r.exit_code == 0
    item = json.loads(r.stdout)
    assert item["path"] != str(data / "inbox" / RETURNS[0].name) and "~" in item["path"]
    assert "new content under a name fetched before" in r.stderr
    assert (data / "inbox" / RETURNS[0].name).read_bytes() == RETURNS[0].read_bytes()


@pytest.mark.parametrize("name", ["..evil.xml", ".hidden.xml", "a b.xml", "semi;colon.xml", "tab\tname.xml", "new\nline.xml"])
def test_hostile_names_not_fetched(run, dropbox, name):
    root, data = dropbox
    (root / "download" / name).write_text("x")
    r = run("fetch")
    assert r.exit_code == 0
    assert r.stdout == ""
    assert "unsafe name" in r.stderr
    assert not (data / "inbox").exists() or list((data / "inbox").iterdir()) == []


def test_symlinks_not_followed(run, dropbox, tmp_path):
    root, data = dropbox
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    (root / "download" / "CNS_ACR_20261120_000009.xml").symlink_to(secret)
    r = run("fetch")
    assert r.exit_code == 0 and r.stdout == ""
    assert "not a regular file" in r.stderr


@pytest.mark.parametrize("after, remaining", [("delete", ["archive"]), ("archive", ["archive"])])
def test_after_fetch_removes_only_once_recorded(run, dropbox, isolated_config, after, remaining):
    root, data = dropbox
    (root / "download" / "archive").mkdir()
    config = isolated_config / "config.toml"
    config.write_text(config.read_text() + f'after_fetch = "{after}"\nremote_archive_dir = "download/archive"\n')
    shutil.copy(RETURNS[0], root / "download")
    r = run("fetch")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (root / "download").iterdir()) == remaining
    assert (root / "download" / "archive" / RETURNS[0].name).exists() == (after == "archive")
    rows = _ledger(data, "fetched")
    assert [row[9] for row in rows] == [after + "d"]


def test_lock_held_exits_7(run, dropbox, monkeypatch):
    import fcntl

    root, data = dropbox
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / "practice.sqlite.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run("fetch")
        assert r.exit_code == 7
        assert "another cnsx run" in r.stderr and "--wait" in r.stderr
    finally:
        os.close(fd)
    assert run("fetch").exit_code == 0


def test_missing_drop_box_folder_is_fatal(run, dropbox):
    root, _ = dropbox
    shutil.rmtree(root / "download")
    r = run("fetch")
    assert r.exit_code == 6 and "download" in r.stderr


@pytest.mark.parametrize("text, message", [
    ('remote = "sftp://user:hunter2@host"\n', "holds a password"),
    ('password = "hunter2"\n', "secrets are never written"),
    ('remote = "ftp://host"\n', "neither sftp:// nor file://"),
])
def test_secrets_and_bad_remotes_refused(run, isolated_config, text, message):
    (isolated_config / "config.toml").write_text(text)
    r = run("fetch")
    assert r.exit_code == 4 and message in r.stderr
    assert "hunter2" not in r.stderr


def test_readable_config_with_unprotected_key_refused(run, isolated_config, tmp_path):
    key = tmp_path / "id"
    key.write_text("k")
    config = isolated_config / "config.toml"
    config.write_text(f'remote = "sftp://u@127.0.0.1:2222"\nkey_file = "{key}"\n')
    config.chmod(0o644)
    r = run("fetch")
    assert r.exit_code == 4 and "can be read by other users" in r.stderr


def test_config_init_writes_private_starter_once(run, isolated_config):
    r = run("config", "init", "--provider", "654321")
    assert r.exit_code == 0, r.stderr
    path = isolated_config / "config.toml"
    assert path.stat().st_mode & 0o777 == 0o600
    assert 'provider = "654321"' in path.read_text()
    import tomllib

    tomllib.loads(path.read_text())  # the starter is valid TOML
    again = run("config", "init")
    assert again.exit_code == 2 and "exists already" in again.stderr


@pytest.mark.parametrize("provider", ["abc", '123456"\nremote = "file:///tmp/elsewhere', "12345"])
def test_config_init_refuses_a_provider_code_that_is_not_one(run, isolated_config, provider):
    r = run("config", "init", "--provider", provider)
    assert r.exit_code == 2 and "--provider" in r.stderr and "6 to 8 digits" in r.stderr, r.stderr
    assert not (isolated_config / "config.toml").exists(), "nothing written"


def test_doctor_reports_each_check(run, dropbox, isolated_config):
    root, data = dropbox
    r = run("doctor")
    assert r.exit_code == 0, r.stderr
    assert "✓ upload folder" in r.stderr and "✓ download folder" in r.stderr
    (isolated_config / "config.toml").chmod(0o644)
    r = run("doctor")
    assert r.exit_code == 4 and "✗ permissions" in r.stderr and "chmod 600" in r.stderr
    (isolated_config / "config.toml").chmod(0o600)
    shutil.rmtree(root / "upload")
    r = run("doctor")
    assert r.exit_code == 6 and "✗ upload folder" in r.stderr and "✓ download folder" in r.stderr


def test_uploaded_documents_are_recorded_for_matching(run, dropbox):
    root, data = dropbox
    assert run("upload", str(BILLING)).exit_code == 0
    conn = sqlite3.connect(data / "practice.sqlite")
    assert conn.execute("SELECT kind, name FROM documents").fetchall() == [("billing", BILLING.name)]
    assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 8
    assert (data / "archive" / BILLING.name).read_bytes() == BILLING.read_bytes()
    ack = next(EXAMPLES.glob("CNS_ACR_*.xml"))
    shutil.copy(ack, root / "download")
    assert run("fetch").exit_code == 0
    r = run("import")
    assert r.exit_code == 0 and "note:" not in r.stderr
    row = conn.execute("SELECT upload_id IS NOT NULL, acked_document_id IS NOT NULL FROM acknowledgements").fetchone()
    assert row == (1, 1)


@pytest.mark.parametrize("error, code", [(errno.ENOTCONN, 5), (errno.EACCES, 6)])
def test_a_drop_box_failing_under_fetch_gets_a_transport_exit_code(run, dropbox, isolated_config, monkeypatch, error, code):
    # A mounted drop box (SMB, NFS) that goes away or refuses: 5 (retry later) or 6, never the
    # local-configuration 4 or an internal error.
    import types

    from cns_exchange.transport import local

    root, _ = dropbox
    shutil.copy(RETURNS[0], root / "download")

    def scandir(path):
        raise OSError(error, os.strerror(error), str(path))

    monkeypatch.setattr(local, "os", types.SimpleNamespace(**{**vars(os), "scandir": scandir}))
    (isolated_config / "config.toml").write_text(f'provider = "123456"\nremote = "file://{root}"\nretries = 1\nbackoff = 0\n')
    r = run("fetch")
    assert r.exit_code == code, r.stderr
    assert os.strerror(error) in r.stderr and "internal error" not in r.stderr


@pytest.mark.parametrize("source, name, code", [
    (RETURNS[0], None, "DOC06"),                                   # a CNS return file
    (BILLING, "123456_DTP_20261120_000001.xml", "DOC07"),          # a billing file named as a request file
    (BILLING, "invoice.xml", "DOC07"),                             # not a name the CNS expects
])
def test_upload_sends_only_practice_documents_under_their_names(run, dropbox, source, name, code):
    root, _ = dropbox
    args = ["upload", "-", "--name", name] if name else ["upload", str(source)]
    r = run(*args, input=source.read_bytes() if name else None)
    assert r.exit_code == 3 and f"error {code}:" in r.stderr and "nothing was sent" in r.stderr, r.stderr
    assert list((root / "upload").iterdir()) == []


def test_two_requests_with_identical_scans_both_have_their_prescription_sent(run, dropbox, tmp_path):
    """The CNS looks for the prescription under the name the request gives: identical bytes
    under two names are two files to send, not one already sent."""
    root, _ = dropbox
    rows = (EXAMPLES / "requests.csv").read_text("utf-8").splitlines()
    same = rows[1].split(";")[-1]
    path = tmp_path / "requests.csv"
    path.write_text("\n".join([rows[0], rows[1], ";".join(rows[2].split(";")[:-1] + [same])]) + "\n", "utf-8")
    shutil.copytree(EXAMPLES / "prescriptions", tmp_path / "prescriptions")
    out = tmp_path / "out"
    out.mkdir()
    assert run("build-request", str(path), "--created", "2026-11-20T09:00:00+01:00", "-o", str(out)).exit_code == 0
    [request] = out.glob("*_DTP_*.xml")
    r = run("upload", str(request))
    assert r.exit_code == 0, r.stderr
    sent = sorted(p.name for p in (root / "upload").iterdir())
    assert sent == sorted(["123456_ORD_REQ-0001.pdf", "123456_ORD_REQ-0002.pdf", request.name])
