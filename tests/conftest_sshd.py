"""Pytest fixtures for a real OpenSSH server on 127.0.0.1 (see sshd.py); conftest.py re-exports them.

    def test_upload(sshd):                       # function scope: upload/ and download/ emptied
        sshd.port, sshd.user, sshd.client_key, sshd.known_hosts, sshd.upload_dir
        sshd.run_sftp_batch(["ls upload"])

`sshd_server` is the session-wide SshServer; `sshd` is the same object, reset for each test
(and restarted first if an earlier test killed it). OpenSSH is installed with apt-get when
missing; the tests are skipped (a failure under CNSX_NO_SKIP=1) only when that is impossible.
"""

from __future__ import annotations

import os

import pytest

from sshd import SshServer, ensure_openssh

__all__ = ["sshd_server", "sshd"]


@pytest.fixture(scope="session")
def sshd_server():
    """The session's SshServer (started; stopped and cleaned up at the end of the session)."""
    if os.geteuid() != 0:
        pytest.skip("the OpenSSH test server needs root (it creates the user cnsxtest and runs sshd)")
    reason = ensure_openssh()
    if reason is not None:
        pytest.skip(f"OpenSSH server not available: {reason}")
    server = SshServer()
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def sshd(sshd_server):
    """The session's SshServer, running, with empty upload/ and download/ folders."""
    if not sshd_server.running:
        sshd_server.restart()
    sshd_server.reset()
    return sshd_server
