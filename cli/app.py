"""Entry point: joins one typer app per command module into ``embedgenre``."""

from __future__ import annotations

import importlib
import logging

import typer

from embedgenre.cli import common

app = typer.Typer(
    name="embedgenre",
    help="Predict movie genres from posters and plots; find similar posters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=common.ErrorHandlingGroup,
)

# (module in cli/, group name or None to merge its commands into the root)
COMMAND_MODULES: list[tuple[str, str | None]] = [
    ("embedgenre.cli.index", None),  # index, info
    ("embedgenre.cli.models", "models"),  # models [--json], models import PATH --as NAME
    ("embedgenre.cli.predict", None),  # train, predict
    ("embedgenre.cli.evaluate", None),  # evaluate
    ("embedgenre.cli.posters", "posters"),  # posters download
    ("embedgenre.cli.similar", None),  # similar, search
    ("embedgenre.cli.serve", None),  # serve
    ("embedgenre.cli.tag", None),  # tag LIBRARY --index DIR [--write] | tag LIBRARY --undo
    ("embedgenre.cli.audit", None),  # audit
]


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    common.configure_logging(
        logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    )


for _module, _group in COMMAND_MODULES:
    _sub = importlib.import_module(_module).app
    if _group:
        app.add_typer(_sub, name=_group)
    else:
        app.add_typer(_sub)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
