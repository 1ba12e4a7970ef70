"""cnsx tariffs: the tables the sessions are priced with (show one, list all, add one)."""

from __future__ import annotations

import click

from cns_exchange.cli.context import Context, pass_context
from cns_exchange.cli.output import options, summary, write_json
from cns_exchange.errors import UsageError

tariff_options = options(
    click.option("--date", "day", metavar="YYYY-MM-DD", help="The date whose table to show (default: today)."),
    click.option("--all", "all_tables", is_flag=True, help="List every table, oldest first."),
    click.option("--json", "as_json", is_flag=True, help="Print the table(s) as JSON on stdout."),
)


def _show_tariffs(ctx: Context, day: str | None, all_tables: bool, as_json: bool):
    from datetime import date

    from cns_exchange import clock, console
    from cns_exchange.domain import tariffs
    from cns_exchange.domain.nomenclature import load_nomenclature

    if day is not None and all_tables:
        raise UsageError("--date and --all: one table, or all of them", "give one of them")
    when = clock.day("--date", day) if day is not None else date.today()
    nomenclature = load_nomenclature(ctx.settings.nomenclature_dirs)
    shown = tariffs.all_tables(nomenclature, when) if all_tables else tariffs.in_force(nomenclature, when)
    if as_json:
        write_json(shown)
    elif all_tables:
        console.print_tariff_tables(shown["tables"])
    else:
        console.print_tariff_table(shown["table"], f"tariff table in force on {shown['date']}")
    if shown["out_of_date"]:
        newest = shown["newest"]
        console.print_warning(f"the newest tariff table, {newest['file']}, is in force since {newest['valid_from']}: on "
                              f"{shown['date']} it is more than {shown['current_for_months']} months old and may be "
                              "out of date (builds and validate warn: NOM05)",
                              "add the table in force with cnsx tariffs add (docs/rules.md, Tariffs)")


@click.group("tariffs", invoke_without_command=True)
@tariff_options
@click.pass_context
def tariffs_group(click_ctx: click.Context, day, all_tables, as_json):
    """Show the tariff table in force on a date (default), or add one (cnsx tariffs add).

    Shows where the table comes from (its file and source), since when it is in force, which
    figures are inferred, and the price of each act for an adult and a minor. Warns when the
    newest table is more than 12 months old on that date.
    """
    if click_ctx.invoked_subcommand is None:
        return _show_tariffs(click_ctx.obj, day, all_tables, as_json)
    if day is not None or all_tables or as_json:
        raise UsageError(f"--date, --all and --json are options of cnsx tariffs [show], not of {click_ctx.invoked_subcommand}",
                         f"put them after {click_ctx.invoked_subcommand}, or leave them out")
    return None


@tariffs_group.command("show")
@tariff_options
@pass_context
def tariffs_show_cmd(ctx: Context, day, all_tables, as_json):
    """Show the tariff table in force on a date (the same as cnsx tariffs)."""
    return _show_tariffs(ctx, day, all_tables, as_json)


@tariffs_group.command("add")
@click.option("--valid-from", required=True, metavar="YYYY-MM-DD", help="The first day the new tariffs apply.")
@click.option("--source", required=True, metavar="TEXT", help="Where the figures come from (the CNS letter or the text, with its date).")
@click.option("--price", "prices", multiple=True, metavar="ACT=EUR", help="The price of an act, for every act (e.g. --price ZD11=91.12).")
@click.option("--key-letter", metavar="EUR", help="The key-letter value; the prices are coefficient x value, rounded half up.")
@click.option("--coefficient", "coefficients", multiple=True, metavar="ACT=N",
              help="An act's coefficient, for every act (default: those of the table before, if they are official).")
@click.option("--inferred", is_flag=True, help="Mark the figures as not read from an official text.")
@click.option("--accept-change", is_flag=True, help="Write the table although a price moves by more than 25 % from the table before.")
@click.option("--dry-run", is_flag=True, help="Check and show the table; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the new table as JSON on stdout.")
@pass_context
def tariffs_add_cmd(ctx: Context, valid_from, source, prices, key_letter, coefficients, inferred, accept_change, dry_run,
                    as_json):
    """Add a tariff table to the config folder's nomenclature/ (0600), checked before it is written.

    Give the price of every act (--price ACT=EUR, as a CNS letter lists them), or the
    key-letter value (--key-letter EUR) with the coefficient of every act (--coefficient
    ACT=N). The patient share is that of the table before. A table for the same date is
    never replaced.
    """
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
        console.print_tariff_table(result.table, f"new tariff table from {result.table['valid_from']}")
    for note in result.notes:
        console.print_line(f"note: {note}", style="yellow")
    summary(ctx, f"wrote {result.path}" if result.written else f"dry run: nothing written ({result.path})")
