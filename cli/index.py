"""`embedgenre index` and `embedgenre info`: build an index from a catalog, and describe one."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedgenre.cli.common import WAIT_HELP, console, emit_json, err_console, plain
from embedgenre.cli.common import safe as esc
from embedgenre.encoders.cpu import PRECISIONS
from embedgenre.encoders.devices import BACKENDS
from embedgenre.store.schema import VECTOR_DTYPES

app = typer.Typer()

Backend = Enum("Backend", {b: b for b in BACKENDS}, type=str)
Precision = Enum("Precision", {p: p for p in PRECISIONS}, type=str)
VectorDtype = Enum("VectorDtype", {d: d for d in VECTOR_DTYPES}, type=str)


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def index(
    catalog: Annotated[
        Path,
        typer.Argument(
            help="Catalog directory (movies.csv + posters), CSV file, or media library folder "
            "(Kodi/Jellyfin/Emby NFO files beside the videos)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to create or update.")],
    image_encoder: Annotated[
        list[str] | None,
        typer.Option(
            "--image-encoder", help="Poster encoder (repeatable). Default: best available offline."
        ),
    ] = None,
    text_encoder: Annotated[
        list[str] | None,
        typer.Option(
            "--text-encoder",
            help="Plot encoder (repeatable). Default: hybrid:all-MiniLM-L6-v2 (MiniLM + TF-IDF/LSA fitted on the plots).",
        ),
    ] = None,
    add: Annotated[
        bool, typer.Option("--add", help="Add encoders an existing index does not hold yet.")
    ] = False,
    layout: Annotated[
        str, typer.Option(help="Catalog layout: auto, movies-csv, kaggle, mmimdb, csv, library.")
    ] = "auto",
    column: Annotated[
        list[str] | None,
        typer.Option("--column", help="Map a field to a CSV column: FIELD=COLUMN."),
    ] = None,
    top_genres: Annotated[
        int | None, typer.Option(help="Keep only the N most frequent genres.")
    ] = None,
    min_genre_count: Annotated[
        int | None, typer.Option(help="Genres with fewer movies are folded per --rare.")
    ] = None,
    rare: Annotated[str, typer.Option(help="What happens to rare genres: drop or other.")] = "drop",
    genre_sep: Annotated[str, typer.Option(help="Separator between genres in a CSV cell.")] = "|",
    encoding: Annotated[
        str | None,
        typer.Option(help="CSV text encoding (default: UTF-8, else cp1252 with a warning)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    backend: Annotated[
        Backend,
        typer.Option(
            help="auto: on CPU the faster of ONNX Runtime and torch, measured once on this CPU "
            "and cached; onnx or torch to choose. Recorded in the index."
        ),
    ] = "auto",
    precision: Annotated[
        Precision,
        typer.Option(
            help="Image towers on CPU: fp32, or bf16/int8 where the CPU has the matrix units "
            "(AMX, AVX512-BF16/VNNI), refused if embeddings drift from fp32 (cosine < 0.999). "
            "On a GPU: fp16 (fp32 asked), or bf16."
        ),
    ] = "fp32",
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Posters per batch [default: 32; on a GPU, from its memory]."),
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option(
            min=1, help="Items encoded between checkpoints (a killed run redoes at most one)."
        ),
    ] = 256,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on the first unreadable poster.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help=WAIT_HELP)] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            help="What encodes: this process (local) or a Ray Data pipeline (ray; "
            "pip install 'embedgenre\\[distributed]'). Both write the same index."
        ),
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join: auto or ray://HOST:PORT (default: start one here)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Ray encoder actors (default: one per GPU share or per 2 CPUs)."),
    ] = None,
    gpus_per_worker: Annotated[
        float, typer.Option(min=0.0, help="GPUs per Ray encoder actor; fractions allowed.")
    ] = 0.0,
    faiss_kind: Annotated[
        str,
        typer.Option(
            "--faiss",
            help="FAISS index of each changed set: auto (by size and --index-memory), flat, "
            "ivf_sq8, hnsw_sq8 or ivf_pq (on-disk inverted lists); KIND:NAME=VALUE,... sets "
            "parameters, e.g. ivf_pq:m=32.",
        ),
    ] = "auto",
    index_memory: Annotated[
        str,
        typer.Option(help="Memory the FAISS index may take, e.g. 4GB or 512MiB."),
    ] = "4GB",
    vectors: Annotated[
        VectorDtype | None,
        typer.Option(
            help="How each set's vectors are stored: float32, or float16 (half the disk; "
            "nearest-neighbour recall 0.9996 of float32). Default: what each set has, "
            "float32 for a new one.",
        ),
    ] = None,
    drop_unused_genres: Annotated[
        bool,
        typer.Option(
            "--drop-unused-genres",
            help="Remove genres no movie carries any more from the index's vocabulary (kept "
            "otherwise, so saved heads keep their genres; heads still score the genres they know).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Encode a catalog's posters and plots into an index directory (incremental, resumable)."""
    from embedgenre.catalog import parse_columns, read_catalog
    from embedgenre.distributed import make_engine
    from embedgenre.indexing import build_index

    runner = make_engine(
        engine.value, address=address, workers=workers, gpus_per_worker=gpus_per_worker
    )

    cat = read_catalog(
        catalog,
        layout=layout,
        columns=parse_columns(column),
        top_genres=top_genres,
        min_genre_count=min_genre_count,
        rare=rare,
        genre_sep=genre_sep,
        encoding=encoding,
    )
    summary = build_index(
        cat,
        out,
        image_encoders=image_encoder,
        text_encoders=text_encoder,
        add=add,
        wait=None if wait else 0,
        device=device,
        backend=backend.value,
        precision=precision.value,
        batch_size=batch_size,
        chunk_size=chunk_size,
        strict=strict,
        progress=not as_json and err_console.is_terminal,
        engine=runner,
        faiss_kind=faiss_kind,
        index_memory=index_memory,
        vector_dtype=vectors.value if vectors else None,
        drop_unused_genres=drop_unused_genres,
    )
    if as_json:
        emit_json(summary.to_dict())
        return
    print_summary(summary)


def print_summary(summary) -> None:
    """The index run in a few lines: counts, one row per embedding set, the posters skipped
    (each with its path once and why), the catalog's problems."""
    skipped = f" ({len(summary.skipped)} skipped)" if summary.skipped else ""
    console.print(
        f"[bold]{esc(summary.path)}[/]: {summary.items} items, {summary.with_poster} posters"
        f"{skipped}, {summary.with_plot} plots, "
        f"{len(summary.genres) - len(summary.retired_genres)} genres "
        f"({summary.seconds:.1f} s)"
    )
    table = Table("embedding set", "encoder", "dim", "rows", "encoded", "reused", "skipped", "s")
    for s in summary.sets:
        table.add_row(
            s.modality,
            esc(s.encoder),
            str(s.dim),
            str(s.count),
            str(s.encoded + s.resumed),
            str(s.reused),
            str(s.skipped),
            f"{s.seconds:.1f}",
        )
    console.print(table)
    if summary.up_to_date:
        console.print("up to date: nothing written")
    if summary.skipped:
        console.print(
            f"[yellow]{len(summary.skipped)} poster(s) skipped[/] (listed in the index's skip list):"
        )
        for rec in summary.skipped[:10]:
            console.print(plain(f"  {rec.id}: {rec.path}: {rec.reason}"), markup=False)
        if len(summary.skipped) > 10:
            console.print(f"  ... and {len(summary.skipped) - 10} more")
    if summary.new_genres:
        console.print(
            f"new genre(s) appended to the vocabulary: {esc(', '.join(summary.new_genres))} "
            "(heads trained before cannot score them until retrained)",
            highlight=False,
        )
    if summary.retired_genres:
        console.print(
            f"genre(s) no movie carries, kept in the vocabulary: "
            f"{esc(', '.join(summary.retired_genres))} (remove with --drop-unused-genres)",
            highlight=False,
        )
    if summary.dropped_genres:
        console.print(
            f"genre(s) dropped from the vocabulary: {esc(', '.join(summary.dropped_genres))}",
            highlight=False,
        )
    for problem in summary.problems[:10]:
        console.print(f"[yellow]catalog:[/] {esc(problem)}", highlight=False)


@app.command()
def info(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """What an index holds: items, genres with counts, embedding sets, sizes, trained heads."""
    from embedgenre.store import describe_index

    desc = describe_index(index_dir)
    if as_json:
        emit_json(desc)
        return
    c = desc["counts"]
    console.print(
        f"[bold]{esc(desc['path'])}[/]: {c['items']} items, {c['with_poster']} with poster, "
        f"{c['with_plot']} with plot, {c['skipped_posters']} posters skipped"
        + ("" if desc["complete"] else "  [red](incomplete: run `embedgenre index` again)[/]")
    )
    sets = Table(
        "modality", "encoder", "dim", "rows", "space", "faiss", "vectors", "MB",
        title="embedding sets",
    )  # fmt: skip
    for s in desc["sets"]:
        sets.add_row(
            s["modality"],
            esc(s["encoder"]),
            str(s["dim"]),
            str(s["count"]),
            esc(s["space"]),
            esc(s["faiss"]),
            s["dtype"],
            f"{s['bytes'] / 1e6:.1f}",
        )
    console.print(sets)
    genres = Table("genre", "movies", title=f"{len(desc['genres'])} genres")
    for g, n in desc["genres"].items():
        genres.add_row(esc(g), str(n) if n else "0 (retired: --drop-unused-genres)")
    console.print(genres)
    if desc["heads"]:
        console.print(plain("heads: " + ", ".join(desc["heads"])), markup=False)
