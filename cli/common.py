"""What every command shares: logging, error handling, JSON output, the rich console."""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from contextlib import contextmanager
from typing import Any

import click
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from typer.core import TyperGroup

from embedgenre.errors import EmbedgenreError, EmbedgenreWarning

# results go to stdout; piped output gets room for full encoder names in tables
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)  # logs, progress and errors go to stderr


# What a terminal would act on instead of showing: control characters (tab and newline aside),
# text-direction marks, embeddings, overrides and isolates, line and paragraph separators.
_UNSAFE_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def plain(text: object) -> str:
    """``text`` (from a catalog, an index, a file or an error) safe to print: each character a
    terminal would act on (``\\x1b`` of an escape sequence, a direction override) is shown as its
    ``\\x..``/``\\u....`` escape instead."""
    return _UNSAFE_RE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def safe(text: object) -> str:
    """``text`` safe to print inside rich markup: :func:`plain`, and ``[...]`` shown as written."""
    return escape(plain(text))


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return plain(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    """Send library logs to stderr; only the CLI configures handlers."""
    root = logging.getLogger("embedgenre")
    root.handlers.clear()
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    handler.setFormatter(_PlainFormatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # warnings.warn(...) from the library (e.g. a catalog decoded as cp1252) become one log line
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.handlers = [handler]
    py_warnings.propagate = False
    if warnings.showwarning is not _show_warning:
        _to_log[:] = [warnings.showwarning]
        warnings.showwarning = _show_warning


_to_log: list = []  # logging's showwarning, which _show_warning hands other warnings to


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning as one line naming the option at fault; others as logging has them."""
    if isinstance(message, EmbedgenreWarning):
        where = option_of(*_running[-1], message.param) if _running else None
        text = f"{where}: {message}" if where else str(message)
        logging.getLogger("py.warnings").warning("%s", text)
    elif _to_log:
        _to_log[0](message, category, filename, lineno, file, line)


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout (the shape of each command's is in README.md)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def fail(message: str) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise (exit status 1)."""
    err_console.print("[bold red]error:[/] " + safe(message), highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


# (root group, its context) of the command running, for naming options in warnings
_running: list[tuple[Any, Any]] = []


class ErrorHandlingGroup(TyperGroup):
    """Root command group: a user-fixable error prints one line to stderr and exits 1; the
    library's warnings print one line each (no source location), naming the option at fault.
    Help shows no value placeholder for on/off flags (they take no value)."""

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: D102
        _hide_flag_metavars(self)
        return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context):  # noqa: D102
        _running.append((self, ctx))
        try:
            return super().invoke(ctx)
        except EmbedgenreError as e:
            where = option_of(self, ctx, e.param)
            message = f"{where}: {e}" if where else str(e)
            err_console.print(
                "[bold red]error:[/] " + safe(message), highlight=False, soft_wrap=True
            )
            raise typer.Exit(code=1) from None
        finally:
            _running.pop()


def _hide_flag_metavars(group) -> None:
    """Give every flag of every command (``--json``, ``--help``) an empty placeholder, which
    help then leaves blank instead of printing ``<bool>``."""
    ctx = group.context_class(group)
    commands = [group]
    while commands:
        command = commands.pop()
        if hasattr(command, "list_commands"):  # a group
            commands += [command.get_command(ctx, name) for name in command.list_commands(ctx)]
        for p in [*command.params, command.get_help_option(ctx)]:
            if p is not None and getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""


# library parameters that a command spells differently (a list in Python, a repeatable option)
_CLI_NAMES = {
    "columns": "column",
    "out_dir": "out",
    "path": "catalog",
    "genres": "genre",
    "exclude_genres": "exclude_genre",
    "image_encoders": "image_encoder",
    "text_encoders": "text_encoder",
}


def option_of(group, ctx, param: str | None) -> str | None:
    """How the command that ran spells the library parameter ``param``: its option
    (``--id``) or argument (``POSTERS``); None when it has no such parameter. (Typer's
    commands and parameters are read by their attributes: they are click's, vendored.)"""
    if not param or not ctx.invoked_subcommand:
        return None
    names = {param, _CLI_NAMES.get(param, param)}
    commands = [group.get_command(ctx, ctx.invoked_subcommand)]
    while commands:
        command = commands.pop()
        if hasattr(command, "list_commands"):  # a group
            commands += [command.get_command(ctx, name) for name in command.list_commands(ctx)]
            continue
        for p in getattr(command, "params", []):
            if p.name in names:
                if getattr(p, "param_type_name", "") == "option":
                    return max(p.opts, key=len)
                return (p.metavar or p.name).upper()
    return None


WAIT_HELP = (
    "If another process is writing the index, wait for it to finish instead of refusing "
    "(the writer lock is released however that process ends)."
)


@contextmanager
def fit_progress(quiet: bool = False):
    """One overall progress bar on stderr, with the elapsed time and an estimate of what is
    left; yields the ``progress(done, total, what)`` callback the library calls (None when
    ``quiet`` or stderr is not a terminal: the log lines say the same)."""
    if quiet or not err_console.is_terminal:
        yield None
        return
    from rich.progress import (  # only when a bar is drawn: it costs start-up time
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("fits", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=escape(what)[:40])

        yield progress
