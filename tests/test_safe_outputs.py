"""Safe outputs (issue 12, part 6): folders private whatever the umask, CSV cells that no
spreadsheet runs as a formula, input text that cannot drive the terminal, and an upload name
that must say what the document says."""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat
from pathlib import Path

import pytest

from conftest import CREATED, EXAMPLES, PROVIDER

PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"
BILLING_NAME = "123456_FAC_20261120_000001.xml"


@pytest.fixture
def umask_000():
    """The umask of a careless shell: every folder cnsx makes must still be 0700."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(top) -> dict[str, str]:
    """The mode of ``top`` and of every folder under it, by path relative to its parent."""
    found = {top.name: oct(stat.S_IMODE(top.stat().st_mode))}
    for folder, subfolders, _ in os.walk(top):
        for name in subfolders:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, top.parent)] = oct(stat.S_IMODE(os.stat(path).st_mode))
    return found


def test_import_makes_its_data_folders_0700_under_umask_000(run, tmp_path, monkeypatch, umask_000):
    # The data folder and its missing parents (here two levels), the inbox, archive and
    # errors folders: all made by cnsx, all private to the user.
    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "home" / "share" / "cnsx"))
    r = run("import", str(PAYMENT))
    assert r.exit_code == 0, r.stderr
    modes = _modes(tmp_path / "home")
    assert set(modes) >= {"home", "home/share", "home/share/cnsx", "home/share/cnsx/inbox", "home/share/cnsx/archive"}
    assert set(modes.values()) == {"0o700"}, modes


def test_config_init_makes_its_folders_0700_under_umask_000(run, tmp_path, umask_000):
    target = tmp_path / "etc" / "cnsx" / "config.toml"
    r = run("--config", str(target), "config", "init", "--provider", PROVIDER)
    assert r.exit_code == 0, r.stderr
    assert set(_modes(tmp_path / "etc").values()) == {"0o700"}


def test_tariffs_add_makes_its_folders_0700_under_umask_000(run, tmp_path, monkeypatch, umask_000):
    # The config folder (and its parents) do not exist yet: tariffs add makes them.
    monkeypatch.setenv("CNSX_CONFIG_DIR", str(tmp_path / "etc" / "cnsx"))
    prices = [a for act, value in (("ZD11", "91.12"), ("ZD12", "113.90"), ("ZD13", "56.95"), ("ZD21", "56.95"))
              for a in ("--price", f"{act}={value}")]
    r = run("tariffs", "add", "--valid-from", "2026-11-01", "--source", "CNS letter", *prices)
    assert r.exit_code == 0, r.stderr
    modes = _modes(tmp_path / "etc")
    assert set(modes) == {"etc", "etc/cnsx", "etc/cnsx/nomenclature"} and set(modes.values()) == {"0o700"}, modes


def test_print_fee_notes_makes_its_folder_0700_under_umask_000(run, tmp_path, umask_000):
    r = run("print", "fee-notes", str(EXAMPLES / BILLING_NAME), "-o", str(tmp_path / "notes"),
            "--created", "2026-11-21T10:00:00+01:00")
    assert r.exit_code == 0, r.stderr
    assert _modes(tmp_path / "notes") == {"notes": "0o700"}


def test_a_folder_that_exists_keeps_its_mode(run, tmp_path, monkeypatch, umask_000):
    # cnsx makes its own folders private; it does not change the user's.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    monkeypatch.setenv("CNSX_DATA_DIR", str(shared / "cnsx"))
    assert run("import", str(PAYMENT)).exit_code == 0
    modes = _modes(shared)
    assert modes.pop("shared") == "0o755"
    assert set(modes.values()) == {"0o700"}


RLO = "\u202e"   # right-to-left override: the rest of the line would be shown reversed


def test_a_right_to_left_override_in_a_cns_label_is_shown_escaped(run, tmp_path, data):
    statement = tmp_path / PAYMENT.name
    label = "Nombre de séances autorisées dépassé"
    text = PAYMENT.read_text("utf-8")
    assert text.count(f"<Libelle>{label}</Libelle>") == 1
    statement.write_text(text.replace(label, f"{RLO}exe.lanigiro\u2066 \u200f"), "utf-8")
    others = ["123456_DTP_20261120_000001.xml", BILLING_NAME, "CNS_ACR_20261120_000001.xml", "CNS_RTP_20261120_000002.xml"]
    assert run("import", *(str(EXAMPLES / name) for name in others), str(statement)).exit_code == 0
    for args in (["status"], ["status", "--certificate", "TPC-2026-000087"]):
        r = run(*args)
        assert r.exit_code == 0, r.stderr
        assert "\\u202eexe.lanigiro\\u2066 \\u200f" in r.stdout
        assert not {RLO, "\u2066", "\u200f"} & set(r.stdout + r.stderr)


@pytest.mark.parametrize("cell, shown", [
    (f"ZD{RLO}11\u2069", "ZD\\u202e11\\u2069"),                                # bidirectional controls
    ('"ZD11\nsessions.csv:9: all good"', "ZD11\\x0aSESSIONS.CSV:9: ALL GOOD"),  # a line of cnsx's, faked
])
def test_input_text_cannot_drive_the_terminal(run, tmp_path, cell, shown):
    sessions = tmp_path / "sessions.csv"
    sessions.write_text(f"certificate_number,matricule,session_date,act_code\nTPC-2026-000101,1974091186700,2026-10-20,{cell}\n",
                        "utf-8")
    r = run("build-invoice", "--provider", PROVIDER, "--no-certificate-check", str(sessions))
    assert r.exit_code == 3
    assert shown in r.stderr   # (act codes are read upper-cased)
    assert not {RLO, "\u2069"} & set(r.stderr)
    assert not any(line.startswith(("sessions.csv:9", "SESSIONS.CSV:9")) for line in r.stderr.splitlines())


# --- CSV outputs: no cell a spreadsheet runs ---------------------------------------------------

FORMULAS = ["=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "+1+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "\t=1+1", "\r=1+1"]


def _statement_with_labels(tmp_path, labels) -> Path:
    """The example payment statement with a dispute line per label (the CNS's text)."""
    text = PAYMENT.read_text("utf-8")
    line = text[text.index("  <Ligne>\n    <NumeroMemoire>3</NumeroMemoire>\n    <NumeroLigne>2<"):]
    line = line[:line.index("</Ligne>\n") + len("</Ligne>\n")]
    label = "Nombre de séances autorisées dépassé"
    lines = "".join(line.replace(label, escape_xml(l)).replace("<NumeroLigne>2<", f"<NumeroLigne>{n}<")
                    for n, l in enumerate(labels, 2))
    target = tmp_path / PAYMENT.name
    target.write_text(text.replace(line, lines), "utf-8")
    return target


def escape_xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("\r", "&#13;").replace("\t", "&#9;")


def _cells(csv_text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(csv_text)) for cell in row]


def test_import_csv_writes_no_formula_cell(run, tmp_path):
    r = run("import", "--no-db", "--csv", str(_statement_with_labels(tmp_path, FORMULAS)))
    assert r.exit_code == 0, r.stderr
    cells = _cells(r.stdout)
    for formula in FORMULAS:
        assert formula not in cells
        assert "'" + formula in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and not c[1:].replace(".", "").isdigit())]


def test_status_csv_writes_no_formula_cell(run, tmp_path, data):
    others = ["123456_DTP_20261120_000001.xml", BILLING_NAME, "CNS_ACR_20261120_000001.xml", "CNS_RTP_20261120_000002.xml"]
    statement = _statement_with_labels(tmp_path, FORMULAS[:1])
    assert run("import", *(str(EXAMPLES / name) for name in others), str(statement)).exit_code == 0
    r = run("status", "--csv")
    assert r.exit_code == 0, r.stderr
    cells = _cells(r.stdout)
    assert FORMULAS[0] not in cells and "'" + FORMULAS[0] in cells


def test_plain_numbers_stay_numbers():
    from cns_exchange.rows.csvout import safe_cell

    assert [safe_cell(v) for v in ("-12.50", "+3", "-7", 12, None, "a=b", "")] == ["-12.50", "+3", "-7", 12, None, "a=b", ""]
    assert [safe_cell(v) for v in ("-", "-1-1", "@", "=1")] == ["'-", "'-1-1", "'@", "'=1"]


def test_rows_with_a_formula_name_build_the_same_document_again(run, tmp_path):
    # The quote csvout adds is read back off: import --no-db --csv still gives the rows
    # that build the same document.
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(EXAMPLES / "prescriptions", work / "prescriptions")
    text = (EXAMPLES / "requests.csv").read_text("utf-8")
    first_names = [line.split(";")[3] for line in text.splitlines()[1:]]
    rows = work / "requests.csv"
    rows.write_text(text.replace(f";{first_names[0]};", ";=HYPERLINK(\"http://x\");", 1)
                    .replace(f";{first_names[1]};", ";@Marie;", 1), "utf-8")
    built = run("build-request", str(rows), "--provider", PROVIDER, "--created", CREATED, "--sequence", "1",
                "-o", str(work / "request.xml"))
    assert built.exit_code == 0, built.stderr
    exported = run("import", "--no-db", "--csv", str(work / "request.xml"))
    assert exported.exit_code == 0, exported.stderr
    assert "'=HYPERLINK" in exported.stdout and "'@Marie" in exported.stdout
    (work / "rows.csv").write_text(exported.stdout, "utf-8")
    for pdf in EXAMPLES.glob("123456_ORD_*.pdf"):
        shutil.copy(pdf, work)
    again = run("build-request", str(work / "rows.csv"), "--provider", PROVIDER, "--created", CREATED, "--sequence", "1")
    assert again.exit_code == 0, again.stderr
    assert again.stdout_bytes == (work / "request.xml").read_bytes()


# --- upload --name: the document's own name or nothing ----------------------------------------

@pytest.mark.parametrize("name, says", [
    ("654321_FAC_20261120_000001.xml", "provider 654321, the document's is 123456"),      # another practice's
    ("123456_FAC_20261120_000002.xml", "sequence 000002, the document's NumeroSequence is 000001"),
    ("123456_FAC_20991120_000001.xml", "date 20991120, the document was created on 20261120"),
    ("123456_FAC_20261121_000007.xml", "date 20261121, the document was created on 20261120; sequence 000007"),
])
def test_upload_name_must_be_the_documents_own(run, dropbox, name, says):
    root, data = dropbox
    billing = EXAMPLES / BILLING_NAME
    r = run("upload", "-", "--name", name, input=billing.read_bytes())
    assert r.exit_code == 3, r.stderr
    assert "error DOC09:" in r.stderr and says in r.stderr and "nothing was sent" in r.stderr
    assert list((root / "upload").iterdir()) == []
    assert not (data / "outbox" / name).exists()  # not kept where a later upload would take it
    # Its own name goes.
    r = run("upload", "-", "--name", BILLING_NAME, input=billing.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert [p.name for p in (root / "upload").iterdir()] == [BILLING_NAME]


def test_upload_of_a_renamed_file_is_refused_too(run, dropbox, tmp_path):
    root, _ = dropbox
    renamed = tmp_path / "123456_FAC_20261120_000009.xml"
    shutil.copy(EXAMPLES / BILLING_NAME, renamed)
    r = run("upload", str(renamed))
    assert r.exit_code == 3 and "error DOC09:" in r.stderr
    assert list((root / "upload").iterdir()) == []


# --- the one "never overwrite" check of an output option ------------------------------------------

def test_an_output_option_never_names_something_already_there(tmp_path):
    """fsutil.new_output, which build, print summary, status --pdf and export call before any work."""
    from cns_exchange.errors import UsageError
    from cns_exchange.fsutil import new_output

    (tmp_path / "taken.pdf").write_bytes(b"mine")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link.pdf").symlink_to(tmp_path / "nowhere.pdf")
    assert new_output("-o", str(tmp_path / "new.pdf")) == tmp_path / "new.pdf"
    assert new_output("-o", str(tmp_path / "folder"), into_folder=True) == tmp_path / "folder"
    refused = {
        ("-o", str(tmp_path / "taken.pdf"), True): "a file of that name exists; cnsx never overwrites a file",
        ("-o", str(tmp_path / "link.pdf"), False): "not a regular file of that name exists",
        ("--pdf", str(tmp_path / "folder"), False): "a folder of that name exists",
        ("--pdf", str(tmp_path / "folder") + "/", False): "a folder name; this output is one file",
        ("-o", str(tmp_path / "missing") + "/", True): f"folder {tmp_path / 'missing'}/ does not exist",
        ("-o", str(tmp_path / "missing" / "x.csv"), False): f"folder {tmp_path / 'missing'} does not exist",
    }
    for (option, value, into_folder), message in refused.items():
        with pytest.raises(UsageError) as caught:
            new_output(option, value, into_folder)
        assert caught.value.message.startswith(f"{option} {value}: ") and message in caught.value.message
    assert (tmp_path / "taken.pdf").read_bytes() == b"mine" and not (tmp_path / "missing").exists()
