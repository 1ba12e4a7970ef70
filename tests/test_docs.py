"""The documentation must not drift from the code.

docs/rules.md has one table row per issue code of the catalogue (and no other), with the
catalogue's severity; docs/cli.md has the exit-code table and names every command; docs/
formats.md names every document kind of the bundled schema sets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cns_exchange.cli import cli
from cns_exchange.errors import ExitCode
from cns_exchange.issues import CATALOGUE
from cns_exchange.domain.naming import KIND_CODES

DOCS = Path(__file__).resolve().parent.parent / "docs"

#: A table row whose first cell is an issue code: "| MAT02 | error | ... |".
_CODE_ROW = re.compile(r"^\|\s*([A-Z]{2,3}[0-9]{2,3})\s*\|(.*)$", re.M)
#: A table row whose first cell is a number: "| 3 | invalid input or document | ... |".
_NUMBER_ROW = re.compile(r"^\|\s*([0-9]+)\s*\|(.*)$", re.M)


def _read(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    return path.read_text("utf-8")


def _cells(rest: str) -> list[str]:
    """Return the remaining cells of a table row (after the first one)."""
    return [cell.strip() for cell in rest.rstrip().rstrip("|").split("|")]


def _section(text: str, title: str) -> str:
    """Return the body of the '## title' section (up to the next '## ' heading)."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section '## {title}'"
    return match.group(1)


# --- rules.md -------------------------------------------------------------------------------

def _rule_rows() -> dict[str, list[list[str]]]:
    rows: dict[str, list[list[str]]] = {}
    for code, rest in _CODE_ROW.findall(_read("rules.md")):
        rows.setdefault(code, []).append(_cells(rest))
    return rows


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_issue_code_has_a_row_in_rules_md(code):
    rows = _rule_rows()
    assert code in rows, f"docs/rules.md has no table row '| {code} | ...'"
    assert len(rows[code]) == 1, f"docs/rules.md has {len(rows[code])} rows for {code}"


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_rules_md_gives_the_catalogue_severity(code):
    cells = _rule_rows().get(code)
    if not cells:
        pytest.fail(f"docs/rules.md has no row for {code}")
    assert cells[0][0] == CATALOGUE[code].severity, (
        f"docs/rules.md says {code} is '{cells[0][0]}', the catalogue says '{CATALOGUE[code].severity}'")


def test_rules_md_names_no_code_outside_the_catalogue():
    unknown = sorted(set(_rule_rows()) - set(CATALOGUE))
    assert not unknown, f"docs/rules.md has rows for codes not in issues.CATALOGUE: {', '.join(unknown)}"


# --- cli.md ---------------------------------------------------------------------------------

def _exit_rows() -> dict[int, list[list[str]]]:
    rows: dict[int, list[list[str]]] = {}
    for number, rest in _NUMBER_ROW.findall(_section(_read("cli.md"), "Exit codes")):
        rows.setdefault(int(number), []).append(_cells(rest))
    return rows


@pytest.mark.parametrize("code", list(ExitCode), ids=lambda c: c.name)
def test_every_exit_code_has_a_row_in_cli_md(code):
    rows = _exit_rows()
    assert int(code) in rows, f"docs/cli.md, Exit codes, has no row '| {int(code)} | ...' ({code.name})"
    assert len(rows[int(code)]) == 1, f"docs/cli.md has {len(rows[int(code)])} rows for exit code {int(code)}"
    # The row names the enum member, so that a renumbering shows up here.
    assert f"`{code.name}`" in " | ".join(rows[int(code)][0]), (
        f"the row of exit code {int(code)} in docs/cli.md does not name `{code.name}`")


def test_cli_md_lists_no_exit_code_that_does_not_exist():
    unknown = sorted(set(_exit_rows()) - {int(c) for c in ExitCode})
    assert not unknown, f"docs/cli.md lists exit codes that ExitCode lacks: {unknown}"


@pytest.mark.parametrize("name", cli.list_commands(None))  # (the commands are loaded lazily)
def test_every_command_is_documented_in_cli_md(name):
    assert f"cnsx {name}" in _read("cli.md"), f"docs/cli.md never mentions 'cnsx {name}'"


def test_cli_md_documents_every_config_key():
    from cns_exchange.config import SETTINGS, TOP_ONLY

    text = _read("cli.md")
    missing = sorted(key for key in set(SETTINGS) | TOP_ONLY if f"`{key}`" not in text and f"[{key}." not in text)
    assert not missing, f"docs/cli.md does not document the config keys: {', '.join(missing)}"


# --- formats.md -----------------------------------------------------------------------------

def _bundled_roots() -> set[str]:
    from cns_exchange.documents.schemas import bundled_dir

    roots = set()
    for manifest in bundled_dir().glob("*/manifest.json"):
        roots |= {spec["root"] for spec in json.loads(manifest.read_text("utf-8"))["documents"].values()}
    return roots


@pytest.mark.parametrize("root", sorted(_bundled_roots()))
def test_formats_md_describes_every_bundled_root_element(root):
    headings = re.findall(r"^## .*$", _read("formats.md"), re.M)
    assert any(f"`{root}`" in heading for heading in headings), (
        f"docs/formats.md has no section '## ...: `{root}`' describing that document")


@pytest.mark.parametrize("kind", sorted(KIND_CODES))
def test_formats_md_gives_every_file_kind_code(kind):
    assert f"`{KIND_CODES[kind]}`" in _read("formats.md"), (
        f"docs/formats.md does not give the file kind code {KIND_CODES[kind]} ({kind})")
