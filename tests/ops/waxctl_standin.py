"""A stand-in for the closed ``waxctl`` binary that knows only what waxctl documents.

It reads the flag tables of tests/ops/fixtures/bytewax_deploy_contract.yaml (each fact there
has its source) and parses a command line the way waxctl's flag library does (``--flag value``,
``--flag=value``, ``-f value``, ``-fvalue``). Any command, alias or flag the contract does not
list, a flag that needs a value and has none, a value of the wrong type, or the wrong number of
positional arguments: exit 2 with a message naming it. Otherwise it appends the parsed call (and
the chart-values file's content, read while it still exists) to ``$WAXCTL_CALLS`` as one JSON
line and exits 0. Installed as ``waxctl`` first on PATH by tests/ops/test_waxctl.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml

CONTRACT = Path(__file__).resolve().parent / "fixtures/bytewax_deploy_contract.yaml"


def fail(message: str) -> NoReturn:
    print(f"waxctl (stand-in): {message}", file=sys.stderr)
    sys.exit(2)


def subcommands(waxctl: dict[str, Any]) -> dict[str, tuple[list[str], list[dict[str, Any]], int]]:
    """Each sub-command: its documented names, its flags and how many positional arguments."""
    return {
        "deploy": (["deploy"], waxctl["deploy_flags"], waxctl["path_argument"]["count"]),
        "list": (waxctl["list"]["command_aliases"], waxctl["list"]["flags"], 0),
        "delete": (waxctl["delete"]["command_aliases"], waxctl["delete"]["flags"], 1),
    }


def check_value(flag: dict[str, Any], value: str, waxctl: dict[str, Any]) -> None:
    if value == "" or value.startswith("-"):
        fail(f"flag needs an argument: {flag['long']}")
    if flag["type"] == "int":
        try:
            int(value)
        except ValueError:
            fail(f'invalid argument "{value}" for "{flag["long"]}" flag: not an int')
    if flag["type"] == "output-format" and value not in waxctl["output_format_values"]:
        fail(f'invalid argument "{value}" for "{flag["long"]}"')
    if flag["long"] == "--image-pull-policy" and value not in waxctl["image_pull_policy_values"]:
        fail(f'invalid argument "{value}" for "{flag["long"]}"')


def parse(
    args: list[str], flags: list[dict[str, Any]], waxctl: dict[str, Any]
) -> tuple[dict[str, list[str]], list[str]]:
    by_long = {f["long"]: f for f in flags}
    by_short = {f["short"]: f for f in flags if f["short"]}
    seen: dict[str, list[str]] = {}
    positionals: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token.startswith("--"):
            name, eq, attached = token.partition("=")
            flag = by_long.get(name)
            if flag is None:
                fail(f"unknown flag: {name}")
        elif token.startswith("-") and len(token) > 1:
            name, attached = token[:2], token[2:]
            eq = "=" if attached else ""
            attached = attached.removeprefix("=")
            flag = by_short.get(name)
            if flag is None:
                fail(f"unknown shorthand flag: {name[1:]!r} in {token}")
        else:
            positionals.append(token)
            continue
        if flag["takes_value"]:
            if eq:
                value = attached
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                fail(f"flag needs an argument: {flag['long']}")
            check_value(flag, value, waxctl)
        else:
            if eq and attached not in ("true", "false"):
                fail(f'invalid argument "{attached}" for "{flag["long"]}" (a boolean flag)')
            value = attached or "true"
        seen.setdefault(flag["long"], []).append(value)
    return seen, positionals


def main(argv: list[str]) -> int:
    contract = yaml.safe_load(CONTRACT.read_text())
    waxctl = contract["waxctl"]
    if not argv or argv[0] not in waxctl["command"]["command_aliases"]:
        fail(f"unknown command {argv[:1]} (documented: {waxctl['command']['command_aliases']})")
    if len(argv) < 2:
        fail("a sub-command is needed")
    name = next(
        (n for n, (aliases, _, _) in subcommands(waxctl).items() if argv[1] in aliases), None
    )
    if name is None:
        fail(f'unknown command "{argv[1]}" for "waxctl dataflow"')
    _, flags, count = subcommands(waxctl)[name]
    seen, positionals = parse(argv[2:], [*flags, *waxctl["global_flags"]], waxctl)
    if len(positionals) != count:
        fail(f"{name} takes {count} positional argument(s), got {positionals}")
    call: dict[str, Any] = {
        "command": name,
        "argv": argv,
        "flags": seen,
        "positionals": positionals,
        "cwd": os.getcwd(),
    }
    if name == "deploy":
        path = Path(positionals[0])
        if not path.is_file():
            fail(f"{path}: no such file (waxctl ships PATH in a ConfigMap)")
        if "--chart-values-file" in seen:
            (values,) = seen["--chart-values-file"]
            call["chart_values"] = yaml.safe_load(Path(values).read_text())
    with open(os.environ["WAXCTL_CALLS"], "a", encoding="utf-8") as calls:
        calls.write(json.dumps(call) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
