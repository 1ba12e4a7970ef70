"""The whole exchange as a user runs it, as subprocesses, through a real OpenSSH sshd and the
CNS sandbox: build, validate, upload over SFTP, the sandbox answers, fetch over SFTP, import,
status. Includes a refused request and disputed lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import CREATED, EXAMPLES


def test_whole_exchange_over_sftp(sshd, tmp_path):
    work = tmp_path / "work"
    (work / "outbox").mkdir(parents=True)
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        'provider = "123456"\n'
        f'remote = "sftp://{sshd.user}@{sshd.host}:{sshd.port}"\n'
        f'known_hosts = "{sshd.known_hosts}"\nkey_file = "{sshd.client_key}"\n'
        'upload_dir = "upload"\ndownload_dir = "download"\nafter_fetch = "delete"\nretries = 1\nbackoff = 0\n')
    (config / "config.toml").chmod(0o600)
    env = dict(os.environ, CNSX_CONFIG_DIR=str(config), CNSX_DATA_DIR=str(tmp_path / "data"))
    env.pop("CNSX_CONFIG", None)

    def cnsx(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "cns_exchange", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"cnsx {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        assert "Traceback" not in proc.stderr
        return proc

    outbox = work / "outbox"
    cnsx("build-request", str(EXAMPLES / "requests.csv"), "--created", CREATED, "-o", str(outbox))
    cnsx("build-invoice", str(EXAMPLES / "sessions.csv"), "--created", CREATED, "-o", str(outbox))
    documents = sorted(str(p) for p in outbox.glob("*.xml"))
    cnsx("validate", *documents)
    sent = cnsx("upload", "--json", *documents)
    assert len(sent.stdout.splitlines()) == 5  # three PDFs, then the two documents
    assert sorted(p.name for p in sshd.upload_dir.iterdir()) == sorted(json.loads(x)["name"] for x in sent.stdout.splitlines())
    answered = cnsx("-v", "sandbox", "--once", "--root", str(sshd.home), "--state", str(tmp_path / "sandbox-state.json"))
    assert "2 certificates, 1 refusal" in answered.stdout + answered.stderr
    fetched = cnsx("fetch")
    assert len(fetched.stdout.splitlines()) == 4  # two acknowledgements, the answers, the payment statement
    assert list(sshd.download_dir.iterdir()) == []  # deleted on the server once recorded
    cnsx("import", "-", stdin=fetched.stdout)
    status = json.loads(cnsx("status", "--json").stdout)
    assert [(r["request_ref"], r["reasons"][:3]) for r in status["refused_requests"]] == [("REQ-0003", "R03")]
    assert {c["certificate"]: c["sessions_remaining"] for c in status["certificates"]} == {
        "TPC-2026-000101": 2, "TPC-2026-000102": 4}
    assert [(d["certificate"], d["reason_code"]) for d in status["disputed"]] == [
        ("TPC-2026-000087", "C02"), ("TPC-2026-000087", "C02")]
    assert status["requests_awaiting_answer"] == [] and status["billed_awaiting_payment"] == []
    months = {m["month"]: (m["billed"], m["paid"], m["disputed"]) for m in status["per_month"]}
    assert months == {"2026-10": ("176.00", "176.00", "0.00"), "2026-11": ("384.86", "273.76", "111.10")}
    # a second round changes nothing
    assert cnsx("upload", "--json", *documents).stdout.count('"already-sent"') == 5
    assert cnsx("fetch").stdout == ""
