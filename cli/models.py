"""`embedgenre models`: list encoders and where their weights are; import downloaded weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from embedgenre.cli import common

app = typer.Typer(
    help="List encoders and their weights; import a downloaded checkpoint.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def models(
    ctx: typer.Context,
    pattern: Annotated[
        str, typer.Option("--pattern", "-p", help="Glob over names, e.g. 'clip:*'.")
    ] = "*",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """List every registered encoder: name, family, modalities, dim, available, source.

    `--json` adds where the weights were found (location) and a description.
    """
    if ctx.invoked_subcommand is not None:
        return
    from embedgenre.encoders import list_encoders

    specs = list_encoders(pattern)
    if json_out:
        common.emit_json([s.to_dict() for s in specs])
        return
    table = Table(title="encoders")
    for col in ("name", "family", "modalities", "dim", "available", "source"):
        table.add_column(col)
    for s in specs:
        table.add_row(
            s.name,
            s.family,
            "+".join(s.modalities),
            str(s.dim) if s.dim else "?",
            "yes" if s.available else "no",
            s.source if s.available else "-",
        )
    common.console.print(table)
    if not any(s.available and s.family == "clip" for s in specs):
        common.err_console.print(
            "no CLIP weights here: download open_clip_pytorch_model.bin and run "
            "`embedgenre models import FILE --as clip:ViT-B-32@laion2b_s34b_b79k`",
            highlight=False,
        )


@app.command("import")
def import_(
    path: Annotated[
        Path, typer.Argument(exists=True, help="Downloaded checkpoint file (or st: model folder).")
    ],
    name: Annotated[
        str, typer.Option("--as", help="Registry name, e.g. clip:ViT-B-32@laion2b_s34b_b79k.")
    ],
    config: Annotated[
        Optional[Path],  # noqa: UP045 (typer needs Optional here)
        typer.Option(
            "--config",
            exists=True,
            dir_okay=False,
            help="open_clip config JSON (custom CLIP archs).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Copy a checkpoint into the cache where `create_encoder(NAME)` finds it (checked first)."""
    from embedgenre.encoders.registry import import_weights

    spec = import_weights(path, name, config=config)
    if json_out:
        common.emit_json(spec.to_dict())
    else:
        common.console.print(f"imported {path} as {spec.name} -> {spec.location}", highlight=False)
