"""cnsx print: a billing file as PDFs (each patient's fee note, the summary statement)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import billed, options, summary
from cns_exchange.errors import UsageError
from cns_exchange.i18n import _, ngettext


@click.group("print", help=_("""Print a billing file as PDFs: each patient's fee note, the summary statement.

    The billing file is validated first (as cnsx validate does): nothing is printed from an
    invalid file. Every PDF names the billing file and its SHA-256 (footer and metadata).
    """))
def print_group():
    """The group of the print commands."""


print_options = options(
    click.argument("billing", metavar="BILLING.xml"),
    click.option("--created", metavar="DATETIME", help=_("Creation date of the PDFs (default: now, or $SOURCE_DATE_EPOCH).")),
)


def _stdin_if(name: str):
    """stdin for '-' (only then: never implicitly), else None."""
    return sys.stdin.buffer if name == "-" else None


@print_group.command("fee-notes", help=_("""Print one A4 PDF per fee note of BILLING.xml (for the patient; '-' = stdin).

    Each shows the practice's provider code, the patient, the certificate, every session
    (date, act, label, gross, patient share, CNS share) and the totals. Files are named
    LAST_FIRST_YYYY-MM-DD_SENDER_FAC_YYYYMMDD_SEQUENCE_MHnnnn.pdf (the patient, the last
    session's day, the billing file, the note's number); none is ever overwritten.
    """))
@print_options
@click.option("-o", "--output", metavar="DIR", required=True, help=_("Folder for the PDFs (created 0700 if missing)."))
@click.option("--matricule", type=click.Choice(["full", "masked"]), default="full", show_default=True,
              help=_("Print the patient's matricule in full, or masked but for its last 4 digits."))
@pass_context
def print_fee_notes_cmd(ctx: Context, billing, created, output, matricule):
    from cns_exchange.clock import creation_time
    from cns_exchange.pdf import printing

    if output == "-":
        raise UsageError(_("-o -: fee notes are one PDF each, they go to a folder"), _("give -o a folder"))
    printed = creation_time(created)
    codes, _unused, _unused = ctx.tables()
    with printing.open_billing(billing, _stdin_if(billing), ctx.validator()) as source:
        written = printing.print_fee_notes(source, Path(output), codes, printed, mask=matricule == "masked",
                                           practice=ctx.settings.practice, names=_request_names(ctx))
    # the folder, not the files: their names are the patients'
    summary(ctx, ngettext("{n} fee note → {folder}/", "{n} fee notes → {folder}/", len(written))
            .format(n=len(written), folder=output.rstrip("/")))


def _request_names(ctx: Context) -> dict[str, tuple[str, str]]:
    """The patients' names by matricule from the practice database's requests, for fee notes
    that name no one; none without a database (printing needs none)."""
    conn = ctx.practice_database(None)
    if conn is None:
        return {}
    from cns_exchange.store import database

    try:
        return database.request_names(conn)
    finally:
        conn.close()


@print_group.command("summary", help=_("""Print the summary statement (relevé récapitulatif) of BILLING.xml as an A4 PDF ('-' = stdin).

    Header data, one row per fee note, and the totals, which are the XML header's to the cent.
    """))
@print_options
@click.option("-o", "--output", metavar="FILE.pdf", required=True,
              help=_("The PDF to write (a new file), a folder for its conventional name, or '-' for stdout."))
@click.option("--matricule", type=click.Choice(["full", "masked"]), default="masked", show_default=True,
              help=_("Print the patients' matricules in full, or masked but for their last 4 digits."))
@pass_context
def print_summary_cmd(ctx: Context, billing, created, output, matricule):
    from cns_exchange.clock import creation_time
    from cns_exchange.fsutil import new_output
    from cns_exchange.pdf import printing

    printed = creation_time(created)
    if output == "-" and sys.stdout.isatty():
        raise UsageError(_("-o -: stdout is a terminal, not the place for a PDF"), _("redirect it (> recap.pdf) or give a file name"))
    target = None if output == "-" else new_output("-o", output, into_folder=True)
    codes, _unused, _unused = ctx.tables()
    with printing.open_billing(billing, _stdin_if(billing), ctx.validator()) as source:
        path, totals = printing.print_summary(source, target, sys.stdout.buffer if target is None else None, codes,
                                              printed, mask=matricule == "masked", practice=ctx.settings.practice,
                                              names=_request_names(ctx))
    summary(ctx, _("{what} → {where}").format(what=billed(totals.notes, totals.sessions, totals.gross, totals.cns),
                                             where=path or "stdout"))
