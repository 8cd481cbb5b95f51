"""``claimx demo``: the pipeline end to end on embedded defaults.

For now it brings up the local stack, bootstraps the topics and shows them; the stages join it
as they land.
"""

from __future__ import annotations

import os

from rich.console import Console

from claimx_flow.cli import stack_cmd, topics_cmd
from claimx_flow.stack import Stack

console = Console()


def demo() -> None:
    """Start the local stack, create every topic and list them."""
    stack_cmd.up()
    for key, value in Stack().live_env().items():
        os.environ.setdefault(key, value)
    topics_cmd.create(partitions=None)
    topics_cmd.list_topics()
    console.print("stop everything with [bold].venv/bin/claimx stack down[/]")
