"""A throwaway real OpenSSH server on 127.0.0.1 for the SFTP transport tests.

    with SshServer() as server:          # or server.start() ... server.stop()
        server.port, server.user, server.password, server.client_key, server.known_hosts
        server.upload_dir, server.download_dir    # remote drop-box folders (absolute paths)
        server.run_sftp_batch(["put FILE upload/x", "ls upload"])
        server.kill()                    # SIGKILL sshd and every per-connection child
        server.restart()                 # same port, same host keys

Runs `/usr/sbin/sshd -D -e -f CONFIG -E LOG` as root with temporary host keys (ed25519 and
rsa) and logs in a dedicated Unix user (default `cnsxtest`, created with `useradd -m` if
missing, given a fresh random password with `chpasswd` at every start). It needs root (it
creates the user, writes its authorized_keys and /run/sshd) and OpenSSH (Debian:
openssh-server, openssh-client); `ensure_openssh()` installs them with apt-get.

The user, its home and the drop-box folders are shared by every server for that user on
the machine, so a server holds an exclusive lock (/run/lock/cnsx-sshd-USER.lock) from
start() to stop(): a second pytest session started meanwhile waits for the first instead of
emptying its folders under it.
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
DEFAULT_USER = "cnsxtest"
PRIVSEP_DIR = Path("/run/sshd")


class SshServerError(RuntimeError):
    """The server could not be set up, started or stopped (the message carries the sshd log)."""


@dataclass(frozen=True)
class HostKey:
    """One host key of the server: `key_type` as OpenSSH names it ("ssh-ed25519", "ssh-rsa")."""

    key_type: str
    base64: str          # the public key blob, as in a known_hosts or authorized_keys line
    fingerprint: str     # "SHA256:..." without padding, as `ssh-keygen -l` prints it
    private_path: Path

    @property
    def public_line(self) -> str:
        return f"{self.key_type} {self.base64}"


def fingerprint_sha256(blob_base64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (base64 text): `SHA256:` + unpadded base64."""
    digest = hashlib.sha256(base64.b64decode(blob_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def missing_openssh() -> list[str]:
    """The OpenSSH programs this module needs that are not installed (empty when all are)."""
    missing = [] if os.access(SSHD, os.X_OK) else [SSHD]
    missing += [name for name in ("sftp", "ssh-keygen") if shutil.which(name) is None]
    return missing


def ensure_openssh() -> str | None:
    """Install Debian's openssh-server and openssh-client if something is missing.

    Returns None when everything is there (or was installed), else the reason it is not.
    """
    missing = missing_openssh()
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"missing {', '.join(missing)}; install with: sudo apt-get install openssh-server openssh-client"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "openssh-server", "openssh-client"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return f"{' '.join(command)} failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}"
    missing = missing_openssh()
    return f"still missing after apt-get install: {', '.join(missing)}" if missing else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _run(command: list[str], *, input: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, input=input, capture_output=True, text=True)
    if done.returncode != 0:
        raise SshServerError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()   # the command name may hold spaces and ")"
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> set[int]:
    """Every live (not zombie) descendant of `pid`."""
    children: dict[int, list[int]] = {}
    table = _proc_table()
    for child, (ppid, state) in table.items():
        if state != "Z":
            children.setdefault(ppid, []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def process_gone(pid: int) -> bool:
    """True when `pid` no longer exists or is a zombie (it has released its sockets)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except OSError:
        return ""


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class SshServer:
    """A real OpenSSH sshd on 127.0.0.1 with throwaway keys, for one user and two drop-box folders.

    Attributes after start(): host, port, user, password, home, upload_dir, download_dir,
    client_key (unencrypted ed25519 private key path), client_key_encrypted and
    client_key_passphrase, host_keys ({"ssh-ed25519": HostKey, "ssh-rsa": HostKey}),
    fingerprints ({key type: "SHA256:..."}), known_hosts (a file listing both host keys),
    workdir, config_path, log_path, pid.
    """

    START_TIMEOUT = 10.0
    LOCK_TIMEOUT = 600.0

    def __init__(self, user: str = DEFAULT_USER, *, workdir: str | Path | None = None,
                 port: int | None = None, log_level: str = "VERBOSE"):
        self.host = HOST
        self.user = user
        self.port = port
        self._fixed_port = port is not None
        self._port_is_ours = False
        self.log_level = log_level
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="cnsx-sshd-") if workdir is None else workdir)
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.stderr_path = self.workdir / "sshd.stderr"
        self.pid_path = self.workdir / "sshd.pid"
        self.known_hosts = self.workdir / "known_hosts"
        self.client_key = self.workdir / "client_ed25519"
        self.client_key_encrypted = self.workdir / "client_ed25519_encrypted"
        self.client_key_passphrase = "cnsx test passphrase"
        self.password = secrets.token_urlsafe(18)
        self.host_keys: dict[str, HostKey] = {}
        self.per_source_penalties: bool | None = None   # whether the sshd accepted "PerSourcePenalties no"
        self._proc: subprocess.Popen | None = None
        self._lock_fd: int | None = None
        self._prepared = False
        self._stderr_file = None

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def fingerprints(self) -> dict[str, str]:
        return {key_type: key.fingerprint for key_type, key in self.host_keys.items()}

    @property
    def home(self) -> Path:
        return Path(pwd.getpwnam(self.user).pw_dir)

    @property
    def upload_dir(self) -> Path:
        """The CNS's inbox: where the practice deposits its files."""
        return self.home / "upload"

    @property
    def download_dir(self) -> Path:
        """Where the CNS leaves the return files for the practice."""
        return self.home / "download"

    def start(self) -> SshServer:
        """Set everything up (once) and start sshd; returns when the SSH banner is readable."""
        if self.running:
            return self
        if not self._prepared:
            if os.geteuid() != 0:
                raise SshServerError("SshServer needs root (it creates a user and runs sshd)")
            missing = missing_openssh()
            if missing:
                raise SshServerError(f"OpenSSH is not installed: missing {', '.join(missing)}")
            self._acquire_lock()
            try:
                self._prepare()
            except BaseException:
                self._release_lock()
                raise
            self._prepared = True
            atexit.register(self.stop)
        # A port we picked may be taken by someone else before sshd binds it: pick another,
        # but only until sshd has listened on it once (restart() must keep it).
        self._launch(pick_new_port_on_conflict=not (self._fixed_port or self._port_is_ours))
        return self

    def stop(self) -> None:
        """Kill sshd and its connections, release the lock, delete the temporary folder."""
        self.kill()
        if self._prepared:
            self._prepared = False
            self._release_lock()
            atexit.unregister(self.stop)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> SshServer:
        """Kill (if running) and start again on the same port with the same host keys."""
        self.kill()
        self._launch(pick_new_port_on_conflict=False)
        return self

    def kill(self) -> None:
        """SIGKILL the sshd master and all its descendants (open sessions and transfers die).

        The master is stopped first, then its tree is stopped level by level, so no process
        forks or is reparented away while we collect them; then everything gets SIGKILL.
        Returns when the master is reaped and every child is gone (its sockets are closed).
        """
        proc = self._proc
        if proc is None:
            return
        masters = {proc.pid}
        pid_file = self._pid_from_file()
        if pid_file is not None and pid_file != proc.pid and not process_gone(pid_file):
            masters.add(pid_file)   # never expected with -D, but the pid file is the reference
        if proc.poll() is None:
            for pid in masters:
                _signal(pid, signal.SIGSTOP)
        tree: set[int] = set()
        for _ in range(50):
            new = set().union(*(descendants(pid) for pid in masters)) - tree
            if not new:
                break
            for pid in new:
                _signal(pid, signal.SIGSTOP)
            tree |= new
        for pid in masters | tree:
            _signal(pid, signal.SIGKILL)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise SshServerError(f"sshd {proc.pid} survived SIGKILL") from None
        deadline = time.monotonic() + 5
        while not all(process_gone(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._proc = None
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        self.pid_path.unlink(missing_ok=True)

    def connection_pids(self) -> set[int]:
        """The per-connection sshd processes (descendants of the master) right now."""
        return descendants(self._proc.pid) if self.running else set()

    # -- remote state --------------------------------------------------------------------

    def reset(self) -> None:
        """Empty upload/ and download/ (recreating them, owned by the user, mode 0755)."""
        pw = pwd.getpwnam(self.user)
        for folder in (self.upload_dir, self.download_dir):
            if folder.is_symlink() or folder.is_file():
                folder.unlink()
            if folder.is_dir():
                os.chmod(folder, 0o755)   # a test may have made it read-only
                for entry in folder.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        for sub, dirs, _ in os.walk(entry):
                            os.chmod(sub, 0o755)
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            else:
                folder.mkdir()
            os.chown(folder, pw.pw_uid, pw.pw_gid)
            os.chmod(folder, 0o755)

    def remote_path(self, relative: str | Path) -> Path:
        """The local path of a remote path given relative to the user's home ("upload/x.xml")."""
        return self.home / relative

    def put_remote(self, relative: str | Path, data: bytes | str, mode: int = 0o644) -> Path:
        """Create a remote file directly on disk (e.g. a return file in download/), owned by the user."""
        path = self.remote_path(relative)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        pw = pwd.getpwnam(self.user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, mode)
        return path

    def read_remote(self, relative: str | Path) -> bytes:
        return self.remote_path(relative).read_bytes()

    # -- clients -------------------------------------------------------------------------

    def write_known_hosts(self, path: str | Path | None = None, key_types: list[str] | None = None) -> Path:
        """Write `[127.0.0.1]:PORT keytype base64` lines (all host keys by default); returns the path."""
        path = Path(path) if path is not None else self.known_hosts
        keys = [self.host_keys[t] for t in (key_types or list(self.host_keys))]
        path.write_text("".join(f"[{self.host}]:{self.port} {key.public_line}\n" for key in keys))
        return path

    def sftp_command(self, key: str | Path | None = None) -> list[str]:
        return ["sftp", "-b", "-", "-F", "/dev/null", "-i", str(key or self.client_key),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                "-P", str(self.port), f"{self.user}@{self.host}"]

    def run_sftp_batch(self, commands: list[str], *, check: bool = False, timeout: float = 60,
                       cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        """Run OpenSSH's sftp with these batch commands (remote paths relative to the home).

        A failing command stops the batch and makes the return code non-zero (prefix it with
        "-" to ignore its failure, as in sftp(1)). Text output in .stdout / .stderr.
        """
        return subprocess.run(self.sftp_command(), input="\n".join(commands) + "\n", capture_output=True,
                              text=True, timeout=timeout, check=check, cwd=cwd)

    def log_text(self) -> str:
        parts = []
        for path in (self.log_path, self.stderr_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                parts.append(text)
        return "\n".join(parts)

    # -- internals -----------------------------------------------------------------------

    _locked_users: set[str] = set()   # users whose lock this process holds

    def _acquire_lock(self) -> None:
        if self.user in SshServer._locked_users:   # flock would make us wait for ourselves
            raise SshServerError(f"another SshServer for user {self.user} is already running in this process")
        lock_dir = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
        fd = os.open(lock_dir / f"cnsx-sshd-{self.user}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.LOCK_TIMEOUT
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise SshServerError(f"another test sshd for user {self.user} holds {lock_dir} lock "
                                         f"for more than {self.LOCK_TIMEOUT:.0f} s") from None
                if not told:
                    print(f"sshd.py: waiting for another test session using user {self.user}", file=sys.stderr)
                    told = True
                time.sleep(0.2)
        self._lock_fd = fd
        SshServer._locked_users.add(self.user)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)   # closing releases the flock
            self._lock_fd = None
            SshServer._locked_users.discard(self.user)

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        # sshd refuses to start without its privilege separation folder (normally made by systemd).
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        os.chown(PRIVSEP_DIR, 0, 0)
        os.chmod(PRIVSEP_DIR, 0o755)
        for nologin in ("/run/nologin", "/etc/nologin"):
            if os.path.exists(nologin):   # pam_nologin would refuse every non-root login
                raise SshServerError(f"{nologin} exists: PAM (pam_nologin) refuses logins of {self.user}")

        keygens = {}
        for key_type, path, extra in (("ssh-ed25519", self.workdir / "ssh_host_ed25519_key", ["-t", "ed25519"]),
                                      ("ssh-rsa", self.workdir / "ssh_host_rsa_key", ["-t", "rsa", "-b", "2048"])):
            keygens[key_type] = (path, subprocess.Popen(
                ["ssh-keygen", "-q", *extra, "-N", "", "-C", f"cnsx-test-host-{key_type}", "-f", str(path)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cnsx-test-client", "-f", str(self.client_key)])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", self.client_key_passphrase, "-C", "cnsx-test-client-encrypted",
              "-f", str(self.client_key_encrypted)])
        for key_type, (path, proc) in keygens.items():
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SshServerError(f"ssh-keygen for {key_type} failed: {err.strip()}")
            kind, blob = Path(f"{path}.pub").read_text().split()[:2]
            assert kind == key_type, (kind, key_type)
            self.host_keys[key_type] = HostKey(key_type, blob, fingerprint_sha256(blob), path)

        self._prepare_user()
        if self.port is None:
            self.port = free_port()
        self._write_config()
        self.write_known_hosts()

    def _prepare_user(self) -> None:
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            _run(["useradd", "-m", "-s", "/bin/bash", "-c", "cnsx SFTP test user", self.user])
        # A fresh useradd account has a locked password ("!"): set one (password auth is tested too).
        _run(["chpasswd"], input=f"{self.user}:{self.password}\n")
        pw = pwd.getpwnam(self.user)
        home = Path(pw.pw_dir)
        home.mkdir(exist_ok=True)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o755)   # StrictModes: not group/world writable
        ssh_dir = home / ".ssh"
        if ssh_dir.is_symlink() or ssh_dir.is_file():
            ssh_dir.unlink()
        ssh_dir.mkdir(exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(Path(f"{self.client_key}.pub").read_text()
                              + Path(f"{self.client_key_encrypted}.pub").read_text())
        for path, mode in ((ssh_dir, 0o700), (authorized, 0o600)):
            os.chown(path, pw.pw_uid, pw.pw_gid)
            os.chmod(path, mode)
        self.reset()

    def _config_text(self, penalties: bool) -> str:
        lines = [
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            *(f"HostKey {key.private_path}" for key in self.host_keys.values()),
            f"PidFile {self.pid_path}",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PasswordAuthentication yes",
            "PubkeyAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PermitEmptyPasswords no",
            "UsePAM yes",
            "PermitRootLogin no",
            f"AllowUsers {self.user}",
            "StrictModes yes",
            "Subsystem sftp internal-sftp",
            "MaxStartups 100",
            "MaxSessions 50",
            "MaxAuthTries 20",
            "LoginGraceTime 30",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "AllowTcpForwarding no",
            f"LogLevel {self.log_level}",
        ]
        if penalties:
            lines.append("PerSourcePenalties no")   # OpenSSH >= 9.8 would penalise our kills and probes
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        """Write the config, with `PerSourcePenalties no` only if this sshd accepts it (`sshd -t`)."""
        for penalties in (True, False):
            self.config_path.write_text(self._config_text(penalties))
            done = subprocess.run([SSHD, "-t", "-f", str(self.config_path)], capture_output=True, text=True)
            if done.returncode == 0:
                self.per_source_penalties = penalties
                return
            if not (penalties and "PerSourcePenalties" in done.stderr):
                raise SshServerError(f"sshd -t rejects {self.config_path}:\n{done.stderr}\n{self.config_path.read_text()}")
        raise AssertionError("unreachable")

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _launch(self, *, pick_new_port_on_conflict: bool) -> None:
        """Start sshd and wait for its banner; retry while the port is taken (bounded)."""
        deadline = time.monotonic() + self.START_TIMEOUT
        while True:
            offsets = {path: path.stat().st_size if path.exists() else 0 for path in (self.log_path, self.stderr_path)}
            self._stderr_file = open(self.stderr_path, "ab")
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path), "-E", str(self.log_path)],
                stdin=subprocess.DEVNULL, stdout=self._stderr_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
            error = self._wait_ready(deadline)
            if error is None:
                self._port_is_ours = True
                return
            self.kill()
            new_log = "".join(_read_from(path, offset) for path, offset in offsets.items())
            port_taken = "Address already in use" in new_log or "Cannot bind any address" in new_log
            if port_taken and time.monotonic() < deadline:
                if pick_new_port_on_conflict:
                    self.port = free_port()
                    self._write_config()
                    self.write_known_hosts()
                else:
                    time.sleep(0.1)
                continue
            raise SshServerError(f"sshd did not start on {self.host}:{self.port}: {error}\n"
                                 f"--- {self.log_path} and stderr ---\n{self.log_text()}")

    def _wait_ready(self, deadline: float) -> str | None:
        """None once a TCP connection gets the SSH banner; else why not (sshd exited, timeout)."""
        last = "no attempt"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return f"sshd exited with status {self._proc.returncode}"
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    banner = b""
                    while b"\n" not in banner:
                        chunk = sock.recv(256)
                        if not chunk:
                            break
                        banner += chunk
                if banner.startswith(b"SSH-2.0-"):
                    return None
                last = f"unexpected banner {banner[:80]!r}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        return f"no SSH banner within {self.START_TIMEOUT:.0f} s (last: {last})"
