"""`embedgenre train` and `embedgenre predict`: fit a head on an index; predict genres."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from embedgenre.cli.common import WAIT_HELP, console, emit_json, err_console, plain, safe
from embedgenre.names import FUSIONS, HEAD_MODALITIES, METHODS
from embedgenre.predictors.tuning import DEFAULT_FOLDS

app = typer.Typer()


# The choices of --method, --modality and --fusion: the vocabularies of embedgenre.names.
Method = Enum("Method", {m: m for m in METHODS}, type=str)
Modality = Enum("Modality", {m: m for m in HEAD_MODALITIES}, type=str)
Fusion = Enum("Fusion", {f: f for f in FUSIONS}, type=str)


class ThresholdMode(str, Enum):
    global_ = "global"
    per_genre = "per_genre"


# CLI option -> the predictor param it sets (which methods take it is the estimators' own say)
OPTION_PARAMS = {
    "k": "k",
    "s": "s",
    "power": "power",
    "c": "C",
    "class_weight": "class_weight",
    "hidden": "hidden",
    "dropout": "dropout",
    "optimizer": "optimizer",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "batch_size": "batch_size",
    "epochs": "epochs",
    "patience": "patience",
    "pos_weight": "pos_weight",
    "oversample": "oversample",
    "temperature": "temperature",
}


@contextmanager
def _show_warnings():
    """Print library warnings (e.g. a genre with no positive example) as one stderr line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, UserWarning):
            err_console.print(
                f"[yellow]warning:[/] {safe(w.message)}", highlight=False, soft_wrap=True
            )


def _hyperparams(method: str, given: dict) -> dict:
    from embedgenre.predictors.registry import predictor_class

    takes = lambda m: set(predictor_class(m)().get_params(deep=False))  # noqa: E731
    params = {}
    for opt, value in given.items():
        if value is None:
            continue
        name = OPTION_PARAMS[opt]
        if name not in takes(method):
            flag = "--" + opt.replace("_", "-")
            methods = [m for m in METHODS if name in takes(m)]
            raise typer.BadParameter(
                f"{flag} does not apply to --method {method} (it is for {', '.join(methods)})."
            )
        if name == "hidden":
            try:
                value = tuple(int(h) for h in str(value).split(","))
            except ValueError:
                raise typer.BadParameter(
                    f"--hidden {value!r}: expected sizes like 512 or 512,256."
                ) from None
        if name in ("class_weight", "pos_weight") and value == "none":
            value = None
        params[name] = value
    return params


@app.command()
def train(
    index_dir: Annotated[Path, typer.Argument(help="Index directory built by `embedgenre index`.")],
    method: Annotated[Method, typer.Option(help="How to predict.")] = Method.linear,
    modality: Annotated[Modality, typer.Option(help="Which embeddings to use.")] = Modality.poster,
    image_encoder: Annotated[
        str | None, typer.Option(help="Poster embedding set (default: the index's).")
    ] = None,
    text_encoder: Annotated[
        str | None, typer.Option(help="Plot embedding set (default: the index's).")
    ] = None,
    fusion: Annotated[
        Fusion | None, typer.Option(help="With --modality both: early or late (default).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Head name (default: METHOD-MODALITY[-FUSION]).")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the folds (or validation split) and the MLP.")
    ] = 0,
    val_size: Annotated[
        float,
        typer.Option(min=0.05, max=0.5, help="With --folds 0: share of items for validation."),
    ] = 0.2,
    folds: Annotated[
        int,
        typer.Option(
            min=0,
            help="Choose thresholds on out-of-fold predictions of K folds (K+1 fits); "
            "0: on one validation split.",
        ),
    ] = DEFAULT_FOLDS,
    threshold: Annotated[
        ThresholdMode, typer.Option(help="Threshold search: global or per_genre.")
    ] = ThresholdMode.per_genre,
    metric: Annotated[
        str, typer.Option(help="Metric the thresholds maximise: micro_f1, macro_f1, samples_f1.")
    ] = "micro_f1",
    k: Annotated[int | None, typer.Option(help="knn/mlknn: neighbours.")] = None,
    s: Annotated[float | None, typer.Option(help="mlknn: smoothing.")] = None,
    power: Annotated[float | None, typer.Option(help="knn: similarity weight exponent.")] = None,
    c: Annotated[
        float | None, typer.Option("--C", "--c", help="linear: inverse regularisation.")
    ] = None,
    class_weight: Annotated[str | None, typer.Option(help="linear: none or balanced.")] = None,
    hidden: Annotated[
        str | None, typer.Option(help="mlp: hidden sizes, e.g. 512 or 512,256.")
    ] = None,
    dropout: Annotated[float | None, typer.Option(help="mlp: dropout.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="mlp: adam, adamw or sgd.")] = None,
    lr: Annotated[float | None, typer.Option(help="mlp: learning rate.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="mlp: weight decay.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="mlp: batch size.")] = None,
    epochs: Annotated[int | None, typer.Option(help="mlp: maximum epochs.")] = None,
    patience: Annotated[
        int | None, typer.Option(help="mlp: early-stopping patience (epochs).")
    ] = None,
    pos_weight: Annotated[str | None, typer.Option(help="mlp: none, sqrt or balanced.")] = None,
    oversample: Annotated[
        bool | None, typer.Option(help="mlp: MLSMOTE oversampling of rare genres.")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="zeroshot: temperature without labels.")
    ] = None,
    split: Annotated[
        Path | None,
        typer.Option(
            help="Train on the 'train' ids of this split file (split.json of an evaluate report); "
            "its 'validation' ids, when it has some, choose the thresholds instead of folds."
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help=WAIT_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fit a head on the index's items, choose its thresholds on held-out predictions, save it."""
    from embedgenre.evaluate.split import read_split
    from embedgenre.heads import train_head
    from embedgenre.predictors import HeadSpec
    from embedgenre.store import GenreIndex

    params = _hyperparams(
        method.value,
        dict(
            k=k,
            s=s,
            power=power,
            c=c,
            class_weight=class_weight,
            hidden=hidden,
            dropout=dropout,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            pos_weight=pos_weight,
            oversample=oversample,
            temperature=temperature,
        ),
    )
    spec = HeadSpec(
        method.value,
        modality.value,
        fusion.value if fusion else None,
        params=params,
        seed=seed,
        folds=folds or None,
        val_size=val_size,
        threshold=threshold.value,
        metric=metric,
    )
    doc = read_split(split) if split is not None else {}
    index = GenreIndex.open(index_dir)
    with _show_warnings():
        head = train_head(
            index,
            spec,
            image_encoder=image_encoder,
            text_encoder=text_encoder,
            name=name,
            ids=doc.get("train") if split is not None else None,
            validation_ids=doc.get("validation") or None,
            wait=None if wait else 0,
        )
    out = {
        **head.describe(),
        "path": str(GenreIndex.open(index.path).head_dir(head.name)),
        "params": params,
    }
    if as_json:
        emit_json(out)
        return
    m = head.metrics
    console.print(
        f"saved head [bold]{safe(head.name)}[/] ({head.method}, {head.modality}) to "
        f"{safe(out['path'])}"
    )
    if m:
        how = f"{m['folds']}-fold out-of-fold" if m.get("folds") else "validation"
        console.print(
            f"{how} ({m['n_val']} items): micro-F1 {m['micro_f1']:.3f}  "
            f"macro-F1 {m['macro_f1']:.3f}  mAP {m['map']:.3f}"
        )
    else:
        console.print("no labels: zero-shot with default thresholds (no validation scores)")


@app.command()
def predict(
    posters: Annotated[list[Path] | None, typer.Argument(help="Poster image file(s).")] = None,
    index_dir: Annotated[
        Path, typer.Option("--index", help="Index directory with trained heads.")
    ] = ...,
    plot: Annotated[
        str | None, typer.Option(help="Plot synopsis (with or without posters).")
    ] = None,
    title: Annotated[
        str | None, typer.Option(help="The movie's title; with --plot it is embedded with it.")
    ] = None,
    head: Annotated[
        str | None, typer.Option(help="Head name (default: the best that fits the inputs).")
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            min=1,
            help="Show the scores of the K best genres (every predicted genre is listed "
            "whatever K).",
        ),
    ] = 5,
    catalog: Annotated[
        Path | None, typer.Option(help="Predict every item of this catalog.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="With --catalog: write rows to FILE.csv or FILE.json.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="With --catalog: items per batch.")] = 64,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Show, per predicted genre, the nearest labelled movies that carry it.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the result as JSON (what POST /v1/predict answers)."),
    ] = False,
) -> None:
    """Genres of posters and/or a plot, best first, with scores and decision thresholds."""
    from embedgenre.errors import PredictorError
    from embedgenre.predict import Predictor
    from embedgenre.store import GenreIndex

    if catalog is not None and explain:
        raise PredictorError("--explain is for single predictions; drop --explain or --catalog.")
    if catalog is not None and (posters or plot or title):
        raise PredictorError("Give either --catalog or posters/--plot, not both.")
    if out is not None and catalog is None:
        raise PredictorError("--out is for --catalog; print single predictions with --json.")
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise PredictorError(f"--out {out}: the file name must end in .csv or .json.")
    if out is not None:
        from embedgenre.cli.outputs import check_output_file

        check_output_file(out, "--out", "predictions.csv")  # before the work, not after it
    index = GenreIndex.open(index_dir)
    if catalog is not None:
        _predict_catalog(index, catalog, head, top, out, batch_size, as_json)
        return
    with _show_warnings():
        result = Predictor(index, head=head, save_zeroshot=True).predict(
            posters, plot, title=title, top=top, explain=explain
        )
    if as_json:
        emit_json(result.to_dict())
        return
    h = result.head
    err_console.print(plain(f"head: {h['name']} ({h['method']}, {h['modality']})"), markup=False)
    for note in result.notes:
        err_console.print(plain(f"note: {note}"), markup=False)
    for r in result.results:
        console.print(plain(f"{r.input}: {', '.join(r.genres) or '(none)'}"), markup=False)
        for g in r.ranking:
            mark = "*" if g.predicted else " "
            console.print(
                f"  {mark} {plain(g.genre):<12} {g.score:.3f}  (threshold {g.threshold:.2f})",
                markup=False,
            )
        for genre, movies in (r.neighbours or {}).items():
            near = "; ".join(f"{m.title or m.id} ({m.score:.2f})" for m in movies) or "(none)"
            console.print(plain(f"  why {genre}: {near}"), markup=False)


def _predict_catalog(index, catalog_path, head_name, top, out, batch_size, as_json) -> None:
    import csv

    from embedgenre.catalog import read_catalog
    from embedgenre.predict import Predictor, unscored_note

    with _show_warnings():
        head, rows = Predictor(index, head=head_name).predict_catalog(
            read_catalog(catalog_path), batch_size=batch_size, top=top
        )
    failed = sum(r["error"] is not None for r in rows)
    if out is not None:
        from embedgenre.cli.outputs import writing
        from embedgenre.store import atomic

        with writing(out, "--out"):
            if out.suffix.lower() == ".json":
                doc = {"head": head, "items": rows}
                atomic.write_json(out, doc)
            else:
                with atomic.open_for_write(out, "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["id", "genres", "scores", "error"])
                    for r in rows:
                        scores = "|".join(f"{g}:{s:.4f}" for g, s in r["scores"].items())
                        w.writerow([r["id"], "|".join(r["genres"]), scores, r["error"] or ""])
    summary = {
        "head": head,
        "items": len(rows),
        "failed": failed,
        "out": str(out) if out else None,
    }
    if as_json:
        emit_json(summary if out else {**summary, "rows": rows})
        return
    err_console.print(
        plain(f"head: {head['name']} ({head['method']}, {head['modality']})"),
        markup=False,
        highlight=False,
    )
    if head.get("unscored_genres"):
        note = unscored_note(head["name"], head["unscored_genres"])
        err_console.print(f"note: {note}", markup=False)
    if out is None:
        for r in rows:
            line = f"{r['id']}\t{'|'.join(r['genres']) or r['error']}"
            console.print(plain(line), markup=False, highlight=False)
    console.print(
        f"{len(rows)} items predicted ({failed} without usable input)"
        + (f"; wrote {plain(out)}" if out else ""),
        markup=False,
        highlight=False,
    )
