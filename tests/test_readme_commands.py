"""Every `tinyhil ...` command the README and docs/ show parses against today's CLI.

A renamed or removed option would otherwise live on in the documentation, where
a newcomer copies it. The commands are parsed, never run: click's make_context
checks options, their values' types and the arguments' count, and the commands'
own parse_args refuses the old spellings (`--lat-target`, ...). Nothing boots a
board or trains a network here.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

# typer (0.29) carries its own click: its commands are typer._click classes and raise
# typer._click's UsageError, which the `click` package's classes would not catch
from typer._click import Context
from typer._click.exceptions import BadParameter, ClickException, UsageError
from typer.core import TyperGroup

from tinyhil.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)\s*$")


def sh_blocks(path: Path):
    """(line number, text) of each logical line of the page's ```sh blocks:
    backslash continuations joined, comments dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    in_sh, pending, start = False, "", 0
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line.strip())
        if fence:
            in_sh = not in_sh and fence.group(1) == "sh"
            continue
        if not in_sh:
            continue
        if not pending:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, pending + stripped
        pending = ""


def tinyhil_commands(path: Path):
    """(line, argv after `tinyhil`) of every tinyhil command in the page's sh blocks."""
    for number, line in sh_blocks(path):
        words = shlex.split(line, comments=True)
        # a line is a sequence of commands joined by && (or ;)
        command: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", ";", "||"):
                while command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
                    command = command[1:]  # VAR=value before the program
                if command and Path(command[0]).name == "tinyhil":
                    yield number, command[1:]
                elif command[1:3] == ["-m", "tinyhil"] and Path(command[0]).name.startswith("python"):
                    yield number, command[3:]
                command = []
            else:
                command.append(word)


def all_commands():
    for page in PAGES:
        for number, argv in tinyhil_commands(page):
            yield pytest.param(page, number, argv, id=f"{page.relative_to(ROOT)}:{number}")


ROOT_COMMAND = typer.main.get_command(app)


def parses(argv: list[str], tmp_path: Path) -> None:
    """Walk the group tree as click would and make the leaf command's context;
    raises UsageError (or BadParameter) when the command would not parse."""
    command, args, names = ROOT_COMMAND, list(argv), ["tinyhil"]
    while isinstance(command, TyperGroup):
        # the group's own flags (tinyhil --verbose) come before the subcommand
        own = {name for param in command.params for name in param.opts}
        while args and args[0].startswith("-"):
            option = args.pop(0)
            if option not in own:
                raise UsageError(f"no such option of {' '.join(names)}: {option}")
        if not args:
            raise UsageError(f"{' '.join(names)} needs a command")
        name = args.pop(0)
        sub = command.get_command(Context(command), name)
        if sub is None:
            raise UsageError(f"no such command: {' '.join(names)} {name}")
        command, names = sub, [*names, name]
    # `$TLS`: the shell variable the lab section sets before its commands
    args = [a for arg in args for a in (TLS if arg == "$TLS" else [arg])]
    try:
        command.make_context(" ".join(names), list(args), resilient_parsing=False).close()
    except BadParameter as error:
        # a file the page names as an example (your model, rows measured elsewhere)
        # that a Path(exists=True) would want here: parse again with stand-ins
        if "does not exist" not in error.format_message():
            raise
        args = [stand_in(arg, tmp_path) for arg in args]
        command.make_context(" ".join(names), args, resilient_parsing=False).close()


TLS = ["--tls-ca-file", "ca.pem", "--tls-cert", "me.pem", "--tls-key", "me.key"]


def stand_in(arg: str, tmp_path: Path) -> str:
    """A temporary file (a directory for `NAME/`) in place of a path argument that
    does not exist here; options and existing paths stay as written."""
    if arg.startswith("-") or ("/" not in arg and "." not in arg) or (ROOT / arg).exists():
        return arg
    path = tmp_path / arg.strip("./").replace("/", "_")
    if arg.endswith("/"):
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.touch()
    return str(path)


def test_the_pages_show_commands():
    found = list(all_commands())
    assert len(found) >= 30, f"only {len(found)} tinyhil commands in README.md and docs/*.md"


@pytest.mark.parametrize("page, line, argv", list(all_commands()))
def test_command_parses(page, line, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    try:
        parses(argv, tmp_path)
    except ClickException as error:  # UsageError, BadParameter, NoSuchOption
        pytest.fail(f"{page.relative_to(ROOT)}:{line}: tinyhil {' '.join(argv)}\n  {error.format_message()}")


def test_make_demo_is_the_makefile_demo_target():
    """The README's `make demo` command is the one the Makefile runs."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    target = " ".join(recipe.replace("\\\n", " ").replace("$(BIN)/", ".venv/bin/").split())
    shown = [" ".join(line.split()) for _, line in sh_blocks(ROOT / "README.md")]
    assert target in shown, f"README.md does not show the Makefile's demo command:\n  {target}"


def test_a_bogus_option_fails(tmp_path):
    """The check above is not vacuous: a made-up or renamed option does not parse."""
    for argv in (["search", "micronas", "--data", "basic_motions", "--no-such-option"],
                 ["search", "tinytnas", "--ram", "20KB"],
                 ["run", "examples/conv1d_har.tflite", "--repeat", "3"]):
        with pytest.raises(UsageError):
            parses(argv, tmp_path)
