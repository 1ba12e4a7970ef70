"""The wheel ships what cnsx needs at run time: the XSDs, the manifest and the data tables.

The wheel is built from the checkout, installed with ``pip install --target`` into a temp
folder, and run from outside the checkout with only that folder on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import CREATED, EXAMPLES, PROVIDER, ROOT, SCHEMAS

pytestmark = pytest.mark.slow


def _ensure_hatchling() -> None:
    try:
        import hatchling  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hatchling>=1.21"], check=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel of the checkout (without touching it) and return its path."""
    _ensure_hatchling()
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:  # fall back on pip's builder
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "-w", str(dist), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [built] = dist.glob("cnsx-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


@pytest.fixture
def outside(tmp_path, installed, isolated_config):
    """Run ``python ...`` from a folder outside the checkout with only the installed copy on the path."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNSX_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(installed)
    env["CNSX_CONFIG_DIR"] = str(isolated_config)
    env["PYTHONSAFEPATH"] = "1"

    def _run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, timeout=120)

    _run.cwd = work
    return _run


def test_wheel_holds_schemas_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = sorted(p.parent.name for p in SCHEMAS.glob("*/manifest.json"))
    assert {"v1", "v2"} <= set(versions)
    expected = {f"cns_exchange/schemas/{v}/{p.name}" for v in versions for p in (SCHEMAS / v).glob("*.xsd")}
    expected |= {f"cns_exchange/schemas/{v}/manifest.json" for v in versions}
    expected.add("cns_exchange/domain/data/codes.json")
    expected.add("cns_exchange/locale/fr/LC_MESSAGES/cnsx.mo")
    expected |= {f"cns_exchange/domain/data/nomenclature/{p.name}" for p in (ROOT / "cns_exchange" / "domain" / "data" / "nomenclature").glob("*.json")}
    assert len(expected) >= 16
    missing = sorted(expected - names)
    assert not missing, f"missing from {wheel.name}: {missing}"
    for v in versions:
        manifest = json.loads((SCHEMAS / v / "manifest.json").read_text("utf-8"))
        for spec in manifest["documents"].values():
            assert f"cns_exchange/schemas/{v}/{spec['xsd']}" in names
    assert "cns_exchange/__main__.py" in names and "cns_exchange/cli/__init__.py" in names


def test_wheel_declares_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as z:
        [entry_points] = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = z.read(entry_points).decode("utf-8")
    assert "cnsx = cns_exchange.cli:main" in text


def test_installed_copy_is_the_one_imported(outside, installed):
    proc = outside("-c", "import cns_exchange, cns_exchange.documents.schemas as s; print(cns_exchange.__file__); print(s.bundled_dir())")
    assert proc.returncode == 0, proc.stderr.decode()
    module_file, schemas_dir = proc.stdout.decode().split()
    assert Path(module_file).resolve().is_relative_to(installed.resolve())
    assert Path(schemas_dir).resolve() == (installed / "cns_exchange" / "schemas").resolve()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.xml")))
def test_installed_validate(outside, name):
    copy = outside.cwd / name
    shutil.copyfile(EXAMPLES / name, copy)
    for pdf in EXAMPLES.glob("123456_ORD_*.pdf"):  # the request's prescriptions, checked beside it
        shutil.copyfile(pdf, outside.cwd / pdf.name)
    proc = outside("-m", "cns_exchange", "validate", name)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "valid" in proc.stderr.decode() and "INVALID" not in proc.stderr.decode()


def test_installed_validate_refuses_a_broken_document(outside):
    broken = (EXAMPLES / "123456_FAC_20261120_000001.xml").read_text("utf-8").replace("<CodeActe>ZD11</CodeActe>", "<CodeActe>ZD99</CodeActe>", 1)
    (outside.cwd / "123456_FAC_20261120_000009.xml").write_text(broken, "utf-8")
    proc = outside("-m", "cns_exchange", "validate", "123456_FAC_20261120_000009.xml")
    assert proc.returncode == 3
    assert "XSD01" in proc.stderr.decode()


def test_installed_copy_speaks_french(outside, installed):
    """The compiled catalogue ships in the wheel and is found in the installed package."""
    proc = outside("-c", "import os; os.environ['LANG'] = 'fr_LU.UTF-8'; "
                         "from cns_exchange import i18n; from cns_exchange.i18n import _, tr; "
                         "print(i18n.LOCALE_DIR); print(tr(_('fix the value')))")
    assert proc.returncode == 0, proc.stderr.decode()
    folder, text = proc.stdout.decode().splitlines()
    assert Path(folder).resolve().is_relative_to(installed.resolve())
    assert text == "corrigez la valeur"


def test_installed_build_invoice(outside):
    shutil.copyfile(EXAMPLES / "sessions.csv", outside.cwd / "sessions.csv")
    proc = outside("-m", "cns_exchange", "-q", "build-invoice", "sessions.csv", "--provider", PROVIDER, "--created", CREATED)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<FichierFacturation>')
    # Priced with the bundled table: the same bytes as the committed example.
    assert proc.stdout == (EXAMPLES / "123456_FAC_20261120_000001.xml").read_bytes()


def test_installed_build_invoice_writes_and_checks_v2(outside):
    """From 2026-12-01 builds write schema v2, whose XSD (in the wheel) checks the fee note's
    DateOrdonnance: the issue-14 patient, under 18 on the prescription date, pays nothing."""
    (outside.cwd / "sessions.csv").write_text(
        "certificate_number;matricule;session_date;act_code;prescription_date\n"
        "TPC-2026-000200;2008121512377;2026-12-10;ZD11;2026-12-01\n"
        "TPC-2026-000200;2008121512377;2026-12-20;ZD12;2026-12-01\n", "utf-8")
    proc = outside("-m", "cns_exchange", "-q", "build-invoice", "sessions.csv", "--provider", PROVIDER,
                   "--created", "2026-12-21T09:00:00+01:00")
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode("utf-8")
    assert "<VersionSchema>2</VersionSchema>" in text and "<DateOrdonnance>2026-12-01</DateOrdonnance>" in text
    assert text.count("<ParticipationPersonnelle>0.00</ParticipationPersonnelle>") == 2
