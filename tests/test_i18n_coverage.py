"""Every message a person reads is in the catalogue (issue 13: "every message, hint and help
text in French and English").

test_i18n.py checks that every marked message has its French translation; this file checks
that no message escapes the marking. It reads the syntax tree of every module of cns_exchange
and lists the text literals (plain or f-strings) given, unmarked, where a person will read
them:

- the message and hint of an error cnsx raises (a class of errors.py, or of a module, whose
  name ends in Error; Python's own errors are for programmers and are not shown as such);
- the message and hint of an issue: ``Issue(code, message, ...)``, ``report.add(code,
  message, ...)``, and a rule's finding ``("CODE01", message)``;
- what the commands print for a person: ``console.print_line/print_error/print_warning/
  print_note``, ``summary(ctx, ...)``, ``click.echo``, ``click.prompt``, ``click.confirm``;
- the help: ``help=`` and ``short_help=`` of click commands and options, ``metavar`` excepted;
  a command whose help is its docstring is listed too (a docstring cannot be marked).

Text without a letter ("→", ", ") and machine output (JSON keys, CSV headers, the database)
are not messages. A literal that must stay English for a reason is listed in ALLOWED with it.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cns_exchange"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "locale" not in p.parts)

#: (module, first words of the literal) -> why it stays English.
ALLOWED: dict[tuple[str, str], str] = {}

RULE_CODE = re.compile(r"[A-Z]{2,4}[0-9]{2,3}\Z")
PRINTERS = {"print_line", "print_error", "print_warning", "print_note", "echo", "prompt", "confirm", "secho"}
_BUILTIN_ERRORS = {name for name in dir(builtins) if name.endswith(("Error", "Exception", "Exit", "Warning"))}


def _text(node: ast.AST) -> str | None:
    """The literal text of ``node`` when it is an unmarked literal (a str constant or an
    f-string) that holds a letter; None for anything else (a marked message, a variable)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    else:
        return None
    return text if re.search(r"[A-Za-z]{2}", text) else None


def _name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _is_click(decorator: ast.AST) -> bool:
    call = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(call, ast.Attribute) and _name(call) in ("command", "group") or \
        isinstance(call, ast.Name) and call.id in ("command", "group")


def unmarked(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``module:line: text`` of every unmarked message of the module at ``path`` (named
    relative to ``root``)."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    found: list[tuple[int, str]] = []

    def note(node: ast.AST) -> None:
        text = _text(node)
        if text is not None:
            found.append((node.lineno, text))

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            name = _name(node.exc.func)
            if name.endswith("Error") and name not in _BUILTIN_ERRORS:
                for arg in node.exc.args[:2]:
                    note(arg)
                for kw in node.exc.keywords:
                    if kw.arg in ("message", "hint"):
                        note(kw.value)
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            first = node.args[0] if node.args else None
            if name in ("Issue", "add") and isinstance(first, ast.Constant) and isinstance(first.value, str) \
                    and RULE_CODE.match(first.value):
                for arg in node.args[1:2]:
                    note(arg)
                for kw in node.keywords:
                    if kw.arg in ("message", "hint"):
                        note(kw.value)
                if name == "add" and len(node.args) >= 5:
                    note(node.args[4])
            elif name in PRINTERS and isinstance(node.func, ast.Attribute) and _name(node.func.value) in ("console", "click"):
                for arg in node.args[:2]:
                    note(arg)
            elif name == "summary" and len(node.args) >= 2:
                note(node.args[1])
            for kw in node.keywords:
                if kw.arg in ("help", "short_help") and _name(node.func) in (
                        "option", "argument", "command", "group", "Option", "Command", "Group"):
                    note(kw.value)
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2:
            code = node.elts[0]
            if isinstance(code, ast.Constant) and isinstance(code.value, str) and RULE_CODE.match(code.value):
                note(node.elts[1])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                if _is_click(decorator):
                    gives_help = isinstance(decorator, ast.Call) and any(kw.arg == "help" for kw in decorator.keywords)
                    if not gives_help and ast.get_docstring(node):
                        found.append((node.lineno, f"(the docstring of command {node.name})"))
    rel = path.relative_to(root).as_posix()
    return [f"{rel}:{line}: {text[:70]!r}" for line, text in sorted(found)
            if not any(rel == module and text.startswith(start) for module, start in ALLOWED)]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_every_message_is_marked_for_translation(path):
    missing = unmarked(path)
    assert not missing, f"{len(missing)} unmarked message(s), mark them with _() (cns_exchange/i18n.py):\n" \
                        + "\n".join(missing[:40])


def test_the_check_finds_what_it_looks_for(tmp_path):
    """Each kind of unmarked message is found; the marked ones, machine text and Python's own
    errors are not."""
    module = tmp_path / "m.py"
    module.write_text('''
import click
from cns_exchange import console
from cns_exchange.i18n import _

def f(report, ctx, name):
    raise InputError(f"{name}: not a file", "check the path")            # 2
    raise InputError(_("{name}: not a file").format(name=name))          # marked
    raise ValueError(f"programming error {name}")                        # Python's own
    report.add("IN004", f"'{name}' is not a date", 3, "date")            # 1
    report.add("IN004", _("not a date"), 3, "date", "give YYYY-MM-DD")   # 1 (the hint)
    problems = [("MAT01", "not a matricule")]                            # 1
    console.print_line(f"{name} sent")                                   # 1
    console.print_line("→")                                              # no letter
    summary(ctx, "nothing to do")                                        # 1
    return {"status": "sent"}                                            # data

@click.command("x")
@click.option("--flag", help="Do it.")                                  # 1
def command(flag):
    """Help as a docstring."""                                          # 1

@click.command("y", help=_("Marked help."))
def marked():
    """Not the help."""
''', "utf-8")
    found = [line.split(": ", 1)[1] for line in unmarked(module, tmp_path)]
    assert found == [repr(": not a file"), repr("check the path"), repr("'' is not a date"), repr("give YYYY-MM-DD"),
                     repr("not a matricule"), repr(" sent"), repr("nothing to do"), repr("Do it."),
                     repr("(the docstring of command command)")]
