"""Human output on stderr: issues, summaries and errors. Styled only on a terminal.

stdout carries data only; everything here goes to stderr. rich is imported on first use so
that ``cnsx --help`` stays fast. Every text is shown in the user's language here (i18n.tr):
messages, hints and issues arrive as English data, and only a person reads them translated.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from functools import lru_cache
from typing import IO, Callable, Iterable, Iterator

from cns_exchange.i18n import Msg, _, tr
from cns_exchange.issues import ERROR, WARNING, Issue

#: The words of the issue lines, by severity.
_SEVERITY = {ERROR: _("error"), WARNING: _("warning")}


def console(stream: IO[str] | None = None):
    """Return a rich console writing to ``stream`` (default: stderr)."""
    stream = stream or sys.stderr
    # Off a terminal (a pipe, a file, cron mail) tables get room instead of an 80-column fold.
    width = None if getattr(stream, "isatty", lambda: False)() else 200
    return _console_class()(file=stream, highlight=False, soft_wrap=True, width=width)


@lru_cache(maxsize=1)
def _console_class():
    """rich's Console (imported on first use), with cnsx's answer to a broken pipe."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 at once. Messages (stderr) lost are no reason to stop a run:
            # the rest go to /dev/null and the run ends with its own exit code. Data
            # (stdout) cut short: the CLI exits 141, as after SIGPIPE.
            if self.file is sys.stderr or self.file is sys.__stderr__:
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
                return
            raise BrokenPipeError()

    return _Console


class _Messages:
    """stderr during a run: a message that cannot be written (its reader gone, a full disk as
    under ``2>/dev/full``) is lost, and the run goes on to its own end and exit code. The first
    failure sends the rest to /dev/null, so that what is still buffered cannot fail again at
    the interpreter's exit."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except OSError:
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except OSError:
                self._lose()

    def _lose(self) -> None:
        self.lost = True
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            return
        if fd == 2:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextmanager
def messages_may_be_lost() -> Iterator[None]:
    """For the block, stderr cannot stop a run: a message it cannot take is lost (:class:`_Messages`)."""
    previous = sys.stderr
    if previous is None:  # started with 2>&-: nothing to guard
        yield
        return
    sys.stderr = _Messages(previous)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stderr = previous


#: Characters shown as printable escapes wherever text of an input or a return file may reach a
#: terminal (every message, issue and table cell): C0 and C1 controls, tab kept (a cell must
#: not move the cursor, recolour the terminal, set its title or start a line of its own that
#: looks like cnsx's), and the bidirectional controls (a right-to-left override in a CNS label
#: would show the rest of the line reversed: "Trojan Source", CVE-2021-42574) with the line
#: and paragraph separators. New lines cnsx means are written outside the escaped text.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7f, 0xa0)] if c != 0x09}
_CONTROLS.update({c: f"\\u{c:04x}" for c in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
                                              0x2028, 0x2029]})


def shown(text: str) -> str:
    """``text`` with every control and bidirectional character as a printable escape
    (``\\x1b``, ``\\u202e``): what the functions here do to any text they print."""
    return text.translate(_CONTROLS)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(shown(text))


def _hint(hint: str) -> str:
    """The markup of a hint's line, under the message it belongs to ('' for no hint)."""
    return f"\n    [dim]{tr(_('hint:'))} {_escape(tr(hint))}[/]" if hint else ""


def _location(issue: Issue) -> str:
    """``file:line`` plus field or XPath, as shown to a user (Issue.location, translated)."""
    where = issue.location()
    return tr(_("<input>")) + where[len("<input>"):] if not issue.file else where


def print_issues(issues: Iterable[Issue], stream: IO[str] | None = None) -> None:
    """Print issues, one per line with its hint: ``file:line [field]: severity CODE: message``
    (the layout is a message: French puts a space before each colon)."""
    out = console(stream)
    for issue in issues:
        colour = "red" if issue.is_error else "yellow"
        severity = tr(_SEVERITY.get(issue.severity, issue.severity))
        line = _("{location}: {severity} {code}: {message}").format(
            location=_escape(_location(issue)), severity=f"[{colour}]{severity}[/]",
            code=f"[{colour}]{issue.code}[/]", message=_escape(tr(issue.message)))
        out.print(tr(line) + _hint(issue.hint))


def print_line(text: str, stream: IO[str] | None = None, style: str = "") -> None:
    """Print one line of plain text (no markup interpreted)."""
    out = console(stream)
    out.print(_escape(tr(text)), style=style or None)


def print_error(message: str, hint: str = "", stream: IO[str] | None = None) -> None:
    """Print an error and its remedy."""
    out = console(stream)
    out.print(f"[red]{tr(_('error:'))}[/] {_escape(tr(message))}" + _hint(hint))


#: The status tables' titles and column headings as the terminal shows them: in English the
#: section and the column as --json and --csv name them (a title with spaces), else translated.
_TITLES = {
    "requests_awaiting_answer": _("requests awaiting answer"), "refused_requests": _("refused requests"),
    "certificates": _("certificates"), "billed_awaiting_payment": _("billed awaiting payment"),
    "disputed": _("disputed"), "per_month": _("per month"), "final_reports_due": _("final reports due"),
    "due": _("due"), "history": _("history"), "it_flat_rate": _("it flat rate"),
}
_HEADINGS = {
    "request_ref": _("request_ref"), "matricule": _("matricule"), "patient": _("patient"),
    "prescription_date": _("prescription_date"), "treatment": _("treatment"), "pathologies": _("pathologies"),
    "sent_at": _("sent_at"), "age_days": _("age_days"), "reasons": _("reasons"), "certificate": _("certificate"),
    "valid_from": _("valid_from"), "valid_to": _("valid_to"), "sessions_authorised": _("sessions_authorised"),
    "sessions_billed": _("sessions_billed"), "sessions_remaining": _("sessions_remaining"), "state": _("state"),
    "session_date": _("session_date"), "act": _("act"), "cns_share": _("cns_share"), "billing_file": _("billing_file"),
    "reason_code": _("reason_code"), "reason_label": _("reason_label"), "billed": _("billed to the CNS"), "accepted": _("accepted"),
    "month": _("month"), "sessions": _("sessions"), "gross": _("gross"), "patient_share": _("patient_share"),
    "paid": _("paid"), "prescriber": _("prescriber"), "last_session": _("last_session"), "ended": _("ended"),
    "due_since": _("due_since"), "what": _("what"), "reference": _("reference"), "date": _("date"), "days": _("days"),
    "reason": _("reason"), "event": _("event"), "detail": _("detail"), "year": _("year"), "providers": _("providers"),
    "period_from": _("period_from"), "period_to": _("period_to"), "prescriptions": _("prescriptions"),
    "awaiting_payment": _("awaiting_payment"), "threshold": _("threshold"), "qualifies": _("qualifies"),
    "amount": _("amount"), "year_ended": _("year_ended"),
}
#: The words cnsx writes in some columns (a state, what is due and why, an event of a
#: patient's history): data in --json and --csv, translated on the terminal.
_WORD_COLUMNS = {"state", "ended", "what", "reason", "event"}
_WORDS = {
    "valid": _("valid"), "expired": _("expired"), "finished": _("finished"), "interrupted": _("interrupted"),
    "certificate": _("certificate"), "request": _("request"), "expiring": _("expiring"),
    "sessions": _("1 session left or none"),   # (due's reason: the certificate's sessions are (nearly) used up)
    "unanswered": _("unanswered"), "refused": _("refused"), "fee note": _("fee note"), "session": _("session"),
    "payment": _("payment"), "dispute": _("dispute"), "final report sent": _("final report sent"),
}


def _cell(column: str, value: object) -> str:
    """A status table's cell as the terminal shows it (see _WORDS; a message translated)."""
    if value is None:
        return ""
    if isinstance(value, Msg):
        return tr(value)
    if isinstance(value, bool):   # True in --json, 'yes' or 'oui' here
        return tr(_("yes") if value else _("no"))
    if column in _WORD_COLUMNS and value in _WORDS:
        return tr(_WORDS[value])
    return str(value)


def print_tables(sections: dict[str, list[dict]], stream: IO[str] | None = None) -> None:
    """Print each section as a table (on stdout: status is data), its title, headings and
    words in the user's language (the keys of --json and --csv stay English)."""
    from rich.table import Table

    out = console(stream or sys.stdout)
    for name, rows in sections.items():
        title = tr(_TITLES.get(name, name.replace("_", " ")))
        if not rows:
            out.print(_escape(tr(_("{title}: none").format(title=title))))
            continue
        table = Table(title=_escape(title), title_justify="left")
        for column in rows[0]:
            table.add_column(_escape(tr(_HEADINGS.get(column, column))))
        for row in rows:
            table.add_row(*(_escape(_cell(k, v)) for k, v in row.items()))
        out.print(table)


def print_warning(message: str, hint: str = "", stream: IO[str] | None = None) -> None:
    """Print a warning that is not an issue of a file, and its remedy."""
    out = console(stream)
    out.print(f"[yellow]{tr(_('warning:'))}[/] {_escape(tr(message))}" + _hint(hint))


def print_tariff_table(table: dict, heading: str, stream: IO[str] | None = None) -> None:
    """Print one tariff table (tariffs.describe) for people, on stdout: where it comes from,
    since when, how its prices are made, and the price of each act."""
    from datetime import date
    from decimal import Decimal

    from rich.table import Table

    out = console(stream or sys.stdout)
    start = date.fromisoformat(table["valid_from"])   # (days and amounts as values: French writes them its way)
    if table["valid_until"]:
        in_force = _("from {start} to {end}").format(start=start, end=date.fromisoformat(table["valid_until"]))
    else:
        in_force = _("from {start} (no later table)").format(start=start)
    if table["prices"] is not None:
        basis = _("a price per act")
    else:
        basis = _("coefficient x key-letter value {value} EUR, rounded half up to the cent").format(
            value=Decimal(table["key_letter"]))
    share = table["patient_share"]
    inferred = _("{acts} (not read from an official text)").format(acts=", ".join(table["inferred"]))
    lines = [(_("file"), table["file"]), (_("in force"), in_force), (_("source"), table["source"]),
             (_("prices"), basis),
             (_("inferred"), inferred if table["inferred"] else _("none")),
             (_("patient share"), _("{adult} % from age {age}, {minor} % below").format(
                 adult=Decimal(share["adult_percent"]), age=share["minor_below_age"], minor=Decimal(share["minor_percent"])))]
    out.print(_escape(tr(heading)))
    width = max(14, *(len(tr(label)) + 1 for label, _text in lines))
    for label, text in lines:
        out.print(f"  {tr(label):<{width}}{_escape(tr(text))}")
    grid = Table(box=None, padding=(0, 0, 0, 2), pad_edge=False)
    columns = [_("act"), *([_("coefficient")] if table["coefficients"] else []), _("gross"), _("adult pays"),
               _("CNS (adult)"), _("minor pays"), _("CNS (minor)")]
    for i, column in enumerate(columns):
        grid.add_column(tr(column), justify="left" if i == 0 else "right")
    for act, price in table["acts"].items():
        grid.add_row(act, *([table["coefficients"][act]] if table["coefficients"] else []), price["gross"],
                     price["adult"]["patient_share"], price["adult"]["cns_share"],
                     price["minor"]["patient_share"], price["minor"]["cns_share"])
    out.print(grid)


def print_tariff_tables(tables: list[dict], stream: IO[str] | None = None) -> None:
    """Print every tariff table, one line each, oldest first (on stdout)."""
    from decimal import Decimal

    from rich.table import Table

    grid = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False)
    for column in (_("from"), _("to"), _("file"), _("prices"), _("inferred"), _("source")):
        grid.add_column(tr(column))
    for t in tables:
        basis = _("per act") if t["prices"] is not None else _("key letter {value}").format(value=Decimal(t["key_letter"]))
        grid.add_row(t["valid_from"], t["valid_until"] or "", _escape(tr(t["file"])), tr(basis), ", ".join(t["inferred"]),
                     _escape(t["source"]))
    console(stream or sys.stdout).print(grid)


@contextmanager
def progress(total: int | None, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback drawing a progress bar on stderr when ``enabled``
    (a terminal); a no-op otherwise, so that cron and pipes stay quiet."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = [TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    # redirect_stdout=False: rich would otherwise send what cnsx writes to stdout meanwhile
    # (fetch's list of files, data) to the terminal with the bar, and not down the pipe.
    with Progress(*columns, console=console(sys.stderr), transient=True, redirect_stdout=False) as bar:
        task = bar.add_task(_escape(tr(label)), total=total)
        yield lambda n: bar.advance(task, n)
