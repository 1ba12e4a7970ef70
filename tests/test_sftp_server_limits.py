"""The SFTP client against a server unlike OpenSSH's: one that states no limits and answers
reads with at most ``_Files.cap`` bytes (Apache MINA SSHD: 63 KiB; older OpenSSH: 64 KiB).

The server is paramiko's own SFTP server implementation over a socket pair (no network), with
files in memory: real SFTP on the wire, a server whose read cap can be chosen.
"""

from __future__ import annotations

import io
import os
import socket
import threading

import paramiko
import pytest

from cns_exchange.transport import RemoteEntry
from cns_exchange.transport.sftp import SftpTransport

class _Handle(paramiko.SFTPHandle):
    def __init__(self, server: "_Files", name: str) -> None:
        super().__init__()
        self.server, self.name = server, name

    def read(self, offset: int, length: int):
        _Files.reads += 1
        if self.name in _Files.refuse_reads:
            return paramiko.SFTP_PERMISSION_DENIED
        whole = _Files.files[self.name]
        data = whole[offset:offset + min(length, _Files.cap)]
        _Files.served += len(data)
        _Files.longest = max(_Files.longest, length)
        if len(data) < length and offset + len(data) < len(whole):
            _Files.short += 1  # an answer cut by the cap, not by the end of the file
        return data if data else paramiko.SFTP_EOF

    def stat(self):
        return self.server.lstat(self.name)


class _Files(paramiko.SFTPServerInterface):
    # The server's state lives on the class (paramiko makes the instance): the tests set
    # and read it there.
    files: dict[str, bytes] = {}
    refuse_reads: set[str] = set()
    reads = served = short = longest = 0
    cap = 63 * 1024

    def open(self, path, flags, attr):
        name = path.rsplit("/", 1)[-1]
        return _Handle(self, name) if name in self.files else paramiko.SFTP_NO_SUCH_FILE

    def lstat(self, path):
        attrs = paramiko.SFTPAttributes()
        attrs.st_size = len(self.files[path.rsplit("/", 1)[-1]])
        attrs.st_mode = 0o100600
        return attrs

    stat = lstat


class _Accept(paramiko.ServerInterface):
    def check_auth_password(self, username, password):
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username):
        return "password"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED


@pytest.fixture(scope="module")
def host_key():
    return paramiko.RSAKey.generate(2048)


@pytest.fixture
def capped(host_key):
    _Files.files, _Files.refuse_reads, _Files.reads, _Files.served, _Files.cap = {}, set(), 0, 0, 63 * 1024
    _Files.short = _Files.longest = 0
    ours, theirs = socket.socketpair()
    server = paramiko.Transport(theirs)
    server.add_server_key(host_key)
    server.set_subsystem_handler("sftp", paramiko.SFTPServer, _Files)
    started = threading.Thread(target=server.start_server, kwargs={"server": _Accept()})
    started.start()
    client = paramiko.Transport(ours)
    client.start_client(timeout=10)
    started.join()
    client.auth_password("u", "p")
    transport = SftpTransport(client, paramiko.SFTPClient.from_transport(client), "capped")
    yield transport
    transport.close()
    server.close()


def test_a_server_stating_no_limits_gets_paramikos_request_size(capped):
    assert capped.limits == (0, 0, 0)
    assert (capped.read_size, capped.write_size) == (32 * 1024, 32 * 1024)


def test_a_capped_server_is_read_whole_and_read_ahead(capped):
    data = os.urandom(2 * 1024 * 1024 + 7)
    _Files.files["big.xml"] = data
    sink = io.BytesIO()
    assert capped.get("d", "big.xml", sink, size=len(data)) == len(data)
    assert sink.getvalue() == data
    # 32 KiB requests fit under the 63 KiB cap: no answer comes back short, so paramiko's
    # read-ahead stays on (a 128 KiB request would come back short, and paramiko would ask
    # for the rest again, serially). (Not "served == len(data)": paramiko's read-ahead thread
    # can, rarely, lose a race with the first read and a block is then asked twice.)
    assert _Files.longest == 32 * 1024 and _Files.short == 0, (_Files.longest, _Files.short)
    assert _Files.served >= len(data)


def test_get_small_takes_only_files_that_are_exactly_their_listed_size(capped):
    # A cap below the request size, and a file listed at exactly the cap that grew since:
    # a read of its listed size comes back full, only the read past it tells.
    _Files.cap = CAP = 16 * 1024
    _Files.files.update({"cap.xml": b"C" * CAP, "grown.xml": b"G" * CAP, "empty.xml": b"", "refused.xml": b"",
                         "small.xml": b"s" * 100})
    _Files.refuse_reads.add("refused.xml")
    listed = [RemoteEntry(name, len(body), 0, 0o100600) for name, body in _Files.files.items()]
    _Files.files["grown.xml"] += b"TAIL"  # grew after the listing, by less than a read
    got = dict(zip(_Files.files, capped.get_small("d", listed)))
    assert got == {"cap.xml": b"C" * CAP, "grown.xml": None, "empty.xml": b"", "refused.xml": None,
                   "small.xml": b"s" * 100}


def test_get_small_leaves_files_larger_than_one_request_to_get(capped):
    _Files.files["large.xml"] = b"L" * (32 * 1024 + 1)
    assert capped.get_small("d", [RemoteEntry("large.xml", 32 * 1024 + 1, 0, 0o100600)]) == [None]
    assert _Files.reads == 0
