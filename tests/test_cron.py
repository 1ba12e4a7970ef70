"""The nightly job as cron runs it: the README's crontab, read from the README, its job run by
the crontab's SHELL with only the environment cron gives it (env -i: HOME, LOGNAME, SHELL, PATH,
then the crontab's variables), no terminal (a new session), stdin on /dev/null, in $HOME,
against a real OpenSSH sshd answered by the CNS sandbox. The secret comes as the README says:
`password = "env"`, and CNSX_PASSWORD from a 0600 file the job sources.

Cases: a quiet night, a normal night, files an earlier night left in the inbox, the server down,
and a fetch whose list cannot be written; the old pipe too, where the issue saw it fail.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT
from faults_env import Result, finish
from sshd import free_port

REQUEST = EXAMPLES / "123456_DTP_20261120_000001.xml"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
RETURNS = sorted(EXAMPLES.glob("CNS_*.xml"))            # an acknowledgement, answers, a payment statement
VENV_BIN = Path(sys.executable).parent                  # where scripts/test.sh installed cnsx
#: The old entry of the README, under the shell that can tell its exit code.
PIPE = 'set -o pipefail; . "$HOME/.config/cnsx/secret.env" && cnsx fetch | cnsx import -'


def crontab() -> tuple[dict[str, str], str]:
    """The README's crontab: its variables, and the command of its one job."""
    block = re.search(r"^```crontab\n(.*?)^```", (ROOT / "README.md").read_text("utf-8"), re.S | re.M)
    assert block, "README.md has no ```crontab block"
    variables, jobs = {}, []
    for line in block.group(1).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if assignment:
            variables[assignment[1]] = assignment[2].strip()
        else:
            jobs.append(line.split(None, 5)[5])  # minute hour day month weekday COMMAND
    assert len(jobs) == 1, f"the README's crontab should have one job: {jobs}"
    return variables, jobs[0]


class Cron:
    """One practice's user account as cron sees it: HOME with the config, the secret and the data."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.config_dir = home / ".config" / "cnsx"
        self.data = home / ".local" / "share" / "cnsx"   # the default data folder under that HOME
        self.config_dir.mkdir(parents=True)

    def configure(self, remote: str, known_hosts: Path, password: str) -> None:
        """The profile the crontab names (CNSX_PROFILE), and the secret file its job sources."""
        variables, _ = crontab()
        config = self.config_dir / "config.toml"
        config.write_text(f'provider = "123456"\n\n[profiles.{variables["CNSX_PROFILE"]}]\nremote = "{remote}"\n'
                          f'known_hosts = "{known_hosts}"\npassword = "env"\nupload_dir = "upload"\n'
                          'download_dir = "download"\nretries = 0\nbackoff = 0\ntimeout = 15\n')
        config.chmod(0o600)
        secret = self.config_dir / "secret.env"
        secret.write_text(f"export CNSX_PASSWORD='{password}'\n")
        secret.chmod(0o600)

    def environ(self) -> dict[str, str]:
        variables, _ = crontab()
        env = {"HOME": str(self.home), "LOGNAME": "root", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}  # cron's own
        env.update(variables)
        # The crontab's virtual environment is this test's.
        env["PATH"] = ":".join(str(VENV_BIN) if entry.endswith("/.venv/bin") else entry for entry in env["PATH"].split(":"))
        return env

    def run(self, command: str | None = None, shell: str | None = None) -> Result:
        """Run the crontab's job (or ``command``) as cron does; a job that hangs is killed."""
        env = self.environ()
        start = time.monotonic()
        proc = subprocess.Popen([shell or env["SHELL"], "-c", command or crontab()[1]], env=env, cwd=self.home,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        return finish(proc, start)

    def count(self, table: str) -> int:
        conn = sqlite3.connect(self.data / "practice.sqlite")
        try:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()

    def files(self, folder: str) -> list[str]:
        path = self.data / folder
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


@pytest.fixture
def cron(tmp_path) -> Cron:
    assert (VENV_BIN / "cnsx").exists(), f"cnsx is not installed beside {sys.executable}: run scripts/test.sh"
    return Cron(tmp_path / "home")


@pytest.fixture
def practice(cron, sshd) -> Cron:
    """A practice whose crontab job talks to the test sshd."""
    cron.configure(f"sftp://{sshd.user}@{sshd.host}:{sshd.port}", sshd.known_hosts, sshd.password)
    return cron


def _day(practice: Cron, sshd, tmp_path) -> None:
    """What the practice and the CNS do by day: upload the request and the billing file (by
    hand, in the same account), the CNS (the sandbox) answers into the download folder."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    for f in [REQUEST, BILLING, *EXAMPLES.glob("123456_ORD_*.pdf")]:
        shutil.copy(f, outbox)
    up = practice.run(f'. "$HOME/.config/cnsx/secret.env" && cnsx upload {outbox / REQUEST.name} {outbox / BILLING.name}')
    assert up.code == 0, up
    answered = practice.run(f"cnsx -q sandbox --once --root {sshd.home} --state {tmp_path / 'sandbox-state.json'}")
    assert answered.code == 0, answered
    assert len(list(sshd.download_dir.iterdir())) == 4  # two acknowledgements, the answers, the payment statement


def test_the_readme_crontab_is_one_job_without_a_pipe():
    variables, job = crontab()
    assert {"PATH", "MAILTO", "CNSX_PROFILE"} <= set(variables)
    assert any(entry.endswith("/.venv/bin") for entry in variables["PATH"].split(":"))
    assert "|" not in job and "cnsx nightly" in job
    assert "secret.env" in job  # the secret's source, sourced by the job only


def test_a_quiet_night_says_nothing(practice):
    ran = practice.run()
    assert (ran.code, ran.stdout, ran.stderr) == (0, "", ""), ran
    assert practice.files("errors") == [] and practice.files("inbox") == []
    # The old pipe on the same quiet night: no false XML01, no empty stdin-….xml quarantined.
    piped = practice.run(PIPE, shell="/bin/bash")
    assert (piped.code, piped.stdout, piped.stderr) == (0, "", ""), piped
    assert practice.files("errors") == [] and practice.files("inbox") == []


def test_a_normal_night_then_a_quiet_one(practice, sshd, tmp_path):
    _day(practice, sshd, tmp_path)
    ran = practice.run()
    assert (ran.code, ran.stdout, ran.stderr) == (0, "", ""), ran
    assert practice.count("documents") == 6  # what was sent, and the four returns
    assert (practice.count("certificates"), practice.count("payment_lines")) == (2, 8)
    assert practice.files("inbox") == [] and practice.files("errors") == []
    again = practice.run()
    assert (again.code, again.stdout, again.stderr) == (0, "", ""), again
    assert practice.count("documents") == 6


def test_files_an_earlier_night_left_in_the_inbox_are_imported(practice, sshd, tmp_path):
    _day(practice, sshd, tmp_path)
    # The old pipe whose import half died: the fetch recorded the files, their list went nowhere.
    lost = practice.run('. "$HOME/.config/cnsx/secret.env" && cnsx fetch > /dev/null')
    assert lost.code == 0, lost
    assert len(practice.files("inbox")) == 4
    ran = practice.run()
    assert (ran.code, ran.stdout, ran.stderr) == (0, "", ""), ran
    assert practice.count("documents") == 6 and practice.files("inbox") == []


def test_the_server_down_is_one_line_and_exit_5_and_the_inbox_is_still_imported(cron):
    cron.configure(f"sftp://cnsx@127.0.0.1:{free_port()}", ROOT / "no-known-hosts", "unused")  # nothing listens there
    inbox = cron.data / "inbox"
    inbox.mkdir(parents=True)
    for f in [REQUEST, BILLING, *RETURNS]:  # left by earlier nights: all match one another
        shutil.copy(f, inbox)
    ran = cron.run()
    assert ran.code == 5 and ran.stdout == "", ran
    [line] = ran.stderr.splitlines()
    assert line.startswith("error: 127.0.0.1:") and "cannot connect" in line, ran
    assert cron.count("documents") == 5 and cron.files("inbox") == [] and cron.files("errors") == []
    # The old pipe: the true error, and no false XML01 after it.
    piped = cron.run(PIPE, shell="/bin/bash")
    assert piped.code == 5 and piped.stdout == "", piped
    assert "cannot connect" in piped.stderr and "XML01" not in piped.stderr and "stdin" not in piped.stderr, piped
    assert cron.files("errors") == [] and cron.files("inbox") == []


def test_a_fetch_whose_list_cannot_be_written_fails_and_the_next_night_imports(practice, sshd):
    for f in RETURNS:
        sshd.put_remote(f"download/{f.name}", f.read_bytes())
    recorded = practice.run(f"cnsx import {REQUEST} {BILLING}")  # sent earlier: the returns match them
    assert recorded.code == 0, recorded
    full = practice.run('. "$HOME/.config/cnsx/secret.env" && cnsx fetch > /dev/full')
    assert full.code == 8, full
    [line] = full.stderr.splitlines()
    assert line.startswith("error: stdout: No space left on device") and str(practice.data / "inbox") in line, full
    ran = practice.run()
    assert (ran.code, ran.stdout, ran.stderr) == (0, "", ""), ran
    assert practice.count("documents") == 5 and practice.files("inbox") == []


def test_a_missing_secret_file_fails_and_says_so(cron):
    cron.configure(f"sftp://cnsx@127.0.0.1:{free_port()}", ROOT / "no-known-hosts", "unused")
    (cron.config_dir / "secret.env").unlink()
    ran = cron.run()
    assert ran.code != 0 and "secret.env" in ran.stderr, ran  # cron mails it
    assert not (cron.data / "practice.sqlite").exists()  # cnsx never ran without its secret
