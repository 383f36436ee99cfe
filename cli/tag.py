"""`embedgenre tag`: write predicted genres into a media library's NFO files, or undo that."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedgenre.cli.common import console, emit_json, err_console, fail, plain
from embedgenre.cli.common import safe as esc

app = typer.Typer()


@app.command()
def tag(
    library: Annotated[
        Path,
        typer.Argument(
            help="The media library folder (Kodi, Jellyfin, Emby: NFO files beside the videos)."
        ),
    ],
    index_dir: Annotated[
        Path | None,
        typer.Option("--index", help="Index of this library, with a trained head."),
    ] = None,
    head: Annotated[
        str | None, typer.Option(help="Head name (default: the best that fits the movies).")
    ] = None,
    write: Annotated[
        bool,
        typer.Option("--write", help="Add the genres to the NFO files (default: a dry run)."),
    ] = False,
    add: Annotated[
        bool,
        typer.Option("--add", help="Also add missing genres to movies whose NFO has genres."),
    ] = False,
    min_score: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Add only genres scored at least this (default: the head's "
            "tuned thresholds alone).",
        ),  # fmt: skip
    ] = None,
    create_nfo: Annotated[
        bool,
        typer.Option("--create-nfo", help="Write a new NFO for movies that have none."),
    ] = False,
    undo: Annotated[
        bool,
        typer.Option(
            "--undo", help="Restore every NFO embedgenre changed in this library, byte for byte."
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Movies per prediction batch.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Predict the genres missing from a media library's NFOs; --write adds them, --undo
    restores the files."""
    from embedgenre.library.tag import tag_library, undo_tags
    from embedgenre.predict import Predictor

    if undo:
        if write or add or create_nfo or index_dir is not None:
            raise fail("--undo takes only the library folder (and --json); drop the other options.")
        result = undo_tags(library)
        if as_json:
            emit_json(result.to_dict())
        else:
            _print_undo(result)
        if result.refused:
            raise typer.Exit(code=1)
        return
    if index_dir is None:
        raise fail("Give --index DIR: the index built from this library (embedgenre index).")
    predictor = Predictor.open(index_dir, head=head)
    plan = tag_library(
        library,
        predictor,
        write=write,
        add=add,
        min_score=min_score,
        create_nfo=create_nfo,
        batch_size=batch_size,
    )
    if as_json:
        emit_json(plan.to_dict())
        return
    _print_plan(plan)


def _print_plan(plan) -> None:
    h = plan.head
    if h:
        err_console.print(
            plain(f"head: {h.get('name')} ({h.get('method')}, {h.get('modality')})"), markup=False
        )
    for e in plan.entries:
        if e.action not in ("add", "create"):
            continue
        name = f"{e.title} ({e.year})" if e.year else str(e.title or e.id)
        genres = ", ".join(f"{g.genre} {g.score:.2f}" for g in e.add)
        verb = ("created" if e.action == "create" else "added") if e.written else "would add"
        new = " (new NFO)" if e.action == "create" else ""
        console.print(f"{esc(name)}  [dim]{esc(e.path)}{new}[/]  {verb}: {esc(genres)}")
    for e in plan.entries:
        if e.action == "skip":
            console.print(f"[yellow]not tagged:[/] {esc(e.path)}: {esc(e.reason or '')}")
    for p in plan.problems:
        console.print(f"[yellow]skipped:[/] {esc(p)}", highlight=False)
    c = plan.counts()
    if plan.write:
        console.print(
            f"{c['written']} NFO file(s) written; undo with: embedgenre tag {esc(str(plan.library))} "
            "--undo"
        )
    else:
        console.print(
            f"dry run: {c['add'] + c['create']} movie(s) would get genres, {c['keep']} kept as "
            f"they are, {c['skip']} not tagged; nothing was written (add --write)"
        )


def _print_undo(result) -> None:
    for rel in result.restored:
        console.print(f"restored {esc(rel)}")
    for r in result.refused:
        err_console.print(f"[yellow]left as it is:[/] {esc(r['path'])}: {esc(r['reason'])}")
    if not result.restored and not result.refused:
        console.print("nothing to undo: embedgenre has not changed this library's files")
    else:
        console.print(f"{len(result.restored)} file(s) restored, {len(result.refused)} refused")
