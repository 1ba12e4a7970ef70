"""Exit codes and streams (issue 12, part 5): every case that was exit 1 ("internal error")
gets its documented code and a one-line message; inputs are read in bounded memory; Ctrl-C
stops a command within a second and leaves nothing half-written."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from cns_exchange.rows.records import InputReport, read_rows
from conftest import CREATED, EXAMPLES, PROVIDER, ROOT, random_matricules

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


# --- a read-only database ---------------------------------------------------------------------

def _without_root_powers() -> list[str]:
    """A prefix that runs a command without the capabilities that let root write a 0444 file."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def test_a_read_only_database_on_import_is_exit_8_and_says_so(data):
    assert _cnsx("import", str(ACK)).returncode == 0
    for path in data.glob("practice.sqlite*"):
        if not path.name.endswith(".lock"):
            path.chmod(0o444)
    proc = subprocess.run([*_without_root_powers(), sys.executable, "-m", "cns_exchange", "import", str(PAYMENT)],
                          cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 8, proc.stderr
    assert "the practice database cannot be written" in _one_error(proc.stderr)
    assert "readonly" in proc.stderr


# --- local I/O errors: exit 8, one line naming the file ------------------------------------------

@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a read-only file system (a tmpfs mounted ro: root's powers do not write
    there, unlike a chmod), and a function that remounts it (``ro=False``: read-write)."""
    assert os.geteuid() == 0 or pytest.skip("mounting a file system needs root")
    folder = tmp_path / "ro"
    folder.mkdir()

    def mount(ro: bool = True) -> None:
        options = ("remount," if os.path.ismount(folder) else "") + ("ro" if ro else "rw") + ",size=1m,mode=0700"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True, capture_output=True)

    mount()
    try:
        yield folder, mount
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)


def test_an_output_on_a_read_only_file_system_is_exit_8_and_names_it(read_only_folder):
    folder, _ = read_only_folder
    proc = _cnsx("build-invoice", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check",
                 str(SESSIONS), "-o", str(folder / "out.xml"), text=True)
    assert proc.returncode == 8, proc.stderr
    assert f"{folder}: cannot create a file in this folder (Read-only file system)" in _one_error(proc.stderr)
    assert "read-only file system" in proc.stderr.split("hint:")[1]
    assert proc.stdout == "" and list(folder.iterdir()) == []


def test_a_database_on_a_read_only_file_system_is_exit_8(read_only_folder, monkeypatch):
    folder, mount = read_only_folder
    mount(ro=False)
    monkeypatch.setenv("CNSX_DATABASE", str(folder / "practice.sqlite"))
    assert _cnsx("import", str(ACK)).returncode == 0
    mount(ro=True)
    proc = _cnsx("import", str(PAYMENT), text=True)
    assert proc.returncode == 8, proc.stderr
    # The run lock beside it is the first file the import opens for writing: it is named.
    assert _one_error(proc.stderr) == f"error: {folder / 'practice.sqlite.lock'}: Read-only file system"


def test_an_output_folder_without_write_permission_is_exit_8(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    proc = subprocess.run([*_without_root_powers(), sys.executable, "-m", "cns_exchange", "build-invoice",
                           "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check", str(SESSIONS),
                           "-o", str(folder / "out.xml")], cwd=ROOT, env=os.environ, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 8, proc.stderr
    assert f"{folder}: cannot create a file in this folder (Permission denied)" in _one_error(proc.stderr)
    assert "permissions" in proc.stderr.split("hint:")[1]
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["build-invoice", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check", str(SESSIONS)],
    ["import", "--no-db", "--json", str(PAYMENT)],
    ["validate", "--json", str(PAYMENT)],
])
def test_a_stdout_on_a_full_disk_is_exit_8_and_named(command):
    with open("/dev/full", "w") as full:
        proc = _cnsx(*command, stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 8, proc.stderr
    assert _one_error(proc.stderr) == "error: stdout: No space left on device"


def test_an_os_error_maps_to_its_cause():
    import errno as e

    from cns_exchange.errors import ExitCode, local_failure

    assert local_failure(BrokenPipeError(e.EPIPE, "Broken pipe")) is None   # exit 141, cli.main's
    assert local_failure(ValueError("x")) is None
    for code, hint in [(e.ENOSPC, "free space"), (e.EACCES, "permissions"), (e.EROFS, "read-only file system"),
                       (e.ENOTDIR, "a file stands where the path needs a folder")]:
        error = local_failure(OSError(code, os.strerror(code), "/x/y"))
        assert error.exit_code == ExitCode.LOCAL_IO == 8
        assert error.message == f"/x/y: {os.strerror(code)}" and hint in error.hint
    assert local_failure(OSError(e.EIO, "Input/output error"), "stdout").message == "stdout: Input/output error"
    # The network's failures are not the machine's: the transports translate their own (5 or 6).
    import socket

    for network in (ConnectionRefusedError(e.ECONNREFUSED, "Connection refused"), TimeoutError("timed out"),
                    socket.gaierror(socket.EAI_NONAME, "Name or service not known")):
        assert local_failure(network) is None


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
def test_a_timeout_or_retries_too_large_is_a_configuration_error(run, dropbox, isolated_config, monkeypatch,
                                                                  setting, value, wanted, where):
    config = isolated_config / "config.toml"
    if where == "file":
        config.write_text(config.read_text() + f"{setting} = {value}\n")
    else:
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


def test_an_inbox_file_whose_name_is_not_utf8_is_left_for_a_human(data, dropbox):
    # Dropped into the inbox by hand: import says so (exit 3); the nightly job imports the
    # rest and says so too; the file stays where it is.
    inbox = data / "inbox"
    inbox.mkdir(parents=True)
    bad = os.fsencode(inbox) + b"/CNS_ACR_\xe9t\xe9.xml"
    with open(bad, "wb") as f:
        f.write(ACK.read_bytes())
    shutil.copy(PAYMENT, inbox)
    for command in (["import"], ["nightly"]):
        proc = _cnsx(*command)
        stderr = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 3, stderr
        assert "CNS_ACR_\\xe9t\\xe9.xml: a file name that is not UTF-8" in stderr and "internal error" not in stderr
        assert os.path.exists(bad)
    assert os.listdir(os.fsencode(inbox)) == [b"CNS_ACR_\xe9t\xe9.xml"]   # the payment statement: imported


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


# --- bounded memory ----------------------------------------------------------------------------

#: The peak a build may reach on any input (issue 12): the 200,000-session benchmark stays
#: well under it, a 1 GB line took 2.1 GB.
PEAK_LIMIT_MB = 200
HEADER = b"certificate_number,matricule,session_date,act_code\n"


def _run_measured(args, stdin, **kwargs) -> tuple[int, float, str]:
    """Run cnsx as a child of this process; return (exit code, its own peak RSS in MB, stderr).
    The peak is the child's alone (os.wait4), not the largest of every child this test run
    ever had. Its address space is capped so that a reader gone wrong fails instead of
    taking the machine."""
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    proc = subprocess.Popen([sys.executable, "-m", "cns_exchange", *args], cwd=ROOT, env=os.environ, stdin=stdin,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limits, **kwargs)
    stderr = proc.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, stderr


def _sparse_line(path, gigabytes: int = 1) -> None:
    """A CSV header, then one line of ``gigabytes`` GiB of zero bytes and no line end (a sparse
    file: it takes no disk)."""
    with open(path, "wb") as f:
        f.write(HEADER)
        f.truncate(len(HEADER) + (gigabytes << 30))


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_a_1_gb_line_is_refused_in_bounded_memory(tmp_path, fmt):
    source = tmp_path / f"sessions.{fmt}"
    _sparse_line(source)
    code, peak, stderr = _run_measured(["build-invoice", "--provider", PROVIDER, "--created", CREATED,
                                        "--no-certificate-check", str(source), "-o", str(tmp_path / "out.xml")],
                                       subprocess.DEVNULL)
    assert code == 3, stderr
    # (line 1 of the NDJSON file, the CSV header, is IN006: not JSON)
    assert f"sessions.{fmt}:2: error IN015: line 2 is longer than 1048576 bytes" in stderr
    assert "Traceback" not in stderr
    assert peak < PEAK_LIMIT_MB, f"peak {peak:.0f} MB"
    assert not (tmp_path / "out.xml").exists()


def test_a_json_item_of_1_gb_is_refused_in_bounded_memory(tmp_path):
    # Written into a pipe as the reader takes it: a 1 GB item on one line, never whole in memory.
    read_end, write_end = os.pipe()

    def feed():
        with open(write_end, "wb") as out:
            try:
                out.write(b'[{"certificate_number": "TPC-1", "matricule": "')
                block = b"7" * (1 << 20)
                for _ in range(1024):
                    out.write(block)
                out.write(b'"}]\n')
            except BrokenPipeError:
                pass   # the reader stopped early, as it should

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        code, peak, stderr = _run_measured(["build-invoice", "--provider", PROVIDER, "--created", CREATED,
                                            "--no-certificate-check", "--input-format", "json", "-"], read_end)
    finally:
        os.close(read_end)
        writer.join()
    assert code == 3, stderr
    assert "<stdin>:1: error IN015: item 1 is longer than 1048576 characters" in stderr
    assert peak < PEAK_LIMIT_MB, f"peak {peak:.0f} MB"


def test_a_build_of_400000_sessions_in_date_order_stays_under_the_limit(tmp_path):
    """A build holds a bounded share of its sessions (docs/cli.md, Limits): 400,000 sessions
    (held whole, they took about 250 MB), rows in date order so that every fee note is spread
    over the file, 25,000 patients with four certificates each, each patient's forgotten after
    their last note. The written file is checked (XSD) too: 100,000 fee notes, the most a
    billing file holds, whose numbers libxml2 keeps to the end."""
    patients = [m for m in random_matricules(40000, seed=7) if m[:4] < "2000"][:25000]
    rows = []
    for p, matricule in enumerate(patients):
        for c in range(4):
            start = 20 + c * 35 + p % 7
            for k, act in enumerate(("ZD11", "ZD12", "ZD13", "ZD13")):
                rows.append((start + 7 * k, f"TPC-{p:05d}-{c}", matricule, act))
    rows.sort()
    with open(tmp_path / "sessions.csv", "w", encoding="utf-8") as f:
        f.write("certificate_number,matricule,session_date,act_code\n")
        f.writelines(f"{cert},{m},2026-{1 + day // 28:02d}-{1 + day % 28:02d},{act}\n" for day, cert, m, act in rows)
    code, peak, stderr = _run_measured(["-q", "build-invoice", "--provider", PROVIDER, "--created", CREATED,
                                        "--no-certificate-check", str(tmp_path / "sessions.csv"),
                                        "-o", str(tmp_path / "out.xml")], subprocess.DEVNULL)
    assert code == 0, stderr[-3000:]
    assert (tmp_path / "out.xml").read_bytes().count(b"<Seance>") == 400000
    assert peak < PEAK_LIMIT_MB, f"peak {peak:.0f} MB"


def test_a_large_json_array_is_read_an_item_at_a_time(tmp_path, run):
    # 20,000 sessions (5,000 patients) as one JSON array on one line: the same document as
    # the same rows in CSV.
    rows = [{"certificate_number": f"TPC-2026-{n:06d}", "matricule": m, "session_date": f"2026-10-{day:02d}",
             "act_code": act} for n, m in enumerate(random_matricules(5000), 1)
            for day, act in ((5, "ZD11"), (12, "ZD12"), (19, "ZD13"), (26, "ZD13"))]
    (tmp_path / "s.json").write_text(json.dumps(rows), "utf-8")
    with open(tmp_path / "s.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    args = ["build-invoice", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check"]
    from_json, from_csv = run(*args, str(tmp_path / "s.json")), run(*args, str(tmp_path / "s.csv"))
    assert from_json.exit_code == 0, from_json.stderr[-2000:]
    assert from_json.stdout == from_csv.stdout


@pytest.mark.parametrize("text, expected", [
    ("", "1 IN006"),
    ("   ", "1 IN006"),
    ("[]", "1 IN010"),
    ("{}", "1 IN006"),
    ('[{"a": 1},]', "1 IN006"),
    ('[{"a": 1}', "1 IN006"),
    ('[{"a": 1}] x', "1 IN006"),
    ('[{"a": 1} {"b": 2}]', "1 IN006"),
    ('[\n\n  {"a": 1,\n   "b": }]', "4 IN006"),
])
def test_json_array_syntax_errors_are_found_by_the_item_reader(text, expected):
    report = InputReport("x.json")
    list(read_rows(io.BytesIO(text.encode()), "json", report, ("a",), ()))
    assert [f"{i.line} {i.code}" for i in report.issues if i.code != "IN002"] == [expected], report.issues


def test_the_column_of_a_json_error_is_counted_across_reads():
    # A minified array on one line, longer than the reader's window: the column of an error
    # near its end is still the column in the file.
    item = '{"a": "' + "x" * 1000 + '"}'
    text = "[" + ",".join([item] * 3000) + ",{\"a\": x}]"
    report = InputReport("x.json")
    assert len(list(read_rows(io.BytesIO(text.encode()), "json", report, ("a",), ()))) == 3000
    [issue] = report.issues
    assert issue.code == "IN006" and issue.line == 1
    assert f"at column {text.index('x}') + 1} " in issue.message


def test_reading_stops_after_1000_errors(tmp_path, run):
    source = tmp_path / "s.csv"
    source.write_bytes(HEADER + b"x\n" * 5000)
    r = run("build-invoice", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check", str(source))
    assert r.exit_code == 3
    assert r.stderr.count("error IN006") == 1000
    assert "error IN016: 1000 errors: the file was not read beyond line 1001" in r.stderr


def test_a_cell_over_the_csv_limit_is_named(tmp_path, run):
    source = tmp_path / "s.csv"
    source.write_bytes(HEADER + b'TPC-1,"' + b"1\n" * 70000 + b'",2026-10-05,ZD11\n')
    r = run("build-invoice", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check", str(source))
    assert r.exit_code == 3
    assert "error IN015: a cell is longer than 131072 characters" in r.stderr


# --- Ctrl-C ------------------------------------------------------------------------------------

def _wait_reading_a_pipe(proc, seconds: float = 60) -> None:
    """Wait until ``proc`` is blocked reading a pipe (its stdin): then it is mid-read."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            with open(f"/proc/{proc.pid}/wchan") as f:
                if "pipe" in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the command never waited on its stdin")


def _interrupt(proc) -> int:
    """Ctrl-C: SIGINT, then the exit code, which must come within 2 s."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("Ctrl-C did not stop the command within 2 s") from None


def test_ctrl_c_stops_a_build_reading_dev_zero(tmp_path):
    # build-invoice - </dev/zero read one endless line in one C call that Ctrl-C could not
    # reach, and grew to 24 GB. It now stops by itself at the 1 MiB limit; Ctrl-C, if it
    # comes first, stops it too. Nothing is written either way.
    out = tmp_path / "out"
    out.mkdir()
    with open("/dev/zero", "rb") as zero:
        proc = subprocess.Popen([sys.executable, "-m", "cns_exchange", "build-invoice", "--provider", PROVIDER,
                                 "--created", CREATED, "--no-certificate-check", "-", "-o", str(out)],
                                cwd=ROOT, env=os.environ, stdin=zero, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30)))
        time.sleep(1.5)
        code = _interrupt(proc) if proc.poll() is None else proc.returncode
    assert code in (3, 130), proc.stderr.read()
    assert list(out.iterdir()) == [] and proc.stdout.read() == b""


@pytest.mark.parametrize("command", [
    ["build-invoice", "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check", "-", "-o", "{out}"],
    ["validate", "-"],
    ["upload", "-", "--name", BILLING.name],
    ["import", "-"],
    ["print", "summary", "-", "-o", "{out}"],
])
def test_ctrl_c_mid_read_exits_130_and_leaves_nothing_behind(tmp_path, dropbox, command):
    # stdin is a pipe that has given part of a document and then waits: the command is
    # reading when Ctrl-C comes. It exits 130 within 2 s; no temp file, no output, no spool.
    root, data = dropbox
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    scratch.mkdir()
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "cns_exchange", *(a.replace("{out}", str(out)) for a in command)],
                            cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)}, stdin=read_end,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(read_end)
    try:
        partial = (SESSIONS.read_bytes() if command[0] == "build-invoice" else BILLING.read_bytes())[:2000]
        os.write(write_end, partial)
        _wait_reading_a_pipe(proc)
        code = _interrupt(proc)
    finally:
        os.close(write_end)
    stderr = proc.stderr.read().decode()
    assert code == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert proc.stdout.read() == b""
    assert list(out.iterdir()) == [] and list(scratch.iterdir()) == []
    assert not (data / "outbox").exists() or list((data / "outbox").iterdir()) == []
    assert list((root / "upload").iterdir()) == []
