"""`chartlight feedback report`: what clinicians did with the CDS cards. Registered on the main
CLI (plugin/cli.py) as a group; runs inside the app context like every command."""

from __future__ import annotations

import click
from flask import current_app
from rich.console import Console
from rich.table import Table

from cds_hooks.runtime import runtime_of


@click.group()
def feedback() -> None:
    """Feedback EHRs sent on chartlight's CDS Hooks cards."""


@feedback.command("report")
def feedback_report() -> None:
    """Cards accepted and overridden per service, with the override reasons given."""
    report = runtime_of(current_app).feedback.report()
    console = Console()
    if not report:
        console.print("no feedback received yet")
        return
    table = Table(title="CDS Hooks feedback")
    for column in ("service", "cards", "accepted", "overridden", "with comment", "override reasons"):
        table.add_column(column)
    for row in report:
        reasons = "\n".join(f"{reason}: {count}" for reason, count in row.reasons) or "-"
        table.add_row(row.service_id, str(row.cards), str(row.accepted), str(row.overridden),
                      str(row.with_comment), reasons)
    console.print(table)
