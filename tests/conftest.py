"""Shared fixtures: an isolated config folder per test, a CliRunner wrapper, data helpers.

With CNSX_NO_SKIP=1 (set by scripts/test.sh, so in CI) a skipped test fails the run.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import settings as hypothesis_settings
from stdnum import luhn, verhoeff

from cns_exchange import i18n
from cns_exchange.cli import cli
from conftest_sshd import *  # noqa: F401,F403 - the real OpenSSH server fixtures (sshd, sshd_server)

# Property tests draw new files on each run; a failure prints the example and the blob that
# replays it (@reproduce_failure); pytest --hypothesis-seed=N replays a whole run.
hypothesis_settings.register_profile("cnsx", print_blob=True)
hypothesis_settings.load_profile("cnsx")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCHEMAS = ROOT / "schemas"
CREATED = "2026-11-20T09:00:00+01:00"
PROVIDER = "123456"

#: Valid matricules from domain.md.
VALID_MATRICULES = ["1893120105732", "2015123101725", "1974091186700", "1982080285657",
                    "1990093012358", "2001120308757", "1979122003208", "1966051507682"]


def make_matricule(born: date, serial: int = 123) -> str:
    """Return a valid matricule for a birth date (C1 Luhn, C2 Verhoeff over 11 digits)."""
    base = f"{born:%Y%m%d}{serial:03d}"
    return base + luhn.calc_check_digit(base) + verhoeff.calc_check_digit(base)


def random_matricules(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    while len(seen) < n:
        seen.add(make_matricule(date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 80)), rng.randrange(1000)))
    return sorted(seen)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes


@pytest.fixture(autouse=True)
def isolated_config(tmp_path_factory, monkeypatch):
    """Every test gets an empty config folder, no CNSX_* variables from the caller, and
    English messages whatever the caller's locale (a French developer's LANG; tests of French
    ask for it)."""
    folder = tmp_path_factory.mktemp("config")
    for name in list(os.environ):
        if name.startswith("CNSX_") and name != "CNSX_NO_SKIP":
            monkeypatch.delenv(name)
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    i18n.choose(None)  # a French config read in-process by an earlier test no longer speaks
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.setenv("CNSX_CONFIG_DIR", str(folder))
    return folder


#: The bundled tariff figures, as a practice's own table from 2026-01-01: with it, sessions of
#: 2026 are priced as with the bundled table and the table is current (no NOM05 warning).
CURRENT_TARIFFS = {
    "valid_from": "2026-01-01",
    "source": "tests: the bundled figures, taken as current from 2026-01-01",
    "key_letter": {"name": "ZD", "value": "11.1108"},
    "coefficients": {"ZD11": "8", "ZD12": "10", "ZD13": "5", "ZD21": "5"},
    "patient_share": {"adult_percent": "12", "minor_percent": "0", "minor_below_age": 18},
}


@pytest.fixture
def current_tariffs(isolated_config) -> Path:
    """A practice that keeps its tariffs current: CURRENT_TARIFFS in the config folder. For the
    tests of other things than tariffs, whose exact issues a stale table (NOM05) would change."""
    import json

    folder = isolated_config / "nomenclature"
    folder.mkdir(exist_ok=True)
    path = folder / "2026-01-01.json"
    path.write_text(json.dumps(CURRENT_TARIFFS), "utf-8")
    return path


@pytest.fixture
def run():
    """Run cnsx in-process with CliRunner; returns exit code, stdout and stderr separately."""

    def _run(*args: str, input: bytes | str | None = None) -> Result:
        runner = CliRunner()
        result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)

    return _run


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A private data folder for the practice database, inbox and archive (CNSX_DATA_DIR)."""
    folder = tmp_path / "data"
    monkeypatch.setenv("CNSX_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def dropbox(tmp_path, isolated_config, data) -> tuple[Path, Path]:
    """A file:// drop box (upload/, download/), a profile pointing at it, a private data
    folder: (root, data). ``cnsx sandbox --once`` answers in it."""
    root = tmp_path / "dropbox"
    (root / "upload").mkdir(parents=True)
    (root / "download").mkdir()
    config = isolated_config / "config.toml"
    config.write_text(f'provider = "{PROVIDER}"\nremote = "file://{root}"\n')
    config.chmod(0o600)
    return root, data


@pytest.fixture
def examples(tmp_path) -> Path:
    """A private copy of examples/ (inputs and prescriptions)."""
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("*.xml", "*.py", "__pycache__"))
    return target


def xmllint(xml: Path, xsd: Path) -> subprocess.CompletedProcess:
    """Validate with xmllint --schema: the independent second validator."""
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint is not installed (Debian: libxml2-utils)")
    return subprocess.run(["xmllint", "--noout", "--schema", str(xsd), str(xml)], capture_output=True, text=True)


def pytest_runtest_logreport(report):
    if report.skipped and os.environ.get("CNSX_NO_SKIP") == "1":
        pytest_runtest_logreport.skipped.append(report.nodeid)


pytest_runtest_logreport.skipped = []


def pytest_sessionfinish(session, exitstatus):
    skipped = pytest_runtest_logreport.skipped
    if skipped and session.exitstatus == 0:
        print(f"\nCNSX_NO_SKIP=1 and {len(skipped)} test(s) skipped: {', '.join(skipped[:10])}")
        session.exitstatus = 1
