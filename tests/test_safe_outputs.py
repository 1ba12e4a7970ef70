"""Safe outputs (issue 12, part 6): folders private whatever the umask, CSV cells that no
spreadsheet runs as a formula, input text that cannot drive the terminal, and an upload name
that must say what the document says."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import EXAMPLES, PROVIDER

PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"
BILLING_NAME = "123456_FAC_20261120_000001.xml"


@pytest.fixture
def umask_000():
    """The umask of a careless shell: every folder cnsx makes must still be 0700."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(top) -> dict[str, str]:
    """The mode of ``top`` and of every folder under it, by path relative to its parent."""
    found = {top.name: oct(stat.S_IMODE(top.stat().st_mode))}
    for folder, subfolders, _ in os.walk(top):
        for name in subfolders:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, top.parent)] = oct(stat.S_IMODE(os.stat(path).st_mode))
    return found


def test_import_makes_its_data_folders_0700_under_umask_000(run, tmp_path, monkeypatch, umask_000):
    # The data folder and its missing parents (here two levels), the inbox, archive and
    # errors folders: all made by cnsx, all private to the user.
    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "home" / "share" / "cnsx"))
    r = run("import", str(PAYMENT))
    assert r.exit_code == 0, r.stderr
    modes = _modes(tmp_path / "home")
    assert set(modes) >= {"home", "home/share", "home/share/cnsx", "home/share/cnsx/inbox", "home/share/cnsx/archive"}
    assert set(modes.values()) == {"0o700"}, modes


def test_config_init_makes_its_folders_0700_under_umask_000(run, tmp_path, umask_000):
    target = tmp_path / "etc" / "cnsx" / "config.toml"
    r = run("--config", str(target), "config", "init", "--provider", PROVIDER)
    assert r.exit_code == 0, r.stderr
    assert set(_modes(tmp_path / "etc").values()) == {"0o700"}


def test_print_fee_notes_makes_its_folder_0700_under_umask_000(run, tmp_path, umask_000):
    r = run("print", "fee-notes", str(EXAMPLES / BILLING_NAME), "-o", str(tmp_path / "notes"),
            "--created", "2026-11-21T10:00:00+01:00")
    assert r.exit_code == 0, r.stderr
    assert _modes(tmp_path / "notes") == {"notes": "0o700"}


def test_a_folder_that_exists_keeps_its_mode(run, tmp_path, monkeypatch, umask_000):
    # cnsx makes its own folders private; it does not change the user's.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    monkeypatch.setenv("CNSX_DATA_DIR", str(shared / "cnsx"))
    assert run("import", str(PAYMENT)).exit_code == 0
    modes = _modes(shared)
    assert modes.pop("shared") == "0o755"
    assert set(modes.values()) == {"0o700"}
