"""The bad-input catalogue: every case runs a real command line (``chatfreeze COMMAND ...``, in-process through the
console script's entry point) and must give exactly one line on stderr, ``error: ...`` naming the file, line or
option and what to do, exit code 2, and leave what the user had untouched (a sentinel file in the output
directory, the input files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import build_chatml_tokenizer, build_tiny_model

from chatfreeze.cli import main as cli_main

GOOD = {"messages": [{"role": "user", "content": "Where is my order?"},
                     {"role": "assistant", "content": "It ships tomorrow."}]}


def jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny chat model, good data, and the odd models the catalogue needs."""
    root = tmp_path_factory.mktemp("bad-input")
    tokenizer = build_chatml_tokenizer()
    model = build_tiny_model("llama")
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    no_template = build_chatml_tokenizer()
    no_template.chat_template = None
    model.save_pretrained(root / "no-template")
    no_template.save_pretrained(root / "no-template")
    (root / "no-weights").mkdir()
    (root / "no-weights" / "config.json").write_text((root / "model" / "config.json").read_text())
    tokenizer.save_pretrained(root / "no-weights")
    truncated = root / "truncated"
    model.save_pretrained(truncated)
    tokenizer.save_pretrained(truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    from transformers import T5Config, T5ForConditionalGeneration

    T5ForConditionalGeneration(T5Config(vocab_size=259, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
                               ).save_pretrained(root / "encoder")
    tokenizer.save_pretrained(root / "encoder")
    jsonl(root / "good.jsonl", [GOOD] * 8)
    return root


def train_args(world: Path, out: Path, *extra: str, data: Path | None = None) -> list[str]:
    return ["train", "--model_name_or_path", str(world / "model"), "--dataset", str(data or world / "good.jsonl"),
            "--eval_dataset", "none", "--num_frozen_layers", "2", "--max_steps", "1",
            "--per_device_train_batch_size", "2", "--output_dir", str(out), "--report_to", "none", "--use_cpu",
            "true", "--eval_before_after", "false", "--save_strategy", "no", "--facts", "none", "--facts_probe",
            "none", *extra]  # not the default recipe's company: its facts sheet and probe chosen off


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_line_error(argv: list[str], capsys, *fragments: str, keep: list[Path] = ()) -> str:
    before = {path: digest(path) if path.is_dir() else path.read_bytes() for path in keep}
    code = cli_main(argv)
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err[-2000:])
    assert lines and lines[-1].startswith("error: "), err[-2000:]
    message = lines[-1]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    for path, state in before.items():
        assert (digest(path) if path.is_dir() else path.read_bytes()) == state, f"{path} was changed"
    return message


def out_dir_with_sentinel(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file")
    return out


# ---------------------------------------------------------------------------------------------- recipe YAML

RECIPES = [
    ("num_frozen_layers: 2\nlearning_rate: [1e-4\n", ["r.yaml:", "not valid YAML"]),
    ("num_frozen_layer: 3\n", ["r.yaml: unknown option 'num_frozen_layer'"]),
    ("learning_rate: fast\n", ["r.yaml: option 'learning_rate' = 'fast' is not valid"]),
    ("dataset: no/such/file.jsonl\n", ["no/such/file.jsonl"]),
]


@pytest.mark.parametrize(("body", "fragments"), RECIPES, ids=["syntax", "unknown-key", "wrong-type", "missing-path"])
def test_recipe_errors(world, tmp_path, capsys, body, fragments):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(body)
    argv = ["train", "--config", str(recipe), "--model_name_or_path", str(world / "model"), "--output_dir",
            str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none", "--eval_before_after", "false"]
    assert_one_line_error(argv, capsys, *fragments, keep=[recipe])


def test_recipe_that_is_a_directory(world, tmp_path, capsys):
    recipes = tmp_path / "configs"
    recipes.mkdir()
    (recipes / "mine.yaml").write_text("num_frozen_layers: 2\n")
    argv = ["train", "--config", str(recipes), "--model_name_or_path", str(world / "model"), "--output_dir",
            str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none"]
    assert_one_line_error(argv, capsys, f"--config {recipes}: a directory", f"e.g. {recipes / 'mine.yaml'}",
                          keep=[recipes])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- freeze specs

FREEZES = [
    (["--num_frozen_layers", "9"], ["--num_frozen_layers", "9"]),
    (["--num_frozen_layers", "two"], ["--num_frozen_layers 'two'"]),
    (["--extra_frozen_patterns", "model\\.nothing\\..*"], ["extra_frozen_patterns"]),
    (["--num_frozen_layers", "4", "--freeze_final_norm", "true"], ["freezes every parameter"]),
    (["--num_frozen_layers", "0", "--freeze_embeddings", "false"], ["freezes nothing"]),
    (["--kl_to_base", "0.5", "--fast_path", "false"], ["--kl_to_base", "fast path"]),
]


@pytest.mark.parametrize(("extra", "fragments"), FREEZES,
                         ids=["out-of-range", "not-a-number", "regex-matches-nothing", "freezes-everything",
                              "freezes-nothing", "conflicting-options"])
def test_freeze_spec_errors(world, tmp_path, capsys, extra, fragments):
    out = out_dir_with_sentinel(tmp_path)
    assert_one_line_error(train_args(world, out, "--overwrite_output_dir", "true", *extra), capsys, *fragments,
                          keep=[out])


# ------------------------------------------------------------------------------------------- option ranges

# Every numeric option with a range, one value outside it: (flags, fragments of the message). The options come
# from each concern's dataclass: data (DataArguments), freeze (FreezeArguments), retention (RetentionArguments),
# fast path, and the Trainer's own (checked in FreezeTrainingArguments before transformers or torch see them).
RANGES = [
    (["--max_length", "0"], ["--max_length 0", "at least 16"]),
    (["--max_length", "-5"], ["--max_length -5"]),
    (["--validation_split_ratio", "1.5"], ["--validation_split_ratio 1.5", "[0, 1)"]),
    (["--validation_split_ratio", "-0.1"], ["--validation_split_ratio -0.1"]),
    (["--max_train_samples", "0"], ["--max_train_samples 0", ">= 1"]),
    (["--max_train_samples", "-3"], ["--max_train_samples -3"]),
    (["--max_eval_samples", "-1"], ["--max_eval_samples -1"]),
    (["--general_window", "1"], ["--general_window 1"]),
    (["--general_stride", "0"], ["--general_stride 0"]),
    (["--general_max_windows", "-1"], ["--general_max_windows"]),
    (["--generation_eval_samples", "-1"], ["--generation_eval_samples"]),
    (["--generation_max_new_tokens", "0"], ["--generation_max_new_tokens"]),
    (["--probe_max_new_tokens", "0"], ["--probe_max_new_tokens 0"]),
    (["--probe_batch_size", "0"], ["--probe_batch_size 0"]),
    (["--lm_eval_limit", "0"], ["--lm_eval_limit 0"]),
    (["--num_frozen_layers", "1.5"], ["--num_frozen_layers '1.5'", "fraction"]),
    (["--num_frozen_layers", "-9"], ["--num_frozen_layers -9"]),
    (["--lora_r", "0"], ["--lora_r 0"]),
    (["--lora_alpha", "-1"], ["--lora_alpha -1"]),
    (["--lora_layers", "-1"], ["--lora_layers -1"]),
    (["--replay_ratio", "-1"], ["--replay_ratio -1"]),
    (["--replay_ratio", "11"], ["--replay_ratio 11", "0 (off) to 10"]),
    (["--kl_to_base", "-0.5"], ["--kl_to_base -0.5"]),
    (["--kl_to_base", "101"], ["--kl_to_base 101"]),
    (["--replay_max_new_tokens", "0"], ["--replay_max_new_tokens 0"]),
    (["--text_replay_ratio", "-0.1"], ["--text_replay_ratio -0.1", "0 (off) to 10"]),
    (["--text_replay_tokens", "4"], ["--text_replay_tokens 4", "8 to 8192"]),
    (["--text_replay_ratio", "0.1", "--text_replay", "no/such/corpus.txt"],
     ["--text_replay no/such/corpus.txt", "no such file", "'base'"]),
    (["--kl_sources", "support,texts"], ["--kl_sources 'support,texts'", "text"]),
    (["--alpha_tolerance", "-0.1"], ["--alpha_tolerance -0.1"]),
    (["--select_alpha", "0.5,1.5"], ["--select_alpha 0.5,1.5", "(0, 1]"]),
    (["--select_alpha", "0"], ["--select_alpha 0"]),
    (["--prefix_cache_max_gb", "0"], ["--prefix_cache_max_gb 0"]),
    (["--learning_rate", "-1"], ["--learning_rate -1", "> 0"]),
    (["--learning_rate", "nan"], ["--learning_rate nan"]),
    (["--num_train_epochs", "-1"], ["--num_train_epochs -1"]),
    (["--num_train_epochs", "0", "--max_steps", "-1"], ["--num_train_epochs 0", "--max_steps"]),
    (["--max_steps", "-5"], ["--max_steps -5", "-1 to train --num_train_epochs"]),
    (["--per_device_train_batch_size", "0"], ["--per_device_train_batch_size 0"]),
    (["--per_device_eval_batch_size", "0"], ["--per_device_eval_batch_size 0"]),
    (["--gradient_accumulation_steps", "0"], ["--gradient_accumulation_steps 0"]),
    (["--eval_accumulation_steps", "0"], ["--eval_accumulation_steps 0"]),
    (["--warmup_steps", "-1"], ["--warmup_steps -1"]),
    (["--logging_steps", "0"], ["--logging_steps 0"]),
    (["--save_steps", "-1"], ["--save_steps -1"]),
    (["--eval_steps", "-1"], ["--eval_steps -1"]),
    (["--save_total_limit", "-1"], ["--save_total_limit -1"]),
    (["--weight_decay", "-0.1"], ["--weight_decay -0.1"]),
    (["--max_grad_norm", "-1"], ["--max_grad_norm -1", "0 = no clipping"]),
    (["--adam_beta1", "1.5"], ["--adam_beta1 1.5", "[0, 1)"]),
    (["--adam_beta2", "1"], ["--adam_beta2 1"]),
    (["--adam_epsilon", "-1"], ["--adam_epsilon -1"]),
    (["--label_smoothing_factor", "2"], ["--label_smoothing_factor 2"]),
    (["--seed", "-1"], ["--seed -1"]),
    (["--data_seed", "-1"], ["--data_seed -1"]),
    (["--dataloader_num_workers", "-1"], ["--dataloader_num_workers -1"]),
]


@pytest.mark.parametrize(("extra", "fragments"), RANGES, ids=["=".join(flags[:2]).lstrip("-") for flags, _ in RANGES])
def test_option_out_of_range(world, tmp_path, capsys, extra, fragments):
    out = out_dir_with_sentinel(tmp_path)
    assert_one_line_error(train_args(world, out, "--overwrite_output_dir", "true", *extra), capsys, *fragments,
                          keep=[out])


EVALUATE_RANGES = [("--max_examples", "0"), ("--max_length", "0"), ("--window", "1"), ("--stride", "0"),
                   ("--max_windows", "-1"), ("--generation_samples", "-1"), ("--max_new_tokens", "0"),
                   ("--batch_size", "0")]


@pytest.mark.parametrize(("flag", "value"), EVALUATE_RANGES, ids=[flag.lstrip("-") for flag, _ in EVALUATE_RANGES])
def test_evaluate_count_out_of_range(world, capsys, flag, value):
    argv = ["evaluate", "--model_name_or_path", str(world / "model"), "--dataset", str(world / "good.jsonl"),
            "--general_text", str(world / "good.jsonl"), flag, value]
    assert_one_line_error(argv, capsys, f"{flag} {value}: must be at least", keep=[world / "good.jsonl"])


@pytest.mark.parametrize("flag", ["--facts_probe", "--output_dir"])
def test_evaluate_comparison_flags_without_a_base(world, capsys, flag):
    argv = ["evaluate", "--model_name_or_path", str(world / "model"), "--dataset", str(world / "good.jsonl"),
            flag, str(world / "good.jsonl")]
    assert_one_line_error(argv, capsys, f"{flag} ", "add --base BASE", keep=[world / "good.jsonl"])


def test_web_port_out_of_range(world, capsys):
    assert_one_line_error(["web", "--model_name_or_path", str(world / "model"), "--port", "-1"], capsys,
                          "--port -1", "1 to 65535")


# ---------------------------------------------------------------------------------------------------- data

def _data_cases():
    bad_role = {"messages": [{"role": "customer", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    empty_content = {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "Hello"}]}
    no_assistant = {"messages": [{"role": "user", "content": "Hi"}]}
    long = {"messages": [{"role": "user", "content": "x " * 400}, {"role": "assistant", "content": "y " * 400}]}
    return [
        ("bad-json-line", "train.jsonl", [GOOD, GOOD, '{"messages": [oops'], [], ["train.jsonl:3"]),
        ("empty-file", "train.jsonl", [], [], ["train.jsonl"]),
        ("unknown-role", "train.jsonl", [GOOD, bad_role], [], ["train.jsonl:2", "customer"]),
        ("empty-content", "train.jsonl", [empty_content], [], ["train.jsonl:1", "empty"]),
        ("no-assistant-turn", "train.jsonl", [no_assistant], [], ["train.jsonl:1", "assistant"]),
        ("all-over-long", "train.jsonl", [long, long], ["--max_length", "64", "--overlong_policy", "drop_example"],
         ["max_length"]),
        ("wrong-columns", "train.jsonl", [{"conversation": GOOD["messages"]}], [], ["train.jsonl", "messages"]),
    ]


@pytest.mark.parametrize(("name", "filename", "rows", "extra", "fragments"), _data_cases(),
                         ids=[case[0] for case in _data_cases()])
def test_data_errors(world, tmp_path, capsys, name, filename, rows, extra, fragments):
    data = jsonl(tmp_path / filename, rows)
    out = out_dir_with_sentinel(tmp_path)
    argv = train_args(world, out, "--overwrite_output_dir", "true", *extra, data=data)
    assert_one_line_error(argv, capsys, *fragments, keep=[out, data])


def test_non_utf8_data(world, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"messages": "caf\u00e9"}'.encode("latin-1") + b"\n")
    assert_one_line_error(train_args(world, tmp_path / "out", data=data), capsys, "train.jsonl", "UTF-8",
                          keep=[data])


def test_ragged_csv_row(world, tmp_path, capsys):
    data = tmp_path / "pairs.csv"
    data.write_text("prompt,response\nWhere is it?,Shipped.\nHow long,does,it,take?\n")
    assert_one_line_error(train_args(world, tmp_path / "out", data=data), capsys, "pairs.csv:3",
                          keep=[data])


@pytest.mark.parametrize("option", ["--dataset", "--eval_dataset"])
def test_dataset_directory_without_data_files(world, tmp_path, capsys, option):
    folder = tmp_path / "dialogues"
    folder.mkdir()
    (folder / "README.md").write_text("# our dialogues\n")
    (folder / "notes.txt").write_text("to do: export them\n")
    out = out_dir_with_sentinel(tmp_path)
    argv = train_args(world, out, "--overwrite_output_dir", "true", option, str(folder))
    assert_one_line_error(argv, capsys, str(folder), "no .jsonl, .json or .csv files", "give a data file",
                          keep=[out, folder])


CSVS = [
    ("no-known-columns", "id,text\n1,Where is it?\n2,Shipped.\n", [],
     ["pairs.csv", "cannot tell the format", "columns: id, text", "--prompt_column and --response_column"]),
    ("half-a-pair", "prompt\nWhere is it?\n", [], ["pairs.csv", "columns: prompt", "--response_column"]),
    ("named-column-missing", "question,answer\nWhere is it?,Shipped.\n",
     ["--prompt_column", "q", "--response_column", "answer"],
     ["pairs.csv", "no column 'q'", "columns: question, answer", "--prompt_column"]),
    ("messages-format-on-pairs", "question,answer\nWhere is it?,Shipped.\n", ["--data_format", "messages"],
     ["pairs.csv", "no 'messages' column", "--messages_column"]),
    ("header-only", "prompt,response\n", [], ["pairs.csv", "no dialogues found"]),
    ("empty-file", "", [], ["pairs.csv", "no dialogues found"]),
    ("empty-reply", "prompt,response\nWhere is it?,\n", [], ["pairs.csv:2", "empty content"]),
]


@pytest.mark.parametrize(("name", "body", "extra", "fragments"), CSVS, ids=[case[0] for case in CSVS])
def test_csv_without_usable_columns(world, tmp_path, capsys, name, body, extra, fragments):
    data = tmp_path / "pairs.csv"
    data.write_text(body)
    out = out_dir_with_sentinel(tmp_path)
    assert_one_line_error(train_args(world, out, "--overwrite_output_dir", "true", *extra, data=data), capsys,
                          *fragments, keep=[out, data])


def test_csv_in_a_dataset_directory_is_named(world, tmp_path, capsys):
    folder = tmp_path / "dialogues"
    folder.mkdir()
    (folder / "train.csv").write_text("id,text\n1,Where is it?\n")
    assert_one_line_error(train_args(world, tmp_path / "out", data=folder), capsys, str(folder / "train.csv"),
                          "cannot tell the format", keep=[folder])


# --------------------------------------------------------------------------------------------------- models

MODELS = [
    ("encoder", ["encoder", "not a causal language model"]),
    ("no-template", ["chat template"]),
    ("no-weights", ["no-weights"]),
    ("truncated", ["truncated"]),
]


@pytest.mark.parametrize(("model", "fragments"), MODELS, ids=[m for m, _ in MODELS])
def test_model_errors(world, tmp_path, capsys, model, fragments):
    argv = train_args(world, tmp_path / "out")
    argv[argv.index("--model_name_or_path") + 1] = str(world / model)
    assert_one_line_error(argv, capsys, "--model_name_or_path", *fragments, keep=[world / model])


# ----------------------------------------------------------------------------------------------- output dir

def test_output_dir_holding_another_run_is_not_overwritten(world, tmp_path, capsys):
    out = out_dir_with_sentinel(tmp_path)
    (out / "run_info.json").write_text("{}")
    assert_one_line_error(train_args(world, out), capsys, f"--output_dir {out}", "--overwrite_output_dir",
                          keep=[out])


def test_output_dir_that_is_a_file(world, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert_one_line_error(train_args(world, target), capsys, f"--output_dir {target}", keep=[target])


def test_disk_full_while_saving_says_so_in_one_line(world, tmp_path, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("chatfreeze.training.recipe.finish_output_dir", full)
    assert_one_line_error(train_args(world, tmp_path / "out"), capsys, "No space left on device")


# -------------------------------------------------------------------------------------- resume, merge, push

def test_a_corrupted_last_checkpoint_falls_back_to_the_previous_one(world, tmp_path, caplog):
    out = tmp_path / "out"
    argv = train_args(world, out, "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
                      "--save_total_limit", "3")
    assert cli_main(argv) == 0
    last = out / "checkpoint-4"
    (last / "model.safetensors").write_bytes(b"broken")
    (out / "run_info.json").unlink()  # as if the run had been killed after saving checkpoint-4
    caplog.set_level("INFO", logger="chatfreeze")
    assert cli_main(argv + ["--max_steps", "6"]) == 0
    assert "checkpoint-4 is damaged (model.safetensors unreadable" in caplog.text
    assert "Resuming from" in caplog.text and str(out / "checkpoint-2") in caplog.text
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6


def test_merge_with_a_bad_alpha_and_a_non_run(world, tmp_path, capsys):
    assert_one_line_error(["merge", str(world / "model"), str(tmp_path / "o"), "--alpha", "2"], capsys, "--alpha 2")
    assert_one_line_error(["merge", str(tmp_path), str(tmp_path / "o")], capsys, str(tmp_path))


def test_push_with_a_bad_repo_id(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    assert_one_line_error(["push", str(world / "model"), "--repo_id", "not a repo id"], capsys)
    assert_one_line_error(["push", str(world / "model"), "--repo_id", "acme/bot", "--space", "no space id"],
                          capsys, "--space no space id")


def test_chat_with_a_tokenizer_from_another_model(world, tmp_path, capsys):
    from transformers import AutoTokenizer

    other = tmp_path / "other"
    model = build_tiny_model("llama")
    model.save_pretrained(other)
    tokenizer = AutoTokenizer.from_pretrained(world / "model")
    tokenizer.add_tokens(["<|brand_new|>"] * 1 + [f"<extra_{i}>" for i in range(300)])
    tokenizer.save_pretrained(other)
    assert_one_line_error(["chat", "--model_name_or_path", str(other), "--prompt", "Hi"], capsys, str(other))


@pytest.mark.parametrize(("metric", "fragments"), [
    ("facts_test_accuracy", ("--metric_for_best_model facts_test_accuracy: is a test-half measure",)),
    ("eval_facts_test_accuracy", ("--metric_for_best_model facts_test_accuracy: is a test-half measure",)),
    ("facts_dev_acuracy", ("--metric_for_best_model facts_dev_acuracy: is not measured during training",
                           "facts_dev_accuracy")),
    ("facts_dev_kept", ("--metric_for_best_model facts_dev_kept: is now called facts_dev_accuracy_if_kept",)),
], ids=["test-half", "test-half-eval-prefix", "misspelt", "old-name"])
def test_best_metric_that_cannot_be_chosen(world, tmp_path, capsys, metric, fragments):
    """Refused before training (before the model loads), not at the Trainer's first evaluation."""
    out = out_dir_with_sentinel(tmp_path)
    argv = train_args(world, out, "--overwrite_output_dir", "true", "--metric_for_best_model", metric,
                      "--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "steps",
                      "--eval_steps", "1", "--save_steps", "1")
    assert_one_line_error(argv, capsys, *fragments, keep=[out])
