"""cnsx config: write the starter configuration."""

from __future__ import annotations

import click

from cns_exchange.cli.context import Context, pass_context


@click.group("config")
def config_group():
    """Write or show the configuration."""


@config_group.command("init")
@click.option("--provider", default="000000", metavar="CODE", help="The practice's provider code to write in.")
@pass_context
def config_init_cmd(ctx: Context, provider):
    """Write a commented starter config file (0600); never replaces an existing one."""
    from cns_exchange import console
    from cns_exchange.config import config_file, write_starter_config

    path = config_file(ctx.config_path)
    write_starter_config(path, provider)
    console.print_line(f"wrote {path}")
