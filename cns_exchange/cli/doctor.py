"""cnsx doctor: check the configuration, permissions, connection, host key, login and folders."""

from __future__ import annotations

import click

from cns_exchange.cli.context import Context, pass_context, prompt_secret
from cns_exchange.errors import ExitCode


@click.command("doctor")
@pass_context
def doctor_cmd(ctx: Context):
    """Check the configuration, permissions, connection, host key, login and remote folders.

    Prints one line per check and what to fix for each failure; exits with the code of the
    first failure (4 configuration, 5 retryable, 6 fatal), 0 if all is well.
    """
    from cns_exchange import console
    from cns_exchange.doctor import diagnose

    def report(label, detail, error) -> None:
        if error is not None:
            console.print_line(f"✗ {label}: {error.message}", style="red")
            if error.hint:
                console.print_line(f"    fix: {error.hint}")
        else:
            console.print_line(f"✓ {label}" + (f": {detail}" if detail else ""), style="green")

    failures = diagnose(lambda: ctx.settings, ctx.tables, prompt_secret, report)
    return failures[0].exit_code if failures else ExitCode.OK
