"""The OpenSSH test server (sshd.py, conftest_sshd.py) works with real clients: paramiko and sftp."""

from __future__ import annotations

import io
import re
import socket
import stat
import subprocess
import sys
import threading
import time

import paramiko
import pytest

from sshd import SSHD, fingerprint_sha256, process_gone

# The fixtures live in conftest_sshd.py and conftest.py re-exports them (`from conftest_sshd import *`);
# until it does, take them here (importing them in both places would start a second server).
if not hasattr(sys.modules.get("conftest"), "sshd_server"):
    from conftest_sshd import sshd, sshd_server  # noqa: F401

DROPPED = (OSError, EOFError, paramiko.SSHException)   # what paramiko raises when the server dies


def connect(server, **auth) -> paramiko.SSHClient:
    """A paramiko client that trusts only the fixture's known_hosts file."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(server.host, server.port, username=server.user, look_for_keys=False, allow_agent=False,
                   timeout=10, banner_timeout=10, auth_timeout=10, **auth)
    return client


def test_key_auth_and_drop_box_folders(sshd):
    with connect(sshd, key_filename=str(sshd.client_key)) as client, client.open_sftp() as sftp:
        assert {"upload", "download"} <= set(sftp.listdir("."))
        assert sftp.listdir("upload") == [] and sftp.listdir("download") == []
        sftp.putfo(io.BytesIO(b"<Request/>"), "upload/request.xml")
        sshd.put_remote("download/return.xml", b"<Return/>")
        assert sftp.open("download/return.xml").read() == b"<Return/>"
    uploaded = sshd.upload_dir / "request.xml"
    assert sshd.upload_dir.is_absolute() and sshd.upload_dir == sshd.home / "upload"
    assert uploaded.read_bytes() == b"<Request/>"
    user = sshd.home.stat()
    assert uploaded.stat().st_uid == user.st_uid   # written by the user, not by root
    for folder in (sshd.upload_dir, sshd.download_dir):
        info = folder.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (user.st_uid, 0o755)

    sshd.reset()
    assert list(sshd.upload_dir.iterdir()) == [] and list(sshd.download_dir.iterdir()) == []


def test_authorized_keys_modes(sshd):
    ssh_dir = sshd.home / ".ssh"
    keys = ssh_dir / "authorized_keys"
    uid = sshd.home.stat().st_uid
    assert uid != 0
    assert (ssh_dir.stat().st_uid, stat.S_IMODE(ssh_dir.stat().st_mode)) == (uid, 0o700)
    assert (keys.stat().st_uid, stat.S_IMODE(keys.stat().st_mode)) == (uid, 0o600)
    assert len(keys.read_text().splitlines()) == 2


def test_encrypted_key_with_passphrase(sshd):
    with pytest.raises(paramiko.PasswordRequiredException):
        paramiko.Ed25519Key.from_private_key_file(str(sshd.client_key_encrypted))
    with connect(sshd, key_filename=str(sshd.client_key_encrypted), passphrase=sshd.client_key_passphrase) as client:
        with client.open_sftp() as sftp:
            assert "upload" in sftp.listdir(".")


def test_password_auth(sshd):
    with connect(sshd, password=sshd.password) as client, client.open_sftp() as sftp:
        assert sftp.normalize(".") == str(sshd.home)
    with pytest.raises(paramiko.AuthenticationException):
        connect(sshd, password=sshd.password + "x")


@pytest.mark.parametrize("key_type", ["ssh-ed25519", "ssh-rsa"])
def test_host_key_matches_fingerprint(sshd, key_type):
    # Leave paramiko only the one host key algorithm family to negotiate.
    disabled = {"ssh-ed25519": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"], "ssh-rsa": ["ssh-ed25519"]}[key_type]
    transport = paramiko.Transport((sshd.host, sshd.port))
    try:
        transport.disabled_algorithms = {"keys": disabled}
        transport.start_client(timeout=10)
        key = transport.get_remote_server_key()
    finally:
        transport.close()
    assert key.get_name() == key_type
    assert key.get_base64() == sshd.host_keys[key_type].base64
    assert fingerprint_sha256(key.get_base64()) == sshd.fingerprints[key_type]
    # paramiko and OpenSSH print the same fingerprint.
    assert key.fingerprint == sshd.fingerprints[key_type]
    printed = subprocess.run(["ssh-keygen", "-l", "-f", f"{sshd.host_keys[key_type].private_path}.pub"],
                             capture_output=True, text=True, check=True).stdout
    assert printed.split()[1] == sshd.fingerprints[key_type]
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", sshd.fingerprints[key_type])


def test_known_hosts_file(sshd, tmp_path):
    lines = sshd.known_hosts.read_text().splitlines()
    assert lines == [f"[127.0.0.1]:{sshd.port} {key.key_type} {key.base64}" for key in sshd.host_keys.values()]
    only_ed25519 = sshd.write_known_hosts(tmp_path / "kh", ["ssh-ed25519"])
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(only_ed25519)],
                           capture_output=True, text=True)
    assert found.returncode == 0 and "ssh-ed25519" in found.stdout and "ssh-rsa" not in found.stdout


def test_run_sftp_batch(sshd, tmp_path):
    local = tmp_path / "x.xml"
    local.write_bytes(b"<Deposit/>")
    done = sshd.run_sftp_batch([f"put {local} upload/x", "ls upload"])
    assert done.returncode == 0, done.stderr
    assert "upload/x" in done.stdout
    assert (sshd.upload_dir / "x").read_bytes() == b"<Deposit/>"
    failed = sshd.run_sftp_batch(["get download/missing.xml"], cwd=tmp_path)
    assert failed.returncode != 0


def test_listens_on_loopback_only(sshd):
    config = sshd.config_path.read_text()
    assert "ListenAddress 127.0.0.1\n" in config and "ChrootDirectory" not in config
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", sshd.port), timeout=2).close()


def test_per_source_penalties_only_when_supported(sshd):
    version = subprocess.run([SSHD, "-V"], capture_output=True, text=True)
    major, minor = map(int, re.search(r"OpenSSH_(\d+)\.(\d+)", version.stdout + version.stderr).groups())
    supported = (major, minor) >= (9, 8)
    assert sshd.per_source_penalties == supported
    assert ("PerSourcePenalties no" in sshd.config_path.read_text()) == supported


def test_kill_drops_sessions_and_restart_keeps_port_and_host_key(sshd):
    port, fingerprint, old_pid = sshd.port, sshd.fingerprints["ssh-ed25519"], sshd.pid
    client = connect(sshd, key_filename=str(sshd.client_key))
    sftp = client.open_sftp()
    assert sshd.connection_pids(), "no per-connection sshd process"
    children = sshd.connection_pids()

    # An upload in flight (a source that never ends) and an idle session.
    started, outcome = threading.Event(), {}

    class Endless(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            started.set()
            time.sleep(0.001)
            buffer[:] = b"x" * len(buffer)
            return len(buffer)

    uploader = connect(sshd, key_filename=str(sshd.client_key))

    def upload():
        try:
            with uploader.open_sftp() as upload_sftp:
                upload_sftp.putfo(io.BufferedReader(Endless()), "upload/big.bin")
            outcome["result"] = "finished"
        except Exception as exc:
            outcome["result"] = exc

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    assert started.wait(10)
    deadline = time.monotonic() + 10
    while not (sshd.upload_dir / "big.bin").exists() or (sshd.upload_dir / "big.bin").stat().st_size == 0:
        assert time.monotonic() < deadline, "the upload did not start"
        time.sleep(0.01)
    children |= sshd.connection_pids()

    sshd.kill()
    assert not sshd.running and sshd.pid is None
    assert all(process_gone(pid) for pid in children | {old_pid})
    thread.join(10)
    assert isinstance(outcome.get("result"), DROPPED), outcome
    with pytest.raises(DROPPED):
        sftp.listdir("upload")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((sshd.host, port), timeout=2).close()
    client.close()
    uploader.close()

    sshd.restart()
    assert sshd.running and sshd.port == port and sshd.pid != old_pid
    assert sshd.fingerprints["ssh-ed25519"] == fingerprint
    # The known_hosts written before the kill is still right (RejectPolicy would refuse a new key).
    with connect(sshd, key_filename=str(sshd.client_key)) as again, again.open_sftp() as sftp:
        assert "big.bin" in sftp.listdir("upload")   # the partial file the killed upload left
        assert again.get_transport().get_remote_server_key().fingerprint == fingerprint


def test_fixture_restarts_a_killed_server(sshd_server, request):
    sshd_server.kill()
    assert not sshd_server.running
    server = request.getfixturevalue("sshd")
    assert server is sshd_server and server.running
    assert server.run_sftp_batch(["ls"]).returncode == 0
