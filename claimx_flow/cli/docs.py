"""``python -m claimx_flow.cli.docs [PATH]``: write ``docs/cli.md`` from the ``claimx`` app.

Walks the click command tree (loading every command, the lab's too: this is the one place that
does) and writes each command and sub-command with its usage, its help, and each argument and
option with its own help and default. A test regenerates the page and compares, so the page is
never older than the code.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from typer import _click as click
from typer.core import TyperArgument, TyperGroup, TyperOption

from claimx_flow.cli import COMMANDS, app, load_command

DEFAULT_PATH = Path("docs/cli.md")

HEADER = """\
# The `claimx` command

Every command, sub-command, argument and option of `claimx`, with its help. Generated from the
code by `python -m claimx_flow.cli.docs` (a test keeps it current): do not edit it by hand.

Conventions, the same on every command: read commands take `--output table|json` (`-o`; json
is one document on stdout, progress and warnings go to stderr); destructive commands show their
plan and ask, take `--yes` for scripts, and refuse without a terminal unless given `--yes`;
`claimx --version` prints the installed version; a known failure is one `error:` line on stderr
and exit code 2.
"""


def render() -> str:
    """The whole page."""
    root = typer.main.get_command(app)
    root_ctx = click.Context(root, info_name="claimx")
    sections = [HEADER, _section(root, root_ctx, level=2)]
    for name in COMMANDS:
        command = load_command(name)
        ctx = click.Context(command, info_name=name, parent=root_ctx)
        sections.extend(_sections(command, ctx, level=2))
    return "\n".join(sections).rstrip() + "\n"


def _sections(command: click.Command, ctx: click.Context, level: int) -> Iterator[str]:
    yield _section(command, ctx, level)
    if isinstance(command, TyperGroup):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _sections(sub, click.Context(sub, info_name=name, parent=ctx), level + 1)


def _section(command: click.Command, ctx: click.Context, level: int) -> str:
    path = ctx.command_path
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines = [f"{'#' * level} `{path}`", "", f"```\n{usage}\n```", ""]
    text = _clean(command.help)
    if text:
        lines += [text, ""]
    epilog = _clean(command.epilog)
    if epilog and epilog not in text:
        lines += [epilog, ""]
    items = [_param(param, ctx) for param in command.get_params(ctx) if _shown(param)]
    if isinstance(command, TyperGroup):
        names = [
            n
            for n in command.list_commands(ctx)
            if not getattr(command.get_command(ctx, n), "hidden", False)
        ]
        if names:
            items.append("- commands: " + ", ".join(f"`{n}`" for n in names))
    if items:
        lines += [*items, ""]
    return "\n".join(lines)


def _shown(param: click.Parameter) -> bool:
    return not getattr(param, "hidden", False) and param.name != "help"


def _param(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, TyperOption):
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        kind = "" if param.is_flag else f" `{_metavar(param)}`"
    else:
        names = f"`{(param.name or '').upper()}`"
        kind = ""
    notes = []
    help_text = _clean(getattr(param, "help", None))
    if help_text:
        notes.append(" ".join(help_text.split()))
    if param.required:
        notes.append("Required.")
    default = _default(param)
    if default is not None:
        notes.append(f"Default: `{default}`.")
    if param.multiple:
        notes.append("Repeatable.")
    return f"- {names}{kind}: {' '.join(notes)}".rstrip(": ")


_TYPE_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH", datetime: "DATETIME"}


def _metavar(param: TyperOption | TyperArgument) -> str:
    described = param.type_descriptor
    if described.choices:
        return "|".join(str(getattr(c, "value", c)) for c in described.choices)
    annotation: Any = described.annotation
    if get_origin(annotation) in (list, tuple):
        annotation = (get_args(annotation) or (str,))[0]
    return _TYPE_NAMES.get(annotation, "VALUE")


def _default(param: click.Parameter) -> str | None:
    value = param.default
    if callable(value) or value is None or value is False or value in ((), []):
        return None
    if getattr(param, "show_default", None) is False:  # hidden from --help: a secret, say
        return None
    if isinstance(param, TyperOption) and param.is_flag and value is True:
        return param.opts[0]
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or None
    return str(value)


def _clean(text: str | None) -> str:
    return inspect.cleandoc(text).strip() if text else ""


def main(argv: list[str] | None = None) -> None:
    """Write the page to the path given (default ``docs/cli.md``), or ``-`` for stdout."""
    args = sys.argv[1:] if argv is None else argv
    page = render()
    target = args[0] if args else str(DEFAULT_PATH)
    if target == "-":
        sys.stdout.write(page)
        return
    Path(target).write_text(page)


if __name__ == "__main__":
    main()
