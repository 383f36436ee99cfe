"""One error hierarchy, rendered by each surface in its own words: the HTTP status comes from
the error's kind (never its wording), the CLI names the option, the service the field."""

from __future__ import annotations

import pytest

from embedgenre import errors
from embedgenre.serve.problems import from_library, status_of


@pytest.mark.parametrize(
    "error, status",
    [
        (errors.UnknownItemError("no item with id 'x'"), 404),
        (errors.UnknownHeadError("No head named 'h'"), 404),
        (errors.UnknownEncoderError("unknown encoder"), 404),
        (errors.NotAnImageError("poster p: not an image"), 415),
        (errors.TooManyPixelsError("poster p: too many pixels"), 413),
        (errors.IndexLockedError("locked by pid 1"), 409),
        (errors.WeightsNotFoundError("no weights"), 503),
        (errors.PredictorError("bad plot"), 400),
        (errors.EmbedgenreError("anything else"), 400),
    ],
)
def test_the_status_comes_from_the_kind(error, status):
    assert status_of(error) == status
    # the wording does not matter: the same text under another kind gets that kind's status
    assert status_of(errors.PredictorError(str(error))) == 400


def test_every_concrete_error_is_one_kind_a_surface_knows():
    kinds = (
        errors.BadInputError,
        errors.NotFoundError,
        errors.ConflictError,
        errors.UnavailableError,
    )
    concrete = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.EmbedgenreError)
    ]
    loose = [
        c.__name__
        for c in concrete
        if c not in (errors.EmbedgenreError, errors.IndexStoreError, errors.WriteError)
        and not issubclass(c, kinds)
        and not issubclass(c, (errors.IndexStoreError, errors.WriteError))
    ]
    assert loose == []


def test_what_fix_and_param_travel_to_the_service_and_python():
    e = errors.UnknownItemError("no item with id 'tt1';", "did you mean 'tt2'?", param="item_id")
    assert str(e) == "no item with id 'tt1'; did you mean 'tt2'?"
    assert (e.what, e.fix, e.param) == ("no item with id 'tt1';", "did you mean 'tt2'?", "item_id")
    api = from_library(e)
    assert (api.status, api.error, api.fix, api.field) == (
        404,
        "no item with id 'tt1'",
        "did you mean 'tt2'?",
        "id",  # the service's name for the field
    )
    # an error raised with one message still splits into what and fix
    api = from_library(errors.PredictorError("The plot text is empty; give a synopsis."))
    assert (api.error, api.fix, api.field) == ("The plot text is empty.", "Give a synopsis.", None)


def test_the_cli_names_its_option_for_the_parameter_at_fault(fixture_index_dir):
    from typer.testing import CliRunner

    from embedgenre.cli.app import app

    result = CliRunner().invoke(
        app, ["similar", "--id", "tt0000001", "--index", str(fixture_index_dir)]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --id: no item with id 'tt0000001'")
    assert "Traceback" not in result.output
