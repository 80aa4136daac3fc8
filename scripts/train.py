"""Freeze-tune a chat model on support dialogues, evaluate it and save it: ``chatfreeze train`` as a script.

    accelerate launch scripts/train.py                                   # the default recipe (packaged)
    accelerate launch scripts/train.py --config configs/bitext.yaml      # another recipe
    accelerate launch scripts/train.py --num_frozen_layers 24 --max_steps 50 --output_dir outputs/try

Every field of ModelArguments, DataArguments, FreezeArguments and transformers' TrainingArguments is a flag
(`--help` lists them); a flag overrides the same field of the `--config` recipe. The work is in
``chatfreeze.cli.train`` (also ``accelerate launch -m chatfreeze.cli.train``).
"""

import sys

from chatfreeze.cli.train import run

if __name__ == "__main__":
    sys.exit(run())
