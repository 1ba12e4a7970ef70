#!/usr/bin/env python3
"""Benchmark of the transport against a local OpenSSH sshd, with OpenSSH's `sftp -b` as the
reference in the same run. Prints figures; asserts nothing. Needs root (the test sshd).

    python benchmarks/bench_transport.py [--files 2000] [--size 20480] [--big-mb 50]

- fetch of FILES small files: cnsx fetch (fresh ledger) vs `sftp -b` with `get download/*`;
- one BIG-MB file: cnsx upload vs `sftp put`, cnsx fetch vs `sftp get`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sshd import SshServer  # noqa: E402


def cnsx(env: dict, *args: str) -> float:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cns_exchange", "-q", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"cnsx {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def sftp(server: SshServer, commands: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    server.run_sftp_batch(commands, check=True, cwd=str(cwd), timeout=600)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--size", type=int, default=20 * 1024)
    ap.add_argument("--big-mb", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnsx-bench-"))
    with SshServer(user="cnsxbench") as server:
        config = work / "config"
        config.mkdir()
        (config / "config.toml").write_text(
            f'remote = "sftp://{server.user}@{server.host}:{server.port}"\n'
            f'known_hosts = "{server.known_hosts}"\nkey_file = "{server.client_key}"\n'
            'upload_dir = "upload"\ndownload_dir = "download"\nretries = 0\n')
        (config / "config.toml").chmod(0o600)

        def env_for(name: str) -> dict:
            data = work / name
            shutil.rmtree(data, ignore_errors=True)
            return dict(os.environ, CNSX_CONFIG_DIR=str(config), CNSX_DATA_DIR=str(data))

        # small files
        payload = os.urandom(args.size)
        for i in range(args.files):
            server.put_remote(f"download/CNS_DEC_20261126_{i + 1:06d}.xml", payload)
        ref_dir = work / "sftp-small"
        ref_dir.mkdir()
        t_sftp = sftp(server, ["get download/*"], ref_dir)
        t_cnsx = cnsx(env_for("small"), "fetch")
        n = args.files
        print(f"fetch {n} x {args.size // 1024} KB: cnsx {t_cnsx:.2f} s ({n / t_cnsx:.0f} files/s), "
              f"sftp -b {t_sftp:.2f} s ({n / t_sftp:.0f} files/s): {t_sftp / t_cnsx:.2f} x (goal >= 1.0)")
        server.reset()

        # one big file, through cnsx's transport layer (the upload command also validates
        # the document, which is measured by bench_foundation.py)
        big = work / "big.bin"
        big.write_bytes(os.urandom(args.big_mb * 1024 * 1024))
        size_mb = big.stat().st_size / 1e6
        t_sftp_put = sftp(server, [f"put {big} upload/ref.bin"], work)
        (server.upload_dir / "ref.bin").unlink()
        os.environ.update(env_for("big"))
        from cns_exchange.config import load_settings
        from cns_exchange.transport import open_transport

        transport = open_transport(load_settings())
        try:
            t = time.perf_counter()
            with open(big, "rb") as f:
                transport.put(f, big.stat().st_size, "upload", "big.bin")
            t_cnsx_put = time.perf_counter() - t
            t_sftp_get = sftp(server, ["get upload/big.bin ref.bin"], work)
            t = time.perf_counter()
            with open(work / "got.bin", "wb") as f:
                transport.get("upload", "big.bin", f)
                f.flush()
                os.fsync(f.fileno())
            t_cnsx_get = time.perf_counter() - t
        finally:
            transport.close()
        assert (work / "got.bin").read_bytes() == big.read_bytes()
        print(f"upload {size_mb:.0f} MB: cnsx {t_cnsx_put:.2f} s ({size_mb / t_cnsx_put:.0f} MB/s), sftp {t_sftp_put:.2f} s: "
              f"{t_sftp_put / t_cnsx_put:.2f} x (goal >= 0.9)")
        print(f"download {size_mb:.0f} MB: cnsx {t_cnsx_get:.2f} s ({size_mb / t_cnsx_get:.0f} MB/s, with fsync), "
              f"sftp {t_sftp_get:.2f} s: {t_sftp_get / t_cnsx_get:.2f} x (goal >= 0.9)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
