"""Hostile and broken XML handed to ``cnsx validate``: each file of corpus/hostile/ must be
refused with its issue code, exit 3, no traceback, and without cnsx reading a local file or
opening a connection on the document's behalf.

The table below maps each corpus file to the one code it must produce. The files were
written from the examples (the hostile part added by hand); the ones that name a resource
name ``/etc/passwd`` and ``http://127.0.0.1:9/`` (the discard port, where nothing listens).
``test_nothing_is_fetched`` rewrites those names to a FIFO and a live listener of its own, so
that an attempt to read or connect is seen, not just its failure.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from conftest import EXAMPLES

CORPUS = Path(__file__).resolve().parent / "corpus" / "hostile"

#: corpus file -> the issue code ``cnsx validate`` must report for it.
CASES = {
    "xxe-file-passwd.xml": "XML02",        # <!ENTITY secret SYSTEM "file:///etc/passwd">
    "xxe-http.xml": "XML02",               # <!ENTITY remote SYSTEM "http://127.0.0.1:9/secret.txt">
    "billion-laughs.xml": "XML02",         # 10^9 "lol"s through nested entities
    "external-dtd.xml": "XML02",           # <!DOCTYPE ... SYSTEM "http://127.0.0.1:9/x.dtd">
    "parameter-entities.xml": "XML02",     # %remote; pulled into the internal subset
    "doctype-no-entities.xml": "XML02",    # <!DOCTYPE AccuseReception>: no DTD at all in CNS files
    "utf16-xxe.xml": "XML02",              # the XXE again, UTF-16 encoded (byte scanners miss it)
    "utf7-hidden-doctype.xml": "XML02",    # the XXE written +ADw-!DOCTYPE ... in UTF-7
    "xinclude.xml": "XSD01",               # <xi:include href="file:///etc/passwd"/>: never processed
    "not-xml.xml": "XML01",                # a CSV file named .xml
    "pdf-named-xml.xml": "XML01",          # a PDF named .xml
    "empty.xml": "XML01",                  # zero bytes
    "truncated-in-header.xml": "XML01",    # cut inside EnTete
    "truncated-in-body.xml": "XML01",      # cut inside the first fee note, header complete
    "encoding-mismatch.xml": "XML01",      # declares UTF-16, is UTF-8
    "deep-nesting.xml": "XML01",           # 1000 nested elements (huge_tree is off)
}

#: What would show if /etc/passwd were read: its first field on every system.
PASSWD_MARKERS = ("root:", "/bin/sh", "/usr/sbin/nologin")

#: Files whose hostile part names a local file or a URL (checked by test_nothing_is_fetched).
FETCHING = ["xxe-file-passwd.xml", "xxe-http.xml", "external-dtd.xml", "parameter-entities.xml",
            "utf16-xxe.xml", "utf7-hidden-doctype.xml", "xinclude.xml"]

LARGE_EXAMPLE = EXAMPLES / "123456_FAC_20261120_000001.xml"


@pytest.fixture(autouse=True)
def fresh_libxml2_log():
    """Start every test with an empty libxml2 error log.

    The tests run cnsx in one process, one document after another; a stale parser error left
    by an earlier hostile document must not decide what a later test sees (that leak within
    one command is tested on its own, in test_one_hostile_file_does_not_taint_the_next).
    """
    etree.clear_error_log()


def issue_lines(stderr: str, name: str, code: str) -> list[str]:
    """Return the stderr lines that report ``code`` for the file ``name``."""
    return [line for line in stderr.splitlines() if line.startswith(name) and f" {code}:" in line]


def assert_no_leak(*texts: str) -> None:
    for text in texts:
        for marker in PASSWD_MARKERS:
            assert marker not in text, f"content of /etc/passwd ({marker!r}) leaked into the output"


def test_corpus_and_table_agree():
    on_disk = {p.name for p in CORPUS.iterdir() if p.is_file()}
    assert on_disk == set(CASES), "every corpus file needs its expected code in CASES, and vice versa"
    assert set(FETCHING) <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_refused(run, name):
    path = str(CORPUS / name)
    code = CASES[name]
    r = run("validate", path)
    assert r.exit_code == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert issue_lines(r.stderr, path, code), f"expected '{path}...: error {code}:' on stderr, got:\n{r.stderr}"
    assert f"{path}: INVALID" in r.stderr
    assert_no_leak(r.stdout, r.stderr)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_json_report(run, name):
    path = str(CORPUS / name)
    code = CASES[name]
    r = run("validate", "--json", path)
    assert r.exit_code == 3, r.stderr
    assert "Traceback" not in r.stderr
    reports = json.loads(r.stdout)
    assert [rep["file"] for rep in reports] == [path]
    report = reports[0]
    assert report["valid"] is False
    errors = [i for i in report["issues"] if i["severity"] == "error"]
    assert code in {i["code"] for i in errors}, errors
    assert all(i["file"] == path for i in report["issues"])
    assert_no_leak(r.stdout, r.stderr)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_through_stdin(run, name):
    code = CASES[name]
    r = run("validate", "-", input=(CORPUS / name).read_bytes())
    assert r.exit_code == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert issue_lines(r.stderr, "<stdin>", code), r.stderr
    assert_no_leak(r.stdout, r.stderr)


@pytest.mark.parametrize("hostile", ["billion-laughs.xml", "xxe-file-passwd.xml", "deep-nesting.xml", "not-xml.xml"])
def test_one_hostile_file_does_not_taint_the_next(run, hostile):
    """`cnsx validate A B`: B gets its own verdict whatever A did to the parser."""
    first, second = str(CORPUS / hostile), str(CORPUS / "xinclude.xml")
    alone = run("validate", "--json", second)
    etree.clear_error_log()
    both = run("validate", "--json", first, second)
    assert both.exit_code == 3, both.stderr
    reports = json.loads(both.stdout)
    assert [r["file"] for r in reports] == [first, second]
    assert CASES[hostile] in {i["code"] for i in reports[0]["issues"]}
    codes_alone = sorted(i["code"] for i in json.loads(alone.stdout)[0]["issues"])
    codes_after = sorted(i["code"] for i in reports[1]["issues"])
    assert codes_after == codes_alone == ["DOC07", "XSD01"], both.stderr
    assert issue_lines(both.stderr, second, "XSD01"), both.stderr


def test_entity_is_never_expanded_into_a_report(run):
    """Billion laughs: refused quickly and without the expansion anywhere in the output."""
    r = run("validate", "--json", str(CORPUS / "billion-laughs.xml"))
    assert r.exit_code == 3
    assert "lollol" not in r.stdout + r.stderr
    assert len(r.stdout) < 10_000


# --- size limit ----------------------------------------------------------------------------

@pytest.mark.parametrize("via", ["file", "stdin"])
def test_file_over_the_size_limit(run, via):
    data = LARGE_EXAMPLE.read_bytes()
    assert len(data) > 1000
    valid = run("validate", str(LARGE_EXAMPLE))
    assert valid.exit_code == 0, valid.stderr  # the file is fine: only its size is refused below
    if via == "file":
        name = str(LARGE_EXAMPLE)
        r = run("validate", "--max-size", "1000", name)
    else:
        name = "<stdin>"
        r = run("validate", "--max-size", "1000", "-", input=data)
    assert r.exit_code == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert issue_lines(r.stderr, name, "XML03"), r.stderr
    j = run("validate", "--json", "--max-size", "1000", *(["-"] if via == "stdin" else [name]),
            input=data if via == "stdin" else None)
    assert j.exit_code == 3
    report = json.loads(j.stdout)[0]
    assert report["file"] == name and report["valid"] is False
    assert "XML03" in {i["code"] for i in report["issues"]}


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_file_at_the_size_limit_is_accepted(run, via):
    data = LARGE_EXAMPLE.read_bytes()
    limit = str(len(data))
    if via == "file":
        r = run("validate", "--max-size", limit, str(LARGE_EXAMPLE))
    else:
        r = run("validate", "--max-size", limit, "-", input=data)
    assert r.exit_code == 0, r.stderr
    assert "XML03" not in r.stderr


# --- nothing is read or fetched on the document's behalf -----------------------------------

class _Listener:
    """A TCP server on 127.0.0.1 that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class _FifoCanary:
    """A FIFO that records whether anyone opened it for reading (and then feeds them a canary).

    A writer's non-blocking open fails with ENXIO while no reader has the FIFO open, so
    polling it sees a read attempt without ever blocking the reader for long.
    """

    TEXT = b"root:x:0:0:canary-9f1c:/root:/bin/sh\n"

    def __init__(self, path: Path) -> None:
        os.mkfifo(path, 0o600)
        self.path = path
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                time.sleep(0.005)
                continue
            self.opened += 1
            try:
                os.write(fd, self.TEXT)
            except OSError:
                pass
            os.close(fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def probes(tmp_path):
    listener = _Listener()
    canary = _FifoCanary(tmp_path / "passwd-canary")
    yield listener, canary
    listener.close()
    canary.close()


def _rewrite(data: bytes, port: int, fifo: Path) -> bytes:
    """Point the document's local-file and network references at the probes."""
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "latin-1"
    text = data.decode(encoding)
    text = (text.replace("file:///etc/passwd", f"file://{fifo}")
                .replace("/etc/passwd", str(fifo))
                .replace("127.0.0.1:9/", f"127.0.0.1:{port}/"))
    return text.encode(encoding)


@pytest.mark.parametrize("name", FETCHING)
def test_nothing_is_fetched(tmp_path, probes, name):
    """Run the real command in a subprocess on a copy whose references point at the probes."""
    listener, canary = probes
    original = (CORPUS / name).read_bytes()
    data = _rewrite(original, listener.port, canary.path)
    assert data != original, "the case names no resource to rewrite"
    target = tmp_path / name
    target.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNSX_") and k != "SOURCE_DATE_EPOCH"}
    env["CNSX_CONFIG_DIR"] = str(tmp_path / "config")
    proc = subprocess.run([sys.executable, "-m", "cns_exchange", "validate", "--json", str(target)],
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    time.sleep(0.1)  # let the probes see a late attempt
    assert canary.opened == 0, "the document made cnsx open a local file"
    assert listener.connections == 0, "the document made cnsx open a network connection"
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "canary-9f1c" not in proc.stdout + proc.stderr
    report = json.loads(proc.stdout)[0]
    assert CASES[name] in {i["code"] for i in report["issues"]}


def test_probes_do_see_a_fetch(tmp_path, probes):
    """The probes work: a parser that resolves entities trips the FIFO, a client the listener.

    (The libxml2 bundled with lxml may be built without HTTP, so the listener is checked with
    a plain connection.)
    """
    listener, canary = probes
    doc = b'<?xml version="1.0"?>\n<!DOCTYPE r [\n<!ENTITY f SYSTEM "file:///etc/passwd">\n]>\n<r>&f;</r>\n'
    path = tmp_path / "probe.xml"
    path.write_bytes(_rewrite(doc, listener.port, canary.path))
    parser = etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=True)
    root = etree.parse(str(path), parser).getroot()
    assert "canary-9f1c" in root.text
    socket.create_connection(("127.0.0.1", listener.port), timeout=5).close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (canary.opened and listener.connections):
        time.sleep(0.02)
    assert canary.opened >= 1
    assert listener.connections >= 1
