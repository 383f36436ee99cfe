"""The Predictor service: heads and encoders loaded once, answers as dataclasses, the same
answers as `embedgenre predict --json`."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from embedgenre import predict as service
from embedgenre.cli.app import app
from embedgenre.errors import PredictorError
from embedgenre.heads import train_head
from embedgenre.predict import Predictor, PredictResult
from embedgenre.predictors import HeadSpec
from embedgenre.store import GenreIndex

PLOT = "A detective hunts a serial killer through the rainy city."


@pytest.fixture(scope="module")
def index_with_head(fixture_index_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict-service") / "index"
    shutil.copytree(fixture_index_dir, out)
    train_head(GenreIndex.open(out), HeadSpec("linear", "plot", folds=None), name="plot-linear")
    return out


def test_predictor_loads_once_and_answers_like_the_cli(index_with_head, monkeypatch):
    loads = []
    real = service.load_query_encoders
    monkeypatch.setattr(service, "load_query_encoders", lambda *a: loads.append(a) or real(*a))
    predictor = Predictor.open(index_with_head)
    first = predictor.predict(plot=PLOT, top=5)
    second = predictor.predict(plot=PLOT, top=5)
    assert isinstance(first, PredictResult) and len(loads) == 1
    assert first.to_dict() == second.to_dict()
    assert first.head["name"] == "plot-linear"
    (r,) = first.results
    assert r.genres and set(r.genres) <= {g.genre for g in r.ranking}
    assert [g.score for g in r.ranking] == sorted((g.score for g in r.ranking), reverse=True)
    cli = CliRunner().invoke(
        app, ["predict", "--plot", PLOT, "--index", str(index_with_head), "--json"]
    )
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == first.to_dict()


def test_predictor_refuses_empty_input_clearly(index_with_head):
    predictor = Predictor.open(index_with_head)
    with pytest.raises(PredictorError, match="No poster and no plot given"):
        predictor.predict()
    with pytest.raises(PredictorError, match="plot text is empty") as e:
        predictor.predict(plot="   ")
    assert e.value.param == "plot"
    with pytest.raises(PredictorError, match="A title goes with a plot") as e:
        predictor.predict(title="Heat")
    assert e.value.param == "title" and "--" not in str(e.value)
