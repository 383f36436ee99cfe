"""`embedgenre similar` and `embedgenre search`: more like this poster / movie, and text search."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedgenre.cli.common import console, emit_json, err_console, fail, plain, safe

app = typer.Typer()

IndexOpt = Annotated[
    Path,
    typer.Option("--index", "-i", help="Index directory built by `embedgenre index`."),
]
KOpt = Annotated[int, typer.Option("-k", "--k", min=1, help="How many results.")]
GenreOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--genre", "-g", help="Keep items with at least one of these genres (repeatable)."
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude-genre", "-x", help="Leave out items with any of these genres (repeatable)."
    ),
]
HtmlOpt = Annotated[
    Path | None,
    typer.Option(help="Also write a self-contained HTML page with thumbnails to this file."),
]
OpenOpt = Annotated[bool, typer.Option("--open", help="Open the --html page in a browser.")]
DedupOpt = Annotated[
    float,
    typer.Option(
        min=0.0, max=1.0, help="Posters with cosine at or above this are copies of each other."
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N (query encoder and faiss-gpu).")]
NprobeOpt = Annotated[
    int | None, typer.Option(min=1, help="IVF cells to scan (approximate indexes only).")
]
EfOpt = Annotated[
    int | None, typer.Option(min=1, help="HNSW search breadth (approximate indexes only).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]


@app.command()
def similar(
    poster: Annotated[
        Path | None,
        typer.Argument(
            help="Poster image to find look-alikes of (or use --id or --plot).", dir_okay=False
        ),
    ] = None,
    index: IndexOpt = ...,
    item_id: Annotated[
        str | None, typer.Option("--id", help="IMDb id of an indexed movie to start from.")
    ] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all", help="Every indexed movie's neighbours in one batched pass (needs --out)."
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="--all: write the neighbours here, .csv (id, neighbour_id, rank, score) or .json.",
            dir_okay=False,
        ),
    ] = None,
    plot: Annotated[
        str | None,
        typer.Option(
            help="A synopsis to compare with the indexed plots (--by plot or both), alone or "
            "beside a poster file."
        ),
    ] = None,
    title: Annotated[
        str | None, typer.Option(help="The movie's title; it goes with --plot.")
    ] = None,
    k: KOpt = 10,
    by: Annotated[
        str,
        typer.Option(help="Compare posters, plots, or both (weighted; see --plot-weight)."),
    ] = "poster",
    image_encoder: Annotated[
        str | None,
        typer.Option(help="Which poster embedding set to use (default: the index's first)."),
    ] = None,
    genre: GenreOpt = None,
    exclude_genre: ExcludeOpt = None,
    plot_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="--by both: score = ((1-w) z_poster + w z_plot) / sqrt((1-w)^2 + w^2), z = cosine "
            "standardised per embedding set; an item without a plot is scored by z_poster.",
        ),
    ] = 0.5,
    dedup_threshold: DedupOpt = 0.95,
    device: DeviceOpt = "cpu",
    nprobe: NprobeOpt = None,
    ef_search: EfOpt = None,
    html: HtmlOpt = None,
    open_page: OpenOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Movies most like a poster file, a plot, or an indexed movie (never the query itself)."""
    if every or out is not None:
        return _similar_all(
            index, every, out, poster, item_id, html, as_json, k=k, by=by,
            image_encoder=image_encoder, genres=genre or (), exclude_genres=exclude_genre or (),
            dedup_threshold=dedup_threshold, plot_weight=plot_weight, device=device,
            nprobe=nprobe, ef_search=ef_search,
        )  # fmt: skip
    retriever = _retriever(index, html, image_encoder, device, nprobe, ef_search)
    result = retriever.similar(
        item_id=item_id,
        poster=poster,
        plot=plot,
        title=title,
        k=k,
        by=by,
        genres=genre or (),
        exclude_genres=exclude_genre or (),
        dedup_threshold=dedup_threshold,
        plot_weight=plot_weight,
    )
    _show(result, html, open_page, as_json)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help='What to look for, e.g. "a haunted house at night".')],
    index: IndexOpt = ...,
    k: KOpt = 10,
    image_encoder: Annotated[
        str | None, typer.Option(help="Which poster embedding set to search (CLIP only).")
    ] = None,
    genre: GenreOpt = None,
    exclude_genre: ExcludeOpt = None,
    dedup_threshold: DedupOpt = 0.95,
    device: DeviceOpt = "cpu",
    nprobe: NprobeOpt = None,
    ef_search: EfOpt = None,
    html: HtmlOpt = None,
    open_page: OpenOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Text to posters (CLIP text tower) or, without CLIP posters, text to plots; says which."""
    retriever = _retriever(index, html, image_encoder, device, nprobe, ef_search)
    result = retriever.search_text(
        text,
        k=k,
        genres=genre or (),
        exclude_genres=exclude_genre or (),
        dedup_threshold=dedup_threshold,
    )
    _show(result, html, open_page, as_json)


def _similar_all(index, every, out, poster, item_id, html, as_json, **opts) -> None:
    """`similar --all --out FILE`: every movie's neighbours, written as CSV or JSON."""
    from embedgenre.cli.outputs import check_output_file, writing
    from embedgenre.retrieval import open_retriever, write_neighbours

    if not every:
        raise fail("--out goes with --all (every movie's neighbours); add --all.")
    if poster is not None or item_id is not None:
        raise fail("--all asks for every indexed movie; drop the poster and --id.")
    if out is None:
        raise fail("--all needs --out FILE (.csv or .json), e.g. --out recs.csv.")
    if html is not None or as_json:
        raise fail("--all writes its result to --out; drop --html and --json.")
    check_output_file(out, "--out", "recs.csv")
    keys = ("image_encoder", "device", "nprobe", "ef_search")
    retriever = open_retriever(index, thumbnails=False, **{key: opts.pop(key) for key in keys})
    result = retriever.similar_all(**opts)
    with writing(out, "--out"):
        write_neighbours(result, out)
    for note in result.notes:
        console.print(plain(f"note: {note}"), markup=False, highlight=False)
    console.print(
        plain(
            f"wrote {len(result.queries)} movies x up to {result.k} neighbours "
            f"(by {result.by}) to {out}"
        ),
        markup=False,
        highlight=False,
    )


def _retriever(index, html, image_encoder, device, nprobe, ef_search):
    """The retriever of one `similar` or `search` query, once its --html path is checked."""
    from embedgenre.retrieval import open_retriever

    _check_html(html)
    return open_retriever(
        index, image_encoder=image_encoder, device=device, nprobe=nprobe, ef_search=ef_search
    )


def _check_html(html: Path | None) -> None:
    """A --html path that cannot be written is refused before the search."""
    from embedgenre.cli.outputs import check_output_file

    if html is not None:
        check_output_file(html, "--html", "similar.html")


def _show(result, html: Path | None, open_page: bool, as_json: bool) -> None:
    from embedgenre.cli.outputs import writing
    from embedgenre.contact_sheet import write_html

    page = None
    if html:
        with writing(html, "--html"):
            page = write_html(result, html)
    if as_json:
        out = result.to_dict()
        if page:
            out["html"] = str(page.resolve())
        emit_json(out)
    else:
        q = result.query
        what = {
            "item": lambda: f"{q['id']} {q.get('title') or ''}".strip(),
            "poster": lambda: q["path"],
            "upload": lambda: "plot " + repr((q.get("plot") or "")[:60]),
            "text": lambda: repr(q["text"]),
        }[q["kind"]]()
        encoders = ", ".join(f"{m}: {name}" for m, name in result.encoders.items())
        console.print(f"[bold]{safe(what)}[/] — by {result.by} ({safe(encoders)})", highlight=False)
        console.print(f"score: {result.scoring}", markup=False, highlight=False)
        for note in result.notes:
            console.print(f"note: {plain(note)}", markup=False, highlight=False)
        table = Table("#", "score", "id", "title", "year", "genres")
        for n in result.neighbours:
            title = n.title or ""
            if n.duplicates:
                title += f" (+{len(n.duplicates)} copies)"
            table.add_row(
                str(n.rank),
                f"{n.score:.3f}",
                safe(n.id),
                safe(title),
                str(n.year or ""),
                safe(", ".join(n.genres)),
            )
        console.print(table)
        if page:
            console.print(f"wrote {plain(page)}", markup=False, highlight=False)
    if page and open_page:
        if not webbrowser.open(page.resolve().as_uri()):
            err_console.print(
                f"could not open a browser; open {plain(page)} yourself", markup=False
            )
