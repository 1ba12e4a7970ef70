"""cnsx export: the practice database for people outside cnsx (the accountant)."""

from __future__ import annotations

import sys

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import summary
from cns_exchange.errors import UsageError
from cns_exchange.i18n import _, ngettext


@click.group("export", help=_("Export the practice database for people outside cnsx (the accountant)."))
def export_group():
    pass


@export_group.command("accounting", help=_("""One CSV row per billed session, for the accountant: fee note, patient, dates, gross,
    patient share, CNS share, paid, disputed, payment date and bank reference.

    The CSV opens in Excel or LibreOffice set to French: UTF-8 with a byte order mark, ';'
    between cells, amounts with a decimal comma; no cell can run as a formula.
    """))
@click.option("--month", metavar="YYYY-MM", help=_("The sessions of that month."))
@click.option("--from", "start", metavar="YYYY-MM-DD", help=_("The sessions from that day on (included)."))
@click.option("--to", "end", metavar="YYYY-MM-DD", help=_("The sessions up to that day (included)."))
@click.option("--db", "db", metavar="PATH", help=_("The practice database (default: the profile's database)."))
@click.option("-o", "--output", metavar="FILE.csv", help=_("Write to a new file (0600, never over one) instead of stdout."))
@pass_context
def export_accounting_cmd(ctx: Context, month, start, end, db, output):
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
                raise UsageError(_("-o {output}: a file of that name appeared; cnsx never overwrites a file").format(
                                     output=output), _("remove it, or give another name")) from None
    finally:
        conn.close()
    summary(ctx, ngettext("{n} billed session → {target}", "{n} billed sessions → {target}", count).format(
        n=count, target=output if target else "stdout"))
