"""paramiko's private SFTP request API, which cns_exchange/transport/sftp.py needs (_PrivateRequests).

paramiko has no public call that keeps several opens in flight or sends an extended request
(limits@openssh.com). With its public calls (open, read, close per file) a fetch of 2,000
small files took 1.3 to 1.5 times as long even on 127.0.0.1, and each file costs round trips
that a distant server makes slow. So sftp.py calls ``SFTPClient._async_request``, ``_read_response``
and ``_request``, pyproject.toml bounds paramiko to the minor versions checked, and these
tests fail the day those calls move or change:

- the names, their signatures and the ``_async_response`` callback, read from paramiko itself;
- against the real OpenSSH sshd: requests sent with them come back through the callback, the
  server's limits arrive, and get_small takes the pipelined path (every open of a group sent
  before any answer is read, then every read, then every close), not the fallback;
- where they are not as expected, cnsx says so in its debug log and falls back to the public
  calls (get() per file, 32 KiB requests), which still fetch correctly.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import re
from pathlib import Path

import paramiko
import pytest

from faults_env import CnsxEnv

from cns_exchange.transport import RemoteEntry
from cns_exchange.transport.sftp import SftpTransport, _PrivateRequests

ROOT = Path(__file__).resolve().parent.parent


def _signature(function) -> str:
    """A function's signature as text, annotations aside."""
    sig = inspect.signature(function)
    return str(sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                           return_annotation=sig.empty))


class _DebugLines(logging.Handler):
    """Collects the records of cnsx.sftp (the 'cnsx' logger may not propagate to pytest's)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def debug_lines():
    logger = logging.getLogger("cnsx.sftp")
    handler, level = _DebugLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def transport(sshd, isolated_config, tmp_path):
    """An SftpTransport connected to the real sshd, as cnsx connects."""
    from cns_exchange.config import load_settings
    from cns_exchange.transport import open_transport

    env = CnsxEnv(isolated_config, tmp_path / "data")
    env.write_config(sshd)
    connected = open_transport(load_settings(str(env.config_path)))
    yield connected
    connected.close()


# -- read from paramiko itself ---------------------------------------------------------------

def test_the_private_calls_exist_with_the_signatures_cnsx_calls():
    client = paramiko.SFTPClient
    assert _signature(client._async_request) == "(self, fileobj, t, *args)"
    assert _signature(client._read_response) == "(self, waitfor=None)"
    assert _signature(client._request) == "(self, t, *args)"
    # what sftp.py checks at run time is what these say (on an instance, without self)
    assert _PrivateRequests.SIGNATURES == {"_async_request": "(fileobj, t, *args)",
                                           "_read_response": "(waitfor=None)", "_request": "(t, *args)"}
    import paramiko.sftp as protocol

    for name in _PrivateRequests.CONSTANTS:
        assert hasattr(protocol, name), f"paramiko.sftp.{name} moved"
    assert issubclass(protocol.int64, int)


def test_answers_are_handed_to_the_requesting_object_through_async_response():
    # _async_request files the object under the request's number; _read_response hands an
    # answer to that object as obj._async_response(t, msg, num) (and returns the answer itself
    # only to the one waited for, as _request does). sftp.py's _PrivateRequests is that object.
    send = inspect.getsource(paramiko.SFTPClient._async_request)
    read = inspect.getsource(paramiko.SFTPClient._read_response)
    assert re.search(r"self\._expecting\[num\]\s*=\s*fileobj", send), send
    assert re.search(r"return\s+num\b", send), send
    assert re.search(r"fileobj\._async_response\(t,\s*msg,\s*num\)", read), read
    assert re.search(r"if\s+waitfor\s+is\s+None:\s*#[^\n]*\n\s*break", read), "one answer per call without waitfor"
    # arguments are packed by type: int64 as 64 bits, int as 32 bits, attributes, else a string
    assert "isinstance(item, int64)" in send and "isinstance(item, SFTPAttributes)" in send, send
    assert list(inspect.signature(_PrivateRequests._async_response).parameters) == ["self", "t", "msg", "num"]


def test_the_run_time_check_names_what_moved():
    class Gone(paramiko.SFTPClient):
        _read_response = None

    class Changed(paramiko.SFTPClient):
        def _async_request(self, t, fileobj, *args):
            return super()._async_request(fileobj, t, *args)

    assert _PrivateRequests.problem(paramiko.SFTPClient.__new__(paramiko.SFTPClient)) is None
    assert "has no SFTPClient._read_response" in _PrivateRequests.problem(Gone.__new__(Gone))
    assert "SFTPClient._async_request(t, fileobj, *args) is not _async_request(fileobj, t, *args)" \
        in _PrivateRequests.problem(Changed.__new__(Changed))


def test_pyproject_bounds_paramiko_at_a_checked_minor_version():
    # A new minor release may move the private calls: the bound is raised only after these
    # tests pass on it (scripts/test-newest.sh shows when one is held back).
    text = (ROOT / "pyproject.toml").read_text()
    line = next(l for l in text.splitlines() if l.strip().startswith('"paramiko'))
    found = re.search(r"<\s*(\d+)\.(\d+)\b", line)
    assert found, f"paramiko has no upper bound at a minor version: {line}"
    installed = tuple(int(part) for part in paramiko.__version__.split(".")[:2])
    assert installed < (int(found[1]), int(found[2])), f"paramiko {paramiko.__version__} is past {line}"


# -- against the real sshd ------------------------------------------------------------------

def test_requests_sent_with_them_come_back_through_the_callback(sshd, transport):
    from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_OPEN, CMD_STATUS, SFTP_FLAG_READ

    sshd.put_remote("download/a.xml", b"a")
    sshd.put_remote("download/b.xml", b"b")
    requests = _PrivateRequests(transport.sftp)
    numbers = [requests.send(CMD_OPEN, f"download/{name}", SFTP_FLAG_READ, paramiko.SFTPAttributes())
               for name in ("a.xml", "missing.xml", "b.xml")]
    assert all(isinstance(n, int) for n in numbers) and len(set(numbers)) == 3
    assert requests.got == {}, "nothing answered before it is read"
    answers = requests.gather(numbers)
    assert [t for t, _ in answers] == [CMD_HANDLE, CMD_STATUS, CMD_HANDLE]
    assert all(isinstance(msg, paramiko.Message) for _, msg in answers)
    assert requests.got == {}, "gather took every answer it waited for"
    closed = requests.gather([requests.send(CMD_CLOSE, msg.get_binary()) for t, msg in answers if t == CMD_HANDLE])
    assert [t for t, _ in closed] == [CMD_STATUS, CMD_STATUS]
    assert sorted(transport.sftp.listdir("download")) == ["a.xml", "b.xml"], "the session still works"


def test_the_servers_limits_arrive_through_the_private_request(transport):
    # OpenSSH states its limits: reads and writes of 128 KiB (ours), not paramiko's 32 KiB.
    assert transport.private_api_problem is None
    max_read, max_write, max_handles = transport.limits
    assert max_read >= 128 * 1024 and max_write >= 128 * 1024 and max_handles > 0, transport.limits
    assert (transport.read_size, transport.write_size) == (128 * 1024, 128 * 1024)


def test_get_small_takes_the_pipelined_path_on_the_real_server(sshd, transport, debug_lines):
    files = {f"CNS_DEC_20261126_{n:06d}.xml": os.urandom(n * 300) for n in range(40)}  # one empty
    for name, body in files.items():
        sshd.put_remote(f"download/{name}", body)
    entries = transport.list("download")
    assert transport.private_api_problem is None

    # Watch the real calls go by (each still goes to the real server).
    sftp, events = transport.sftp, []
    send, read = sftp._async_request, sftp._read_response

    def watched_send(*args):
        events.append("send")
        return send(*args)

    def watched_read(*args):
        events.append("read")
        return read(*args)

    sftp._async_request, sftp._read_response = watched_send, watched_read
    try:
        got = transport.get_small("download", entries)
    finally:
        del sftp._async_request, sftp._read_response

    assert got == [files[e.name] for e in entries], "every file read whole (the fallback reads none)"
    requests = len(files) + (2 * len(files) - 1) + len(files)  # open; read whole and past the end (one for empty); close
    assert events.count("send") == requests and events.count("read") == requests, events
    runs = [kind for i, kind in enumerate(events) if i == 0 or events[i - 1] != kind]
    groups = -(-len(files) // transport.handles)
    assert groups >= 2 or transport.handles >= len(files)
    assert runs == ["send", "read"] * 3 * groups, "each group: all opens sent, then all reads, then all closes"
    assert debug_lines == [], "no fallback"


def test_where_they_moved_cnsx_says_so_and_fetches_with_the_public_calls(sshd, transport, debug_lines):
    class Changed(paramiko.SFTPClient):
        def _async_request(self, fileobj, t, *args, priority=0):  # a release that takes something new
            return super()._async_request(fileobj, t, *args)

    body = os.urandom(20 * 1024)
    sshd.put_remote("download/CNS_DEC_20261126_000001.xml", body)
    fallback = SftpTransport(transport.transport, Changed.from_transport(transport.transport), "changed")
    try:
        assert "SFTPClient._async_request(fileobj, t, *args, priority=0)" in fallback.private_api_problem
        assert [line for line in debug_lines if line.startswith("changed: ")] == [
            f"changed: {fallback.private_api_problem}; small files are read one at a time and requests are 32 KiB"]
        assert fallback.limits == (0, 0, 0) and (fallback.read_size, fallback.write_size) == (32 * 1024, 32 * 1024)
        entry = RemoteEntry("CNS_DEC_20261126_000001.xml", len(body), 0, 0o100600)
        assert fallback.get_small("download", [entry, entry]) == [None, None], "left to get()"
        sink = io.BytesIO()
        assert fallback.get("download", entry.name, sink, size=len(body)) == len(body)
        assert sink.getvalue() == body
    finally:
        fallback.close_clone()
