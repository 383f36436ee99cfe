"""`embedgenre posters download`: fetch poster images listed in a MovieGenre-style CSV."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedgenre.cli.common import console, emit_json, err_console, fail, safe

app = typer.Typer(help="Fetch poster images for a catalog.", no_args_is_help=True)


@app.command()
def download(
    csv_path: Annotated[
        Path,
        typer.Argument(
            metavar="CSV",
            exists=True,
            dir_okay=False,
            readable=True,
            help="CSV with imdbId, Title, Genre and a Poster URL column (Kaggle MovieGenre.csv).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", file_okay=False, help="Folder for posters/, movies.csv, report."
        ),
    ],
    workers: Annotated[int, typer.Option(min=1, max=64, help="Concurrent downloads.")] = 8,
    retries: Annotated[
        int, typer.Option(min=0, max=10, help="Extra attempts on 5xx/timeouts/connection errors.")
    ] = 3,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds one attempt at a poster may take in all, however slowly the server "
            "sends.",
        ),
    ] = 10.0,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column", help="Map a field to a CSV column: FIELD=COLUMN (e.g. poster=url)."
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(help="The CSV's text encoding (default: UTF-8, else cp1252 with a warning)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Download posters (resumable) and write a catalog that `embedgenre index OUT` reads."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from embedgenre.catalog import CatalogWarning, parse_columns
    from embedgenre.download import REPORT_NAME, download_posters

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=as_json,
        transient=True,
    )
    try:
        with progress, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CatalogWarning)
            task = progress.add_task("posters", total=None)

            def tick(done: int, total: int, status: str) -> None:
                progress.update(task, completed=done, total=total)

            report = download_posters(
                csv_path,
                out,
                workers=workers,
                retries=retries,
                timeout=timeout,
                columns=parse_columns(column),
                encoding=encoding,
                progress=tick,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: the posters fetched so far are listed in {out / 'movies.csv'} and "
            f"{out / REPORT_NAME}; run the same command again to resume",
            highlight=False,
        )
        raise typer.Exit(code=130) from None
    for w in caught:
        err_console.print(f"[yellow]warning:[/] {safe(w.message)}", highlight=False)
    summary = report.to_dict()
    if as_json:
        emit_json(summary)
    else:
        table = Table(title=f"posters from {csv_path.name}")
        table.add_column("result")
        table.add_column("posters", justify="right")
        table.add_row("downloaded", str(summary["downloaded"]))
        table.add_row("already present", str(summary["already_present"]))
        for reason, n in summary["failed_by_reason"].items():
            table.add_row(f"failed: {reason}", str(n))
        console.print(table)
        console.print(f"catalog: {summary['catalog']}\nreport:  {summary['report']}")
        if report.problems:
            console.print(f"{len(report.problems)} CSV row problem(s) listed in the report")
    if report.failed and not (report.downloaded or report.present):
        raise fail(f"no poster could be downloaded; see {summary['report']} for each failure")
