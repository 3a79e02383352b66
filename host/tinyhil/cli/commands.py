"""The typer classes every tinyhil command is made with: one vocabulary and one look.

- help text reflowed: a docstring's hard line breaks are the source's, not
  the reader's (`tinyhil --help` lists each command's first paragraph on a line);
- flags shown as flags (`--strict`, never `--strict <bool>`), arguments by
  their name in capitals (`RUN_DIR`, never `{run_dir}`);
- an option spelled the old way (`--lat-target`) fails naming the one that
  replaced it (`--latency`), before anything runs.
"""
from __future__ import annotations

import inspect

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

# Old spelling -> the one every command uses now, with an example of its value.
RENAMED = {
    "--lat-target": "--latency 40ms", "--mem-target": "--memory 32KB", "--ram": "--memory 32KB",
    "--flash-target": "--flash 64KB", "--macs-target": "--macs 60k", "--budget": "--time-budget 2m",
    "--repeat": "--repeats 20", "--n-archs": "--candidates 100",
}


def reflow(text: str | None) -> str | None:
    """Each paragraph of `text` (blank-line separated) on one line; a paragraph
    starting with click's \\b marker keeps its lines. Square brackets are text,
    not rich markup (`[default: ...]` would vanish)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return escape("\n\n".join(p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
                              for p in paragraphs))


def shown_plainly(params) -> None:
    """Flags without a value's type (typer would show `<bool>`), arguments by their name in capitals,
    help as text (`[default: ...]` is no rich markup)."""
    for param in params:
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if param.param_type_name == "argument" and param.metavar is None:
            param.metavar = param.name.upper()
        elif getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


def renamed_message(old: str, new: str) -> str:
    name, _, example = new.partition(" ")
    return f"{old} is now {name}" + (f" (e.g. {name} {example})" if example else "")


class _Look:
    """What commands and groups share: help reflowed, parameters shown plainly,
    -h/--help without a metavar."""

    def __init__(self, *args, help: str | None = None, **kwargs):
        super().__init__(*args, help=reflow(help), **kwargs)
        shown_plainly(self.params)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Command(_Look, TyperCommand):
    """A tinyhil command: see the module's docstring."""

    renamed: dict[str, str] = RENAMED

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        own = {name for param in self.params for name in (*param.opts, *param.secondary_opts)}
        for arg in args:
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if name in self.renamed and name not in own:
                ctx.fail(renamed_message(name, self.renamed[name]))
        return super().parse_args(ctx, args)


class Group(_Look, TyperGroup):
    """A group of tinyhil commands (`tinyhil`, `tinyhil search`, ...): help reflowed."""


class App(typer.Typer):
    """typer.Typer making its commands and groups with the classes above;
    `command(renamed={old: "new example"})` adds a command's own old spellings."""

    def __init__(self, **kwargs):
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("no_args_is_help", True)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, *, cls=None, renamed: dict[str, str] | None = None, **kwargs):
        if renamed:
            cls = type("Command", (cls or Command,), {"renamed": {**RENAMED, **renamed}})
        return super().command(name, cls=cls or Command, **kwargs)
