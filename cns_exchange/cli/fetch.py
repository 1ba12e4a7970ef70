"""cnsx fetch, cnsx nightly (fetch and import, for cron) and cnsx hostkey: what comes from the CNS."""

from __future__ import annotations

import os
import sys

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import JsonLines
from cns_exchange.errors import CnsxError, TransportFatalError
from cns_exchange.i18n import _, ngettext, reason


def _fetcher(ctx: Context, settings, remote, connect):
    """Return a function making the profile's Fetcher on a database connection."""
    from cns_exchange.transport.fetch import Fetcher

    return lambda conn: Fetcher(conn, settings.profile or "default", str(remote), str(settings.download_dir),
                                settings.local_dir("inbox"), str(settings.after_fetch), settings.remote_archive_dir,
                                connect, int(settings.retries), float(settings.backoff), ctx.on_retry())


def _say_fetched(ctx: Context, item) -> None:
    """With -v, say where a fetched file went."""
    from cns_exchange import console

    if ctx.verbose:
        line = _("{name} → {path} ({note})") if item.note else _("{name} → {path}")
        console.print_line(line.format(name=item.name, path=item.path, note=item.note))


def _report_fetch(report) -> None:
    """Print what a fetch left for a human: files not fetched, new content under a known name."""
    from cns_exchange import console

    for name, why in report.skipped:
        console.print_line(_("not fetched: {name}: {why}").format(name=name, why=why), style="yellow")
    for warning in report.warnings:
        console.print_line(_("warning: {warning}").format(warning=warning), style="yellow")


def _list_line(lines: JsonLines, item, inbox) -> None:
    """Write the line of a fetched file to stdout, now. A reader gone is exit 141 as always;
    a stdout that takes nothing (a full disk, `> /dev/full`) is an error naming what is lost."""
    from cns_exchange.errors import LocalIOError

    try:
        lines.write(item.as_dict())
    except BrokenPipeError:
        raise
    except OSError as exc:
        # What is still buffered goes nowhere (else the interpreter's last flush fails again,
        # exit 120). One line (cron mail): the file is fetched and recorded, so a later fetch
        # will not list it again; the inbox keeps it for cnsx nightly or cnsx import.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        raise LocalIOError(_("stdout: {error}: the list of fetched files is lost; they are in the inbox {inbox}, "
                             "where cnsx nightly or cnsx import imports them").format(error=exc.strerror or exc,
                                                                                       inbox=inbox)) from None


@click.command("fetch", help=_("""Fetch the CNS's new return files into the inbox.

    Prints one NDJSON line per fetched file on stdout (name, path, size, sha256), so that
    `cnsx fetch | cnsx import -` chains. Silent otherwise, unless something needs a human.
    For cron, `cnsx nightly` fetches and imports in one run.
    """))
@click.option("--dry-run", is_flag=True, help=_("List what would be fetched; transfer nothing."))
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help=_("Wait for another run's lock."))
@pass_context
def fetch_cmd(ctx: Context, dry_run, wait):
    from cns_exchange import console
    from cns_exchange.store import database
    from cns_exchange.store.lock import run_lock

    settings, remote, connect = ctx.transport()
    db_path = settings.database_path()
    inbox = settings.local_dir("inbox")
    lines = JsonLines(flush=True, ascii=True)
    with run_lock(db_path, wait):
        conn = database.connect(db_path)
        fetcher = _fetcher(ctx, settings, remote, connect)(conn)

        with console.progress(None, _("fetching"), ctx.show_progress) as advance:
            def emit(item):
                _list_line(lines, item, inbox)
                advance(1)
                _say_fetched(ctx, item)

            try:
                report = fetcher.run(dry_run=dry_run, emit=emit)
            finally:
                fetcher.close()
                conn.close()
    _report_fetch(report)


def _one_line(exc: CnsxError) -> str:
    """An error and its remedy on one line, as cron mail wants them (in the user's language:
    the line is printed, never data)."""
    from cns_exchange.i18n import tr

    text = tr(_("{error}; hint: {hint}").format(error=reason(exc), hint=exc.hint)) if exc.hint else tr(reason(exc))
    return " ".join(text.split("\n"))


@click.command("nightly", help=_("""Fetch what is new and import the whole inbox, under one lock: the job for cron.

    Imports what was just fetched and whatever an earlier run left in the inbox, even when
    the fetch fails. Prints nothing on a quiet night or when all went well (stdout stays
    empty); one line on stderr per thing that needs a human. Exits with the code of the
    first failure.
    """))
@click.option("--wait", type=click.FloatRange(min=0), default=0, metavar="SECONDS", help=_("Wait for another run's lock."))
@pass_context
def nightly_cmd(ctx: Context, wait):
    from cns_exchange import console
    from cns_exchange.documents.schemas import kind_word
    from cns_exchange.transport import nightly
    from cns_exchange.transport.nightly import ImportFailure

    settings, remote, connect = ctx.transport()
    validator = ctx.validator()
    with console.progress(None, _("fetching"), ctx.show_progress) as advance:
        def fetched(item):
            advance(1)
            _say_fetched(ctx, item)

        def imported(outcome):
            if ctx.verbose and not isinstance(outcome, ImportFailure) and outcome.status != "unreadable":
                done = (_("{file}: already imported, nothing changed") if outcome.status == "already-imported"
                        else _("{file}: imported ({kind})"))
                console.print_line(done.format(file=outcome.name, kind=kind_word(outcome.kind)))

        report = nightly.run_night(settings.database_path(), wait, _fetcher(ctx, settings, remote, connect),
                                   settings.local_dir("inbox"), validator, settings.local_dir("archive"),
                                   settings.local_dir("errors"), on_fetched=fetched, on_imported=imported)
    # What needs a human, one line each, in the order it happened.
    _report_fetch(report.fetch)
    if report.fetch_error is not None:
        console.print_line(_("error: {error}").format(error=_one_line(report.fetch_error)), style="red")
    for outcome in report.imports:
        _report_import(outcome)
    for note in report.unmatched:
        console.print_line(_("note: {note}").format(note=note), style="yellow")
    return report.exit_code


def _report_import(outcome) -> None:
    """The lines nightly prints for one file of the inbox: an error, a warning, what changed."""
    from cns_exchange import console
    from cns_exchange.transport.nightly import ImportFailure

    if isinstance(outcome, ImportFailure):
        console.print_line(_("error: {file}: not imported: {error}").format(file=outcome.path.name, error=_one_line(outcome.error)),
                           style="red")
    elif outcome.status == "unreadable":
        why = outcome.warnings[0]
        console.print_line(_("error: {file}: not imported, cannot be read ({code}: {message}); moved to {folder} (see .why.txt)")
                           .format(file=outcome.name, code=why.code, message=why.message, folder=outcome.moved_to), style="red")
    else:
        if outcome.status == "imported" and outcome.warnings:
            first = outcome.warnings[0]
            count = len(outcome.warnings)
            line = (ngettext("warning: {file}: imported with a warning: line {line} {code}: {message}; all of them: cnsx import --no-db {path}",
                             "warning: {file}: imported with {n} warnings, the first: line {line} {code}: {message}; all of them: cnsx import --no-db {path}",
                             count) if first.line else
                    ngettext("warning: {file}: imported with a warning: {code}: {message}; all of them: cnsx import --no-db {path}",
                             "warning: {file}: imported with {n} warnings, the first: {code}: {message}; all of them: cnsx import --no-db {path}",
                             count))
            console.print_line(line.format(file=outcome.name, n=count, line=first.line, code=first.code, message=first.message,
                                           path=outcome.moved_to), style="yellow")
        for notice in outcome.notices:  # what the import changed, said once (as cnsx import says it)
            console.print_line(_("note: {file}: {note}").format(file=outcome.name, note=notice), style="yellow")


@click.command("hostkey", help=_("""Print the host-key fingerprints a server offers, to check with the CNS and pin.

    Connects without authenticating; prints `host_key = "SHA256:..."` lines for the config.
    """))
@click.argument("address", metavar="HOST[:PORT]")
def hostkey_cmd(address):
    from cns_exchange.transport import parse_address
    from cns_exchange.transport.sftp import fingerprint, server_keys

    host, port = parse_address(address)
    keys = server_keys(host, port)
    if not keys:
        raise TransportFatalError(_("{address}: the server offered no host key").format(address=address), _("check the address"))
    for key in keys:
        sys.stdout.write(f"{key.get_name()} {fingerprint(key)}\n")
    sys.stdout.write(f'# pin one in the profile: host_key = "{fingerprint(keys[0])}"\n')
