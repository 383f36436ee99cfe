"""`embedgenre evaluate`: every method on one split of an index; report tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedgenre.cli.common import console, emit_json, err_console, fit_progress, plain

app = typer.Typer()


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """Accept both ``--methods a,b`` and ``--methods a --methods b``."""
    if not values:
        return None
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@app.command()
def evaluate(
    index_dir: Annotated[Path, typer.Argument(help="Index directory built by `embedgenre index`.")],
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--methods",
            metavar="NAMES",
            help="Any of zeroshot, knn, mlknn, linear, mlp, comma-separated (default: all).",
        ),
    ] = None,
    modalities: Annotated[
        list[str] | None,
        typer.Option(
            "--modalities",
            metavar="NAMES",
            help="Any of poster, plot, early_fusion, late_fusion, comma-separated (default: all).",
        ),
    ] = None,
    image_encoders: Annotated[
        list[str] | None,
        typer.Option(
            "--image-encoders",
            metavar="NAMES",
            help="Poster embedding sets to compare (default: all).",
        ),
    ] = None,
    text_encoders: Annotated[
        list[str] | None,
        typer.Option(
            "--text-encoders",
            metavar="NAMES",
            help="Plot embedding sets to compare (default: all); fusion uses the index's default "
            "plot set, or the first one named.",
        ),
    ] = None,
    test_size: Annotated[float, typer.Option(help="Share of items held out for testing.")] = 0.2,
    split: Annotated[
        Path | None,
        typer.Option(
            "--split",
            exists=True,
            dir_okay=False,
            help="Split file (split.json of an earlier report) to reuse instead.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, models and few-shot samples.")] = 0,
    shots: Annotated[
        str,
        typer.Option(
            metavar="LIST",
            help="Few-shot curves: k labelled movies per genre, e.g. 1,2,4,8,16,32,all "
            "(each k fits every method again); 'none' (the default) skips them.",
        ),
    ] = "none",
    fewshot_seeds: Annotated[int, typer.Option(min=1, help="Few-shot repeats per k.")] = 3,
    scratch_cnn: Annotated[
        bool, typer.Option("--scratch-cnn/--no-scratch-cnn", help="Train the from-scratch CNN.")
    ] = True,
    cnn_epochs: Annotated[int, typer.Option(min=1, help="Epochs of the scratch CNN.")] = 6,
    thresholds: Annotated[
        str, typer.Option(help="Threshold mode chosen on validation: per_genre or global.")
    ] = "per_genre",
    folds: Annotated[
        int,
        typer.Option(
            min=0,
            help="Choose thresholds on out-of-fold predictions of K folds of the training part; "
            "0: on one validation part.",
        ),
    ] = 5,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Report directory (default: reports/<index name>)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Train and score every method x modality x embedding set on one split, with baselines."""
    from embedgenre.cli.outputs import writing
    from embedgenre.errors import EmbedgenreError
    from embedgenre.evaluate import EvalConfig, evaluate_index, make_plots
    from embedgenre.evaluate.fewshot import parse_shots
    from embedgenre.evaluate.report import check_report_dir, write_report
    from embedgenre.evaluate.split import read_split

    if folds == 1:
        raise EmbedgenreError("--folds must be 0 (one validation part) or at least 2.")
    if thresholds not in ("per_genre", "global"):
        raise EmbedgenreError(f"--thresholds must be per_genre or global, got {thresholds!r}.")
    report = report or Path("reports") / index_dir.resolve().name
    check_report_dir(report, "--report")  # before the work, not after it
    shot_values = () if shots.strip().lower() == "none" else tuple(parse_shots(shots))
    config = EvalConfig(
        test_size=test_size,
        split=read_split(split) if split else None,
        seed=seed,
        shots=shot_values,
        fewshot_seeds=fewshot_seeds,
        scratch_cnn=scratch_cnn,
        cnn_epochs=cnn_epochs,
        threshold_mode=thresholds,
        folds=folds or None,
        image_encoders=_names(image_encoders),
        text_encoders=_names(text_encoders),
    )
    if _names(methods):
        config.methods = _names(methods)
    if _names(modalities):
        config.modalities = _names(modalities)
    with fit_progress(as_json) as progress:
        ev = evaluate_index(index_dir, config, progress=progress)
    with writing(report, "--report", partial=False):  # the figures; write_report wraps its own
        write_report(ev.result, report)
        make_plots(ev, report)
    res = ev.result
    if as_json:
        emit_json(
            {
                "report": str(report),
                "info": res["info"],
                "rows": res["rows"],
                "skipped": res["skipped"],
                "fewshot": res["fewshot"],
            }
        )
        return
    _print_summary(res, report)


def _print_summary(res: dict, report: Path) -> None:
    """The summary tables (all test items; those with a plot), the caveat, what was skipped."""
    from rich.table import Table

    from embedgenre.evaluate.report import accuracy_caveat, summary_table

    shown = ("method", "modality", "encoder", "n", "micro-F1", "macro-F1", "mAP", "label acc.")
    for subset, title in (("all", "all test items"), ("with_plot", "test items with a plot")):
        headers, body = summary_table(res["rows"], subset)
        if not body:
            continue
        keep = [headers.index(h) for h in shown]
        table = Table(
            title=f"Genre prediction, {title} (sorted by micro-F1; every metric in "
            f"{report}/summary.md)",
            header_style="bold",
            pad_edge=False,
        )
        for i in keep:
            table.add_column(
                headers[i], justify="right" if i >= 3 else "left", overflow="fold", no_wrap=i >= 3
            )
        for cells in body:
            table.add_row(*(cells[i] for i in keep))
        console.print(table)
    caveat = accuracy_caveat(res["rows"])
    if caveat:
        console.print(caveat, soft_wrap=True)
    for s in res["skipped"]:
        err_console.print(
            plain(f"skipped {s['method']} · {s['modality']} · {s['encoder']}: {s['reason']}"),
            markup=False,
            soft_wrap=True,
            highlight=False,
        )
    console.print(f"report: {report}/summary.md (figures, per-genre table, split.json)")
