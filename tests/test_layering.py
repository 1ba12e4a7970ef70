"""Layering: which module of cns_exchange may import which third-party library.

Each library has one home (docs: style.md, "The shape"), so that a reader finds it in one
place and ``cnsx --help`` does not pay for lxml or rich.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "cns_exchange"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """Top-level names of every absolute import in ``tree`` (anywhere in it), with their line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def _top_level_imports(tree: ast.Module) -> set[str]:
    """Libraries imported when the module itself is imported (not inside functions or classes)."""
    names: set[str] = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            names.update(name for name, _ in _imports(node))

    visit(tree.body)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


MODULES = {_module_name(p): ast.parse(p.read_text("utf-8"), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _short(module: str) -> str:
    return module.split(".", 1)[1] if "." in module else module


#: library -> which modules may import it (a predicate over the module name without the package).
HOMES = {
    "lxml": lambda m: m.startswith("documents.") or m == "validation.validate",
    "ctypes": lambda m: m == "documents.verdict",           # libxml2's streaming validator, through lxml's copy
    "click": lambda m: m == "cli" or m.startswith("cli."),
    "rich": lambda m: m == "console",
    "stdnum": lambda m: m == "domain.identifiers",
    "paramiko": lambda m: m == "transport.sftp",
    "pypdf": lambda m: m.startswith("pdf."),                 # the PDF libraries: reading,
    "img2pdf": lambda m: m.startswith("pdf."),               # converting scans,
    "reportlab": lambda m: m.startswith("pdf."),             # drawing (and Pillow, which img2pdf uses)
    "PIL": lambda m: m.startswith("pdf."),
}
PDF_LIBRARIES = {"pypdf", "img2pdf", "reportlab", "PIL"}


def test_the_package_is_found():
    assert {"cns_exchange.cli", "cns_exchange.domain.identifiers", "cns_exchange.documents.read"} <= MODULES.keys()


def test_libraries_are_imported_only_in_their_home():
    wrong = []
    for module, tree in MODULES.items():
        for name, line in _imports(tree):
            home = HOMES.get(name)
            if home is not None and not home(_short(module)):
                wrong.append(f"{module}:{line} imports {name}")
    assert not wrong, "libraries imported outside their module:\n" + "\n".join(wrong)


def test_the_checker_sees_the_known_homes():
    # The homes above do import their library (so the walk above does find imports).
    used = {(_short(m), name) for m, tree in MODULES.items() for name, _ in _imports(tree)}
    assert {("cli", "click"), ("domain.identifiers", "stdnum"), ("documents.read", "lxml"), ("console", "rich")} <= used


def test_only_cli_imports_click():
    importers = sorted(m for m, tree in MODULES.items() if any(name == "click" for name, _ in _imports(tree)))
    assert importers and all(m == "cns_exchange.cli" or m.startswith("cns_exchange.cli.") for m in importers), importers


#: The command-line modules: cnsx --help imports every one of them (to list the commands).
CLI_MODULES = sorted(m for m in MODULES if m == "cns_exchange.cli" or m.startswith("cns_exchange.cli."))


def test_the_cli_is_a_package_of_command_modules():
    assert {"cns_exchange.cli.build", "cns_exchange.cli.fetch", "cns_exchange.cli.output"} <= set(CLI_MODULES)


@pytest.mark.parametrize("module", CLI_MODULES)
@pytest.mark.parametrize("library", ["lxml", "rich", "stdnum", "paramiko", "pypdf", "img2pdf", "reportlab", "PIL"])
def test_cli_imports_heavy_libraries_lazily(library, module):
    assert library not in _top_level_imports(MODULES[module])


PDF_MODULES = sorted(m for m in MODULES if m.startswith("cns_exchange.pdf."))


@pytest.mark.parametrize("module", PDF_MODULES)
def test_pdf_modules_import_their_libraries_inside_functions(module):
    # records and build import cns_exchange.pdf.prescriptions at their top, status and print the
    # drawing modules: none may load a PDF library when it is imported.
    assert not _top_level_imports(MODULES[module]) & PDF_LIBRARIES


def test_the_pdf_libraries_are_used_where_expected():
    # The walk does see the lazy imports: pypdf and img2pdf check and convert prescriptions;
    # reportlab measures and draws in the one layout engine, and draws the status report's chart.
    used = {(_short(m), name) for m in PDF_MODULES for name, _ in _imports(MODULES[m])}
    assert {("pdf.prescriptions", "pypdf"), ("pdf.prescriptions", "img2pdf")} <= used
    assert {m for m, name in used if name == "reportlab"} == {"pdf.layout", "pdf.report"}


def _cnsx_imports(tree: ast.AST) -> set[str]:
    """The cns_exchange modules ``tree`` imports (absolute imports, anywhere in it)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("cns_exchange"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cns_exchange"))
    return found


#: The stages in data-flow order (docs/architecture.md): a stage imports only those before it.
STAGES = ("domain", "documents", "validation", "pdf", "rows", "store", "billing", "transport", "cli")
#: The shared modules at the top level, and the stages each may import (doctor's checks are a
#: command's: it sits with cli).
SHARED = {"i18n": (), "issues": (), "errors": (), "clock": (), "fsutil": (), "console": (),
          "config": ("domain",), "doctor": STAGES[:-1], "__main__": ("cli",)}


def _stage(module: str) -> str:
    """The stage (sub-package) or shared module that ``module`` (cns_exchange.x.y) belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_a_stage_imports_only_the_stages_before_it():
    wrong = []
    for module, tree in MODULES.items():
        mine = _stage(module)
        if not mine:
            continue
        allowed = set(SHARED[mine]) if mine in SHARED else set(STAGES[:STAGES.index(mine)])
        for imported in _cnsx_imports(tree):
            theirs = _stage(imported)
            if theirs in STAGES and theirs != mine and theirs not in allowed:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "imports against the stage order (docs/architecture.md):\n" + "\n".join(sorted(wrong))


def test_every_module_belongs_to_a_stage_or_is_shared():
    stray = sorted(m for m in MODULES if _stage(m) and _stage(m) not in STAGES and _stage(m) not in SHARED)
    assert not stray, f"modules outside the stages and the shared modules (add them to docs/architecture.md): {stray}"


def test_the_store_imports_nothing_of_the_pdf_package():
    # The database's reports are data that the PDF draws: store never needs pdf (the matricule mask is domain's).
    wrong = sorted(f"{m} imports {i}" for m, tree in MODULES.items() if m.startswith("cns_exchange.store")
                   for i in _cnsx_imports(tree) if i.startswith("cns_exchange.pdf"))
    assert not wrong, wrong
    assert "cns_exchange.domain.identifiers.show_matricule" in _cnsx_imports(MODULES["cns_exchange.store.status"])


@pytest.mark.parametrize("module", CLI_MODULES)
def test_cli_top_level_imports_only_the_standard_library_click_and_cnsx(module):
    other = {name for name in _top_level_imports(MODULES[module])
             if name not in sys.stdlib_module_names and name not in {"click", "cns_exchange"}}
    assert not other, f"{module} imports {', '.join(sorted(other))} at module level: import it inside the command"


def _imported_modules(statement: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.append(name)
    return modules


def test_importing_the_cli_loads_no_lxml_or_rich():
    modules = _imported_modules("import cns_exchange.cli")
    assert "cns_exchange.cli" in modules and "click" in modules   # the list is really read
    heavy = sorted(m for m in modules if m.split(".")[0] in {"lxml", "rich", "paramiko"} | PDF_LIBRARIES)
    assert heavy == [], f"importing cns_exchange.cli loads {', '.join(heavy)}: import them inside the commands"


def test_importing_the_cli_loads_no_command_module():
    """The commands are registered by name and imported when they run (or --help lists them)."""
    modules = _imported_modules("import cns_exchange.cli")
    commands = sorted(m for m in modules if m.startswith("cns_exchange.cli.")
                      and m not in {"cns_exchange.cli.context", "cns_exchange.cli.output"})
    assert "cns_exchange.cli.context" in modules and commands == [], commands


def test_help_loads_every_command_module_and_no_heavy_library():
    code = ("import sys\nfrom cns_exchange.cli import cli\ntry:\n    cli.main(['--help'])\n"
            "finally:\n    print(' '.join(sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "Commands:" in proc.stdout, proc.stderr
    modules = proc.stderr.split()
    assert set(CLI_MODULES) <= set(modules), sorted(set(CLI_MODULES) - set(modules))
    heavy = sorted(m for m in modules if m.split(".")[0] in {"lxml", "rich", "paramiko", "stdnum"} | PDF_LIBRARIES)
    assert heavy == [], f"cnsx --help loads {', '.join(heavy)}: import them inside the commands"


def test_building_blocks_load_no_pdf_library():
    modules = _imported_modules("import " + ", ".join(["cns_exchange.billing.build", "cns_exchange.rows.records",
                                                         "cns_exchange.store.status", *PDF_MODULES]))
    assert "cns_exchange.pdf.prescriptions" in modules and "cns_exchange.pdf.printing" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in PDF_LIBRARIES)
    assert heavy == [], f"importing the build modules loads {', '.join(heavy)}: import them inside the functions"


def test_importing_the_entry_point_loads_no_lxml_or_rich():
    modules = _imported_modules("import cns_exchange.__main__")
    assert "cns_exchange.cli" in modules
    assert not [m for m in modules if m.split(".")[0] in {"lxml", "rich"}]
