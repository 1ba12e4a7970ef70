"""Exit codes and streams (issue 12, part 5): every case that was exit 1 ("internal error")
gets its documented code and a one-line message; inputs are read in bounded memory; Ctrl-C
stops a command within a second and leaves nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import CREATED, EXAMPLES, PROVIDER, ROOT

SESSIONS = EXAMPLES / "sessions.csv"
PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"
ACK = EXAMPLES / "CNS_ACR_20261120_000001.xml"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"


def _cnsx(*args, **kwargs) -> subprocess.CompletedProcess:
    """cnsx as a process of its own (what a shell or cron starts)."""
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "cns_exchange", *args], cwd=ROOT, env=kwargs.pop("env", os.environ),
                          timeout=120, **kwargs)


def _one_error(stderr: str) -> str:
    """The message of a failed run: one 'error:' line (and its hint), no traceback."""
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture
def data(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("CNSX_DATA_DIR", str(folder))
    return folder


# --- a read-only database ---------------------------------------------------------------------

def _without_root_powers() -> list[str]:
    """A prefix that runs a command without the capabilities that let root write a 0444 file."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def test_a_read_only_database_on_import_is_exit_4_and_says_so(data):
    assert _cnsx("import", str(ACK)).returncode == 0
    for path in data.glob("practice.sqlite*"):
        if not path.name.endswith(".lock"):
            path.chmod(0o444)
    proc = subprocess.run([*_without_root_powers(), sys.executable, "-m", "cns_exchange", "import", str(PAYMENT)],
                          cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "the practice database cannot be written" in _one_error(proc.stderr)
    assert "readonly" in proc.stderr


# --- values out of range -----------------------------------------------------------------------

@pytest.mark.parametrize("epoch", ["100000000000000000000", "-99999999999999999", "253402300800", "-1"])
@pytest.mark.parametrize("command", [["build-invoice", "--provider", PROVIDER, "--no-certificate-check", str(SESSIONS)],
                                     ["sandbox", "--once", "--root", "."]])
def test_a_source_date_epoch_out_of_range_is_a_usage_error(run, monkeypatch, tmp_path, epoch, command):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    monkeypatch.chdir(tmp_path)
    r = run(*command)
    assert r.exit_code == 2, r.stderr
    assert f"SOURCE_DATE_EPOCH '{epoch}' is out of range" in _one_error(r.stderr)
    assert r.stdout == ""


def test_the_last_second_source_date_epoch_takes_still_builds(run, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "253402300799")
    r = run("build-invoice", "--provider", PROVIDER, "--no-certificate-check", str(SESSIONS))
    assert r.exit_code == 0, r.stderr
    assert "<DateHeureCreation>9999-12-31T23:59:59" in r.stdout


@pytest.mark.parametrize("setting, value, wanted", [
    ("timeout", "100000000000000000000", "timeout must be an integer from 1 to 3600"),
    ("timeout", "3601", "timeout must be an integer from 1 to 3600"),
    ("retries", "100000000000000000000", "retries must be an integer from 0 to 100"),
    ("backoff", "100000000000000000000", "backoff must be an integer from 0 to 60"),
])
@pytest.mark.parametrize("where", ["file", "environment"])
def test_a_timeout_or_retries_too_large_is_a_configuration_error(run, data, isolated_config, tmp_path, monkeypatch,
                                                                  setting, value, wanted, where):
    root = tmp_path / "dropbox"
    (root / "upload").mkdir(parents=True)
    (root / "download").mkdir()
    config = isolated_config / "config.toml"
    config.write_text(f'provider = "123456"\nremote = "file://{root}"\n'
                      + (f"{setting} = {value}\n" if where == "file" else ""))
    config.chmod(0o600)
    if where == "environment":
        monkeypatch.setenv(f"CNSX_{setting.upper()}", value)
    r = run("fetch")
    assert r.exit_code == 4, r.stderr
    assert (wanted if where == "file" else wanted.replace(setting, f"CNSX_{setting.upper()}")) in _one_error(r.stderr)


@pytest.mark.parametrize("encoding", ["punycode", "idna", "unicode_escape", "undefined"])
def test_an_encoding_that_is_not_for_files_is_a_usage_error(run, encoding):
    r = run("build-invoice", "--provider", PROVIDER, "--created", CREATED, "--encoding", encoding, str(SESSIONS))
    assert r.exit_code == 2, r.stderr
    assert f"'{encoding}' is not an encoding of text files" in _one_error(r.stderr)


# --- stderr that takes nothing ----------------------------------------------------------------

def test_stderr_on_a_full_disk_stops_no_run(tmp_path, data):
    # 2>/dev/full: the messages are lost; the output is written and the exit code is the run's.
    with open("/dev/full", "w") as full:
        built = _cnsx("build-invoice", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check",
                      str(SESSIONS), "-o", str(tmp_path / "out.xml"), stderr=full, stdout=subprocess.PIPE)
        bad = _cnsx("build-invoice", "--provider", PROVIDER, "--created", CREATED, str(EXAMPLES / "requests.csv"),
                    "-o", str(tmp_path / "bad.xml"), stderr=full, stdout=subprocess.PIPE)
        imported = _cnsx("-v", "import", str(ACK), stderr=full, stdout=subprocess.PIPE)
    assert (built.returncode, bad.returncode, imported.returncode) == (0, 3, 0)
    assert (tmp_path / "out.xml").read_bytes().startswith(b"<?xml")
    assert not (tmp_path / "bad.xml").exists()


# --- file names ------------------------------------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_a_usage_error(tmp_path, data):
    name = os.fsencode(tmp_path) + b"/CNS_ACR_\xe9t\xe9.xml"   # Latin-1, as an old share writes it
    with open(name, "wb") as f:
        f.write(ACK.read_bytes())
    for args in (["validate", name], ["import", "--no-db", "--json", name], ["import", name]):
        proc = subprocess.run([sys.executable, "-m", "cns_exchange", *args], cwd=ROOT, env=os.environ,
                              capture_output=True, timeout=120)
        stderr = proc.stderr.decode("utf-8")
        assert proc.returncode == 2, stderr
        assert "CNS_ACR_\\xe9t\\xe9.xml' is not UTF-8" in _one_error(stderr)
        assert proc.stdout == b""


@pytest.mark.parametrize("command", [
    ["build-invoice", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check", str(SESSIONS)],
    ["print", "summary", str(BILLING), "--created", CREATED],
])
def test_an_output_folder_with_a_slash_that_does_not_exist_is_a_usage_error(run, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    r = run(*command, "-o", "out/")
    assert r.exit_code == 2, r.stderr
    assert "-o out/: folder out/ does not exist" in _one_error(r.stderr)
    assert list(tmp_path.iterdir()) == []   # no file named 'out'
    (tmp_path / "out").mkdir()
    r = run(*command, "-o", "out/")
    assert r.exit_code == 0, r.stderr
    assert len(list((tmp_path / "out").iterdir())) == 1


def test_a_status_pdf_named_as_a_folder_is_a_usage_error(run, data, tmp_path, monkeypatch):
    assert run("import", str(ACK)).exit_code == 0
    monkeypatch.chdir(tmp_path)
    r = run("status", "--pdf", "report/")
    assert r.exit_code == 2, r.stderr
    assert "--pdf report/" in _one_error(r.stderr)
    assert not (tmp_path / "report").exists()
