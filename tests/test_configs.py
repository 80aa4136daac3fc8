"""Every recipe (configs/ and the packaged chatfreeze/recipes/) parses and validates (unknown keys, bad values
and bad types fail)."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT

from chatfreeze.training.arguments import DEFAULT_RECIPE, parse_args

RECIPES = sorted((REPO_ROOT / "configs").glob("*.yaml")) + sorted(DEFAULT_RECIPE.parent.glob("*.yaml"))


def test_there_are_recipes():
    assert {p.name for p in RECIPES} >= {"default.yaml", "bitext.yaml"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_and_validates(recipe):
    model_args, data_args, _, freeze_args, training_args, _ = parse_args(["--config", str(recipe)])
    assert model_args.model_name_or_path
    assert freeze_args.num_frozen_layers
    assert training_args.learning_rate > 0 and training_args.output_dir.startswith("outputs/")
    text = recipe.read_text()
    assert text.startswith("#") and "scripts/train.py" in text.splitlines()[1]  # each recipe names its command


def test_cli_overrides_recipe():
    _, data_args, _, freeze_args, training_args, _ = parse_args(
        ["--config", str(DEFAULT_RECIPE), "--num_frozen_layers", "-3",
         "--learning_rate", "3e-5", "--max_length", "256"]
    )
    assert freeze_args.num_frozen_layers == "-3"
    assert training_args.learning_rate == 3e-5 and data_args.max_length == 256


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("num_frozen_layer: 3\n", "unknown option 'num_frozen_layer'"),
        ("learning_rate: fast\n", "option 'learning_rate' = 'fast' is not valid"),
        ("- just\n- a list\n", "a recipe is a mapping"),
        ("key: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_recipes_name_the_problem(tmp_path, body, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(body)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_args(["--config", str(recipe)])
