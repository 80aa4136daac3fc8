"""Every recipe (configs/ and the packaged chatfreeze/recipes/) parses and validates (unknown keys, bad values
and bad types fail)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO_ROOT

from chatfreeze.training.arguments import DEFAULT_RECIPE, QUICK_RECIPE, parse_args

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
        ("extends: missing.yaml\n", "'extends: missing.yaml': no such recipe"),
        ("extends: r.yaml\n", "goes round in a circle"),
        ("extends: 3\n", "'extends' names the recipe this one extends"),
    ],
)
def test_bad_recipes_name_the_problem(tmp_path, body, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(body)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_args(["--config", str(recipe)])


def test_a_recipe_extends_another_and_overrides_it(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {DEFAULT_RECIPE}\nlearning_rate: 1.0e-5\ndataset: data/train.jsonl\n")
    base = parse_args(["--config", str(DEFAULT_RECIPE)])
    extended = parse_args(["--config", str(child)])
    assert extended.training.learning_rate == 1e-5 and extended.training.max_steps == base.training.max_steps
    assert extended.freeze == base.freeze and extended.evaluation == base.evaluation
    assert extended.data.dataset == str(tmp_path / "data" / "train.jsonl")  # resolved against its own folder
    assert parse_args(["--config", str(child), "--learning_rate", "3e-5"]).training.learning_rate == 3e-5


# A shipped recipe that a study measured: (recipe file, study row, options the recipe may set differently because
# they do not change what is trained: where and how often checkpoints are written).
MEASURED_RECIPES = [
    ("default.yaml", "freeze50_drills20_1ep_lr3_text", {"save_steps"}),
    ("facts.yaml", "freeze50_drills60_2ep_text_lr3", set()),
]


@pytest.mark.parametrize(("recipe_name", "row_name", "may_differ"), MEASURED_RECIPES)
def test_a_shipped_recipe_is_the_facts_study_row_it_reports(recipe_name, row_name, may_differ):
    """chatfreeze/recipes/default.yaml and facts.yaml = the quick recipe (where scripts/facts_study.py starts) +
    the options of the study's row, so docs/facts.md's figures for that row are the recipe's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("facts_study", REPO_ROOT / "scripts" / "facts_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    row = next(v for v in study.VARIANTS if v.name == row_name)
    recipe = parse_args(["--config", str(DEFAULT_RECIPE.parent / recipe_name)])
    assert study.commands(row, study.parse_args([]), Path("work"))[0][2:4] == ["--config", str(QUICK_RECIPE)]
    studied = parse_args(["--config", str(QUICK_RECIPE), *row.overrides])

    assert Path(recipe.facts.facts).resolve() == (REPO_ROOT / studied.facts.facts).resolve()
    studied.facts.facts = recipe.facts.facts
    for part in ("model", "freeze", "facts", "data", "evaluation"):
        assert getattr(recipe, part) == getattr(studied, part), part
    mine, theirs = recipe.training.to_dict(), studied.training.to_dict()
    differing = {key for key in mine if mine[key] != theirs[key] and "output_dir" not in key}
    assert differing <= {"logging_dir"} | may_differ, differing
