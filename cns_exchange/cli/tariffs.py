"""cnsx tariffs: the tables the sessions are priced with (show one, list all, add one)."""

from __future__ import annotations

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import options, summary, write_json
from cns_exchange.errors import UsageError
from cns_exchange.i18n import _

tariff_options = options(
    click.option("--date", "day", metavar="YYYY-MM-DD", help=_("The date whose table to show (default: today).")),
    click.option("--all", "all_tables", is_flag=True, help=_("List every table, oldest first.")),
    click.option("--json", "as_json", is_flag=True, help=_("Print the table(s) as JSON on stdout.")),
)


def _show_tariffs(ctx: Context, day: str | None, all_tables: bool, as_json: bool):
    from datetime import date

    from cns_exchange import clock, console
    from cns_exchange.domain import tariffs
    from cns_exchange.domain.nomenclature import load_nomenclature

    if day is not None and all_tables:
        raise UsageError(_("--date and --all: one table, or all of them"), _("give one of them"))
    when = clock.day("--date", day) if day is not None else date.today()
    nomenclature = load_nomenclature(ctx.settings.nomenclature_dirs)
    shown = tariffs.all_tables(nomenclature, when) if all_tables else tariffs.in_force(nomenclature, when)
    if as_json:
        write_json(shown)
    elif all_tables:
        console.print_tariff_tables(shown["tables"])
    else:
        console.print_tariff_table(shown["table"], _("tariff table in force on {day}").format(day=when))
    if shown["out_of_date"]:
        newest = shown["newest"]
        console.print_warning(_("the newest tariff table, {file}, is in force since {start}: on {day} it is more than "
                                "{months} months old and may be out of date (builds and validate warn: NOM05)").format(
                                  file=newest["file"], start=date.fromisoformat(newest["valid_from"]), day=when,
                                  months=shown["current_for_months"]),
                              _("add the table in force with cnsx tariffs add (docs/rules.md, Tariffs)"))


@click.group("tariffs", invoke_without_command=True, help=_("""Show the tariff table in force on a date (default), or add one (cnsx tariffs add).

    Shows where the table comes from (its file and source), since when it is in force, which
    figures are inferred, and the price of each act for an adult and a minor. Warns when the
    newest table is more than 12 months old on that date.
    """))
@tariff_options
@click.pass_context
def tariffs_group(click_ctx: click.Context, day, all_tables, as_json):
    if click_ctx.invoked_subcommand is None:
        return _show_tariffs(click_ctx.obj, day, all_tables, as_json)
    if day is not None or all_tables or as_json:
        raise UsageError(_("--date, --all and --json are options of cnsx tariffs [show], not of {command}").format(
                             command=click_ctx.invoked_subcommand),
                         _("put them after {command}, or leave them out").format(command=click_ctx.invoked_subcommand))
    return None


@tariffs_group.command("show", help=_("Show the tariff table in force on a date (the same as cnsx tariffs)."))
@tariff_options
@pass_context
def tariffs_show_cmd(ctx: Context, day, all_tables, as_json):
    return _show_tariffs(ctx, day, all_tables, as_json)


@tariffs_group.command("add", help=_("""Add a tariff table to the config folder's nomenclature/ (0600), checked before it is written.

    Give the price of every act (--price ACT=EUR, as a CNS letter lists them), or the
    key-letter value (--key-letter EUR) with the coefficient of every act (--coefficient
    ACT=N). The patient share is that of the table before. A table for the same date is
    never replaced.
    """))
@click.option("--valid-from", required=True, metavar="YYYY-MM-DD", help=_("The first day the new tariffs apply."))
@click.option("--source", required=True, metavar="TEXT",
              help=_("Where the figures come from (the CNS letter or the text, with its date)."))
@click.option("--price", "prices", multiple=True, metavar="ACT=EUR",
              help=_("The price of an act, for every act (e.g. --price ZD11=91.12)."))
@click.option("--key-letter", metavar="EUR",
              help=_("The key-letter value; the prices are coefficient x value, rounded half up."))
@click.option("--coefficient", "coefficients", multiple=True, metavar="ACT=N",
              help=_("An act's coefficient, for every act (default: those of the table before, if they are official)."))
@click.option("--inferred", is_flag=True, help=_("Mark the figures as not read from an official text."))
@click.option("--accept-change", is_flag=True,
              help=_("Write the table although a price moves by more than 25 % from the table before."))
@click.option("--dry-run", is_flag=True, help=_("Check and show the table; write nothing."))
@click.option("--json", "as_json", is_flag=True, help=_("Print the new table as JSON on stdout."))
@pass_context
def tariffs_add_cmd(ctx: Context, valid_from, source, prices, key_letter, coefficients, inferred, accept_change, dry_run,
                    as_json):
    from datetime import date

    from cns_exchange import console
    from cns_exchange.domain import tariffs
    from cns_exchange.domain.nomenclature import load_codes, load_nomenclature

    dirs = ctx.settings.nomenclature_dirs
    result = tariffs.add_table(load_nomenclature(dirs), load_codes(), dirs[0], valid_from, source, prices, key_letter,
                               coefficients, inferred, accept_change, dry_run, date.today())
    if as_json:
        write_json({"path": str(result.path), "written": result.written, "table": result.table})
    else:
        console.print_tariff_table(result.table, _("new tariff table from {start}").format(
            start=date.fromisoformat(result.table["valid_from"])))
    for note in result.notes:
        console.print_line(_("note: {note}").format(note=note), style="yellow")
    summary(ctx, _("wrote {path}").format(path=result.path) if result.written
            else _("dry run: nothing written ({path})").format(path=result.path))
