"""cnsx export: the practice database for people outside cnsx (the accountant)."""

from __future__ import annotations

import sys

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import summary
from cns_exchange.errors import UsageError
from cns_exchange.issues import plural


@click.group("export")
def export_group():
    """Export the practice database for people outside cnsx (the accountant)."""


@export_group.command("accounting")
@click.option("--month", metavar="YYYY-MM", help="The sessions of that month.")
@click.option("--from", "start", metavar="YYYY-MM-DD", help="The sessions from that day on (included).")
@click.option("--to", "end", metavar="YYYY-MM-DD", help="The sessions up to that day (included).")
@click.option("--db", "db", metavar="PATH", help="The practice database (default: the profile's database).")
@click.option("-o", "--output", metavar="FILE.csv", help="Write to a new file (0600, never over one) instead of stdout.")
@pass_context
def export_accounting_cmd(ctx: Context, month, start, end, db, output):
    """One CSV row per billed session, for the accountant: fee note, patient, dates, gross,
    patient share, CNS share, paid, disputed, payment date and bank reference.

    The CSV opens in Excel or LibreOffice set to French: UTF-8 with a byte order mark, ';'
    between cells, amounts with a decimal comma; no cell can run as a formula.
    """
    from cns_exchange.fsutil import new_output, write_new
    from cns_exchange.rows.csvout import utf8_text
    from cns_exchange.store import database, export

    within = export.period(month, start, end)
    target = new_output("-o", output) if output and output != "-" else None
    conn = database.connect(ctx.existing_database(db))

    def draw(stream) -> int:
        with utf8_text(stream) as text:
            return export.write_accounting_csv(export.accounting_rows(conn, within), text)

    try:
        if target is None:
            count = draw(sys.stdout.buffer)
        else:
            try:
                count = write_new(target, draw)
            except FileExistsError:
                raise UsageError(f"-o {output}: a file of that name appeared; cnsx never overwrites a file",
                                 "remove it, or give another name") from None
    finally:
        conn.close()
    summary(ctx, f"{plural(count, 'billed session')} → {output if target else 'stdout'}")
