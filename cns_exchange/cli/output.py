"""The shared writers of the commands: data on stdout (JSON, JSON lines), the output-format
options, and the summary line on stderr. stdout carries data only; whatever is for a person
goes to stderr through :mod:`cns_exchange.console`."""

from __future__ import annotations

import functools
import json
import sys

import click

from cns_exchange.errors import UsageError
from cns_exchange.i18n import _, join, ngettext


def write_json(data) -> None:
    """Write ``data`` to stdout as one indented JSON document (UTF-8 text as it is)."""
    out = sys.stdout
    json.dump(data, out, ensure_ascii=False, indent=2)
    out.write("\n")


class JsonLines:
    """Writes one JSON object per line to stdout (NDJSON).

    ``flush``: each line goes out at once (a list a pipe reads while the run goes on:
    ``cnsx fetch | cnsx import -``). ``ascii``: non-ASCII characters escaped, for the lists
    of files that scripts read whatever their locale's encoding (upload, fetch)."""

    def __init__(self, *, flush: bool = False, ascii: bool = False) -> None:
        self.flush = flush
        self.ascii = ascii

    def write(self, record: dict) -> None:
        out = sys.stdout
        out.write(json.dumps(record, ensure_ascii=self.ascii) + "\n")
        if self.flush:
            out.flush()


def format_options(**helps: str):
    """--json/--ndjson/--csv as flags of their own, handed to the command as ``fmt`` (None if
    none): two of them is a usage error, not the last one silently winning."""

    def decorate(func):
        @functools.wraps(func)
        def command(*args, **kwargs):
            given = [name for name in helps if kwargs.pop(f"fmt_{name}")]
            if len(given) > 1:
                raise UsageError(_("{options}: one output format at a time").format(options="--" + " and --".join(given)),
                                 _("give one of them"))
            return func(*args, fmt=given[0] if given else None, **kwargs)

        for name, text in reversed(list(helps.items())):
            command = click.option(f"--{name}", f"fmt_{name}", is_flag=True, help=text)(command)
        return command

    return decorate


def options(*decorators):
    """Apply click options and arguments in the order they are listed (the order --help shows)."""

    def decorate(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def summary(ctx, text: str, style: str = "") -> None:
    """Say on stderr what a command did, unless -q."""
    if not ctx.quiet:
        from cns_exchange import console

        console.print_line(text, style=style)


def billed(notes: int, sessions: int, gross: int, cns: int) -> str:
    """What a billing file holds, for a person: '2 fee notes, 5 sessions, 120.00 EUR gross,
    84.00 EUR to the CNS' (amounts in cents; '120,00 EUR' in French)."""
    from cns_exchange.domain.model import money

    return join(", ", (ngettext("{n} fee note", "{n} fee notes", notes).format(n=notes),
                       ngettext("{n} session", "{n} sessions", sessions).format(n=sessions),
                       _("{amount} EUR gross").format(amount=money(gross)),
                       _("{amount} EUR to the CNS").format(amount=money(cns))))
