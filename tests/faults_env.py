"""Helpers for the fault-injection tests (test_transport_faults.py): cnsx as a child process.

    env = CnsxEnv(config_dir, data_dir)
    env.write_config(sshd, retries=0)           # an sftp:// profile against the test sshd
    r = env.run("fetch")                        # a finished child: .code, .stdout, .stderr
    proc = env.popen("upload", str(path))       # a running child, to kill or race
    env.ledger("uploads")                       # the practice database's rows, as dicts

No mocks: cnsx is `python -m cns_exchange` with CNSX_CONFIG_DIR / CNSX_DATA_DIR set, talking
to a real OpenSSH sshd (tests/sshd.py).
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from stdnum import luhn, verhoeff

TEMP_PREFIX = ".cnsx-"
TEMP_SUFFIX = ".part"
PROVIDER = "123456"
CREATED = "2026-11-20T09:00:00+01:00"
RUN_TIMEOUT = 120.0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def listing(folder: Path) -> dict[str, bytes]:
    """name -> content of every regular file in ``folder`` (temporary files included)."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()}


def _names(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return []


def real_names(folder: Path) -> list[str]:
    """The regular files in ``folder`` that are not cnsx temporary files (names only: cheap to poll)."""
    return [name for name in _names(folder) if not is_temp(name)]


def temp_names(folder: Path) -> list[str]:
    return [name for name in _names(folder) if is_temp(name)]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return f"exit {self.code} after {self.seconds:.2f} s\n--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"


class CnsxEnv:
    """One practice: a config folder (config.toml, 0600) and a data folder (database, inbox)."""

    def __init__(self, config_dir: Path, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.config_dir = Path(config_dir)
        self.data_dir = Path(data_dir)
        self.extra_env = dict(extra_env or {})
        self.config_dir.mkdir(parents=True, exist_ok=True)

    # -- configuration --------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def inbox(self) -> Path:
        return self.data_dir / "inbox"

    @property
    def database(self) -> Path:
        return self.data_dir / "practice.sqlite"

    def write_config(self, sshd, *, known_hosts: Path | None | bool = True, key_file: Path | None | bool = True,
                     retries: int = 0, backoff: int = 0, timeout: int = 15, **extra: object) -> Path:
        """Write a 0600 config.toml with an sftp:// profile against ``sshd``.

        ``known_hosts`` / ``key_file``: True = the fixture's file, None/False = leave the setting
        out, a path = that file. ``extra`` settings are added as TOML strings (or ints/bools).
        """
        lines = [f'provider = "{PROVIDER}"',
                 f'remote = "sftp://{sshd.user}@{sshd.host}:{sshd.port}"',
                 'upload_dir = "upload"', 'download_dir = "download"',
                 f"retries = {retries}", f"backoff = {backoff}", f"timeout = {timeout}"]
        if known_hosts is True:
            known_hosts = sshd.known_hosts
        if known_hosts:
            lines.append(f'known_hosts = "{known_hosts}"')
        if key_file is True:
            key_file = sshd.client_key
        if key_file:
            lines.append(f'key_file = "{key_file}"')
        for key, value in extra.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f'{key} = "{value}"')
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config_path.chmod(0o600)
        return self.config_path

    # -- running cnsx ---------------------------------------------------------------------

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNSX_") and k != "SOURCE_DATE_EPOCH"}
        env.update(CNSX_CONFIG_DIR=str(self.config_dir), CNSX_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        env.update(extra)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cns_exchange", *args]

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), env=self.environ(**(env or {})), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT) -> Result:
        start = time.monotonic()
        proc = self.popen(*args, env=env)
        return finish(proc, start, timeout)

    # -- the ledger -----------------------------------------------------------------------

    def ledger(self, table: str) -> list[dict]:
        """Rows of ``uploads`` or ``fetched`` (empty if the database does not exist yet)."""
        if not self.database.exists():
            return []
        conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if table not in tables:
                return []
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
        finally:
            conn.close()


def finish(proc: subprocess.Popen, start: float, timeout: float = RUN_TIMEOUT) -> Result:
    """Wait for a child started at ``start`` (monotonic); kill it if it hangs past ``timeout``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[faults_env: killed after hanging {timeout:.0f} s]\n"
    return Result(proc.returncode, out, err, time.monotonic() - start)


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds from now; True if it was still running when killed."""
    deadline = time.monotonic() + delay
    while True:
        if proc.poll() is not None:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.005))
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        return False
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def kill_when(proc: subprocess.Popen, predicate, delay: float, timeout: float = 60) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``predicate()`` first holds (polled every ms);
    True if it was still running when killed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return kill_after(proc, delay)


def wait_for(predicate, timeout: float, interval: float = 0.002) -> bool:
    """Poll ``predicate`` every ``interval`` seconds; True as soon as it holds, False at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def has_temp(folder: Path) -> bool:
    try:
        return any(is_temp(e.name) for e in os.scandir(folder))
    except FileNotFoundError:
        return False


# -- data ---------------------------------------------------------------------------------

def matricule(rng: random.Random) -> str:
    """A valid matricule (Luhn C1 and Verhoeff C2 over the first 11 digits)."""
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 80))
    base = f"{born:%Y%m%d}{rng.randrange(1000):03d}"
    return base + luhn.calc_check_digit(base) + verhoeff.calc_check_digit(base)


def write_sessions_csv(path: Path, notes: int, seed: int = 7) -> int:
    """Write a billing CSV of ``notes`` complete initial treatments (4 sessions each); returns the sessions."""
    rng = random.Random(seed)
    seen: set[str] = set()
    sessions = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["certificate_number", "matricule", "session_date", "act_code", "executing_provider"])
        for n in range(1, notes + 1):
            m = matricule(rng)
            while m in seen:
                m = matricule(rng)
            seen.add(m)
            start = date(2026, 1, 5) + timedelta(days=rng.randrange(250))
            for k, act in enumerate(("ZD11", "ZD12", "ZD13", "ZD13")):
                w.writerow([f"TPC-2026-{n:06d}", m, (start + timedelta(days=7 * k)).isoformat(), act, PROVIDER])
                sessions += 1
    return sessions


def build_billing(folder: Path, notes: int, sequence: int, config_dir: Path, seed: int = 7) -> Path:
    """Build a valid billing file of ``notes`` fee notes with cnsx build-invoice; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"sessions-{notes}-{sequence}.csv"
    write_sessions_csv(source, notes, seed)
    out = folder / f"{PROVIDER}_FAC_20261120_{sequence:06d}.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNSX_")}
    env["CNSX_CONFIG_DIR"] = str(config_dir)
    done = subprocess.run([sys.executable, "-m", "cns_exchange", "-q", "build-invoice", str(source),
                           "--provider", PROVIDER, "--created", CREATED, "--sequence", str(sequence), "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"build-invoice failed ({done.returncode}): {done.stderr[-2000:]}")
    source.unlink()
    return out


def log_offsets(sshd) -> dict[Path, int]:
    """Where the sshd's log files end now (pass to ``log_since``)."""
    return {path: (path.stat().st_size if path.exists() else 0) for path in (sshd.log_path, sshd.stderr_path)}


def log_since(offsets: dict[Path, int]) -> str:
    """What the sshd logged since ``log_offsets`` was taken."""
    parts = []
    for path, offset in offsets.items():
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                parts.append(f.read().decode(errors="replace"))
        except OSError:
            pass
    return "\n".join(parts)
