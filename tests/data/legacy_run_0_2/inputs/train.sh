#!/bin/sh
# Usage: train.sh OUTPUT_DIR [extra flags]; run from /work/wt/legacy (chatfreeze 0.2, commit 89a59f8).
D=/tmp/cf-legacy-0.2
out=$1; shift
PYTHONPATH=/work/wt/legacy HF_HUB_OFFLINE=1 CHATFREEZE_MEASUREMENT_CACHE=$D/measurements \
/work/main/.venv/bin/python -m chatfreeze.cli.train \
  --model_name_or_path $D/tiny-llama --dataset $D/train.jsonl --eval_dataset $D/validation.jsonl \
  --system_prompt "You are a shop's assistant." --max_length 256 \
  --num_frozen_layers 2 --max_steps 2 --per_device_train_batch_size 4 --learning_rate 1e-2 --warmup_steps 0 \
  --logging_steps 1 --eval_strategy no --save_strategy no --seed 0 \
  --eval_before_after true --facts_probe $D/facts.jsonl --skills_probe $D/skills.jsonl \
  --general_text $D/general.txt --general_window 64 --general_stride 32 --general_max_windows 4 \
  --generation_eval_samples 2 --generation_max_new_tokens 4 --probe_max_new_tokens 4 \
  --replay_ratio 0 --kl_to_base 0 --report_to none --use_cpu true \
  --output_dir "$out" "$@"
