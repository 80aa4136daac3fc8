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
    # Its own dialogues, so its own facts sheet and probe too (another company's data on Kestrel's facts is refused).
    child.write_text(f"extends: {DEFAULT_RECIPE}\nlearning_rate: 1.0e-5\ndataset: data/train.jsonl\n"
                     "facts: data/facts.yaml\nfacts_probe: data/facts_probe.jsonl\n")
    base = parse_args(["--config", str(DEFAULT_RECIPE)])
    extended = parse_args(["--config", str(child)])
    assert extended.training.learning_rate == 1e-5 and extended.training.max_steps == base.training.max_steps
    assert extended.freeze == base.freeze
    assert extended.data.dataset == str(tmp_path / "data" / "train.jsonl")  # resolved against its own folder
    assert extended.evaluation.facts_probe == str(tmp_path / "data" / "facts_probe.jsonl")
    extended.evaluation.facts_probe = base.evaluation.facts_probe
    assert extended.evaluation == base.evaluation
    assert parse_args(["--config", str(child), "--learning_rate", "3e-5"]).training.learning_rate == 3e-5


# A shipped recipe that a study measured: (recipe file, study row, options the recipe may set differently because
# they do not change what is trained: where and how often checkpoints are written).
MEASURED_RECIPES = [
    ("default.yaml", "freeze50_drills20need_1ep_lr3_text", {"save_steps"}),
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


# --- the recipe and the command line together ---------------------------------------------------------------

def test_a_cli_choice_of_drills_replaces_the_recipes_other_choice(tmp_path):
    """--facts_per_fact and --facts_ratio are one choice made two ways: the default recipe sets facts_per_fact, so
    --facts_ratio on the command line must replace it (it was refused as "both given"); both on the command line
    stay an error, and a recipe that extends another replaces the parent's choice the same way."""
    ratio = parse_args(["--config", str(DEFAULT_RECIPE), "--facts_ratio", "0.5"]).facts
    assert ratio.facts_ratio == 0.5 and ratio.facts_per_fact is None
    with pytest.raises(ValueError, match="give one of them"):
        parse_args(["--config", str(DEFAULT_RECIPE), "--facts_ratio", "0.5", "--facts_per_fact", "3"])

    by_ratio = tmp_path / "by_ratio.yaml"
    by_ratio.write_text(f"extends: {DEFAULT_RECIPE}\nfacts_ratio: 2.0\n")
    child = parse_args(["--config", str(by_ratio)]).facts
    assert child.facts_ratio == 2.0 and child.facts_per_fact is None
    per_fact = parse_args(["--config", str(by_ratio), "--facts_per_fact", "5"]).facts
    assert per_fact.facts_per_fact == 5 and per_fact.facts_ratio is None
    both = tmp_path / "both.yaml"
    both.write_text(f"extends: {DEFAULT_RECIPE}\nfacts_ratio: 2.0\nfacts_per_fact: 4\n")
    with pytest.raises(ValueError, match="give one of them"):
        parse_args(["--config", str(both)])


OTHER_COMPANY = "You are the support assistant of Acme Bikes."


@pytest.mark.parametrize(("extra", "named"), [
    (["--dataset", "acme.jsonl"], "--dataset is not Kestrel & Co.'s (the packaged recipe's), but --facts and "
                                  "--facts_probe still are: set them too: your own files, a FAQ (--faq FILE), "
                                  "or --facts none --facts_probe none"),
    (["--system_prompt", OTHER_COMPANY], "--system_prompt is not Kestrel"),
    (["--dataset", "acme.jsonl", "--facts", "none"], "but --facts_probe still is: set it too: your own file, a FAQ "
                                                     "(--faq FILE), or --facts_probe none"),
    (["--dataset", "acme.jsonl", "--facts_probe", "none"], "but --facts still is"),
], ids=["dataset", "system-prompt", "probe-kept", "sheet-kept"])
def test_another_companys_data_on_the_default_recipe_needs_its_own_facts(extra, named):
    """Never Kestrel & Co.'s facts drilled into (or graded on) another company's bot."""
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        parse_args(["--config", str(DEFAULT_RECIPE), *extra])


def test_another_companys_data_with_its_facts_chosen_is_accepted(tmp_path):
    chosen_off = parse_args(["--config", str(DEFAULT_RECIPE), "--dataset", "acme.jsonl", "--system_prompt",
                             OTHER_COMPANY, "--facts", "none", "--facts_probe", "none"])
    assert chosen_off.facts.facts is None and chosen_off.evaluation.facts_probe is None
    assert chosen_off.data.dataset == "acme.jsonl" and chosen_off.data.system_prompt == OTHER_COMPANY
    # Kestrel's own dialogues named again, or the quick recipe as it is: still Kestrel's bot, nothing to choose.
    assert parse_args(["--config", str(DEFAULT_RECIPE), "--dataset", str(REPO_ROOT / "data" / "train.jsonl")])
    assert parse_args(["--config", str(QUICK_RECIPE), "--max_steps", "5"])

    own = tmp_path / "acme.yaml"  # a user's recipe on top of the default, its company's four options set
    own.write_text(f"extends: {DEFAULT_RECIPE}\ndataset: acme.jsonl\nsystem_prompt: {OTHER_COMPANY}\n"
                   "facts: acme_facts.yaml\nfacts_probe: acme_probe.jsonl\n")
    args = parse_args(["--config", str(own)])
    assert args.facts.facts == str(tmp_path / "acme_facts.yaml")
    assert args.evaluation.facts_probe == str(tmp_path / "acme_probe.jsonl")
    assert args.facts.facts_per_fact == 20  # the default recipe's drilling, now of Acme's sheet

    partial = tmp_path / "partial.yaml"  # ... but one that sets only the dialogues is refused like the CLI
    partial.write_text(f"extends: {DEFAULT_RECIPE}\ndataset: acme.jsonl\n")
    with pytest.raises(ValueError, match="--dataset is not Kestrel"):
        parse_args(["--config", str(partial)])
    with pytest.raises(ValueError, match="but --facts_probe still is"):
        parse_args(["--config", str(QUICK_RECIPE), "--dataset", "acme.jsonl"])  # no drills, but Kestrel's probe


def test_a_faq_or_the_faq_recipe_chooses_the_facts(tmp_path):
    """--faq drafts the run's facts sheet and probe (so the user chose both); the FAQ recipe is packaged but holds
    no company's facts (facts: none), so a user's dialogues or system prompt on it need nothing more."""
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nHow much is a bike?,It is €18 a day.\n")
    own = ["--dataset", "acme.jsonl", "--system_prompt", OTHER_COMPANY]
    assert parse_args(["--config", str(DEFAULT_RECIPE), *own, "--faq", str(faq)])
    assert parse_args(["--config", str(DEFAULT_RECIPE), *own, "--facts", str(faq)])
    assert parse_args(["--config", str(DEFAULT_RECIPE), "--dataset", "none", "--system_prompt", "", "--faq", str(faq)])
    # ... but never with Kestrel & Co.'s dialogues or system prompt still in the run.
    with pytest.raises(ValueError, match=r"--faq: the recipe's --dataset and --system_prompt are Kestrel .*faq\.yaml"):
        parse_args(["--config", str(DEFAULT_RECIPE), "--faq", str(faq)])
    with pytest.raises(ValueError, match="--faq: the recipe's --system_prompt is Kestrel"):
        parse_args(["--config", str(DEFAULT_RECIPE), "--dataset", "acme.jsonl", "--facts", str(faq)])
    faq_recipe = DEFAULT_RECIPE.with_name("faq.yaml")
    if faq_recipe.is_file():
        assert parse_args(["--config", str(faq_recipe), "--dataset", "acme.jsonl", "--system_prompt", OTHER_COMPANY])


def test_the_refusal_is_one_line_and_exit_status_2(capsys):
    from chatfreeze.cli import main

    assert main(["train", "--dataset", "acme.jsonl", "--output_dir", "outputs/never"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --dataset is not Kestrel & Co.'s"), err
    assert "--facts none --facts_probe none" in err[0]
