"""cnsx doctor: check the configuration, permissions, connection, host key, login and folders."""

from __future__ import annotations

import click

from cns_exchange.cli.context import Context, pass_context, prompt_secret
from cns_exchange.errors import ExitCode
from cns_exchange.i18n import _, reason


@click.command("doctor", help=_("""Check the configuration, permissions, connection, host key, login and remote folders.

    Prints one line per check and what to fix for each failure; exits with the code of the
    first failure (4 configuration, 5 retryable, 6 fatal), 0 if all is well.
    """))
@pass_context
def doctor_cmd(ctx: Context):
    from cns_exchange import console
    from cns_exchange.doctor import diagnose

    def report(label, detail, error) -> None:
        if error is not None:
            console.print_line(_("✗ {check}: {error}").format(check=label, error=reason(error)), style="red")
            if error.hint:
                console.print_line(_("    fix: {hint}").format(hint=error.hint))
        elif detail:
            console.print_line(_("✓ {check}: {detail}").format(check=label, detail=detail), style="green")
        else:
            console.print_line(_("✓ {check}").format(check=label), style="green")

    failures = diagnose(lambda: ctx.settings, ctx.tables, prompt_secret, report)
    return failures[0].exit_code if failures else ExitCode.OK
