"""The output directory a training run writes into: what it may overwrite, and which checkpoint it resumes from.

A run never writes over a directory it did not make unless told to (``--overwrite_output_dir true``), and resumes
(``--resume_from_checkpoint auto``) from the newest checkpoint that is whole: one cut short by a kill or a full disk
is named and skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..common import first_line
from ..rundir import RUN_INFO_FILENAME
from .arguments import FreezeTrainingArguments

logger = logging.getLogger(__name__)


class OutputDirError(ValueError):
    """The output directory holds something a run must not overwrite."""


def check_output_dir(training_args: FreezeTrainingArguments) -> str | None:
    """Return the checkpoint to resume from, or None; refuse to write over a directory we did not make."""
    out = Path(training_args.output_dir)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--output_dir {out}: is a file, not a directory; choose another --output_dir.")
    wanted = training_args.resume_from_checkpoint
    if wanted not in (None, "auto", "none", "None", ""):
        if not Path(wanted).is_dir():
            raise OutputDirError(f"--resume_from_checkpoint {wanted}: no such checkpoint directory.")
        return wanted
    if not out.is_dir() or not any(out.iterdir()):
        return None
    last = get_last_checkpoint(str(out))
    if last and wanted == "auto":
        return usable_checkpoint(out)
    if training_args.overwrite_output_dir:
        return None
    what = "a finished run" if (out / RUN_INFO_FILENAME).is_file() else "files"
    raise OutputDirError(
        f"--output_dir {out} already holds {what} and no checkpoint to resume; choose another --output_dir "
        "or pass --overwrite_output_dir true to replace what is there."
    )


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (a file cut short by a kill or a full disk), or None."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError) as err:
        return f"trainer_state.json unreadable ({type(err).__name__})"
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights and not list(checkpoint.glob("pytorch_model*.bin")):
        return "no weights"
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    handle.get_slice(name)
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            return f"{file.name} unreadable ({first_line(err)})"
    return None


def usable_checkpoint(out: Path) -> str:
    """The newest checkpoint in ``out`` that can be resumed from; a damaged newer one is named and skipped."""
    checkpoints = sorted((p for p in out.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and
                          p.name.split("-")[-1].isdigit()), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for checkpoint in checkpoints:
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint)
        logger.warning("Checkpoint %s is damaged (%s): skipping it; resuming from an earlier one (delete it "
                       "once the run has finished).", checkpoint, problem)
    raise OutputDirError(f"--output_dir {out}: every checkpoint in it is damaged ({checkpoints[0].name}: "
                         f"{checkpoint_problem(checkpoints[0])}); delete them, or pass --resume_from_checkpoint none "
                         "--overwrite_output_dir true to start again.")
