"""The options of the methods that keep old skills (collected into ``FreezeTrainingArguments``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..facts.exposure import DRILLS_SOURCE

# The sources of training examples (the recipe's names), each of which the KL term may or may not cover.
KL_SOURCES = ("support", "replay", DRILLS_SOURCE, "text")
# Earlier names, refused with the current one: an alias would keep two names for one thing alive.
RENAMED_SOURCES = {"facts": DRILLS_SOURCE}


def missing_text_file(path: str) -> ValueError:
    """The one-line error for a --text_replay file that is not there (options check it; the reader too)."""
    return ValueError(f"--text_replay {path}: no such file; give 'base' or a plain-text (.txt) or JSONL file with a "
                      "'text' field.")


@dataclass
class RetentionArguments:
    replay_ratio: float = field(
        default=0.0,
        metadata={"help": "Self-distillation replay: add this many replay examples per support dialogue (0.25 = one "
                  "for every four), each a skills-pool prompt (never the scored probe half) with the base model's "
                  "own greedy reply, loss on the reply only. Generated once per base model and cached."},
    )
    kl_to_base: float = field(
        default=0.0,
        metadata={"help": "Add beta * KL(base || tuned) at every labelled token of the --kl_sources examples to the loss. "
                  "The base's distribution comes from a frozen copy of the trainable blocks run on the boundary "
                  "states the fast path computes anyway: only the top is run twice. Needs the fast path."},
    )
    kl_sources: str = field(
        default="support,replay,text",
        metadata={"help": "Which training examples get the --kl_to_base term, comma-separated: support (the "
                  "dialogues), replay, drills (the --facts drills), text (the --text_replay passages). The default "
                  "leaves the drills out: there the KL would pull each new fact's value back toward the base "
                  "model's guess."},
    )
    replay_max_new_tokens: int = field(default=96, metadata={
        "help": "Length cap of the base's replay replies; a reply cut by it is trained without its end-of-turn "
                "marker (the model should not learn to stop there)."})
    replay_prompts: str = field(
        default="builtin",
        metadata={"help": "Replay prompts: 'builtin' (the pool half of the shipped skills set) or a JSONL file of "
                  "the skills format whose 'pool' items are used."},
    )

    text_replay: str = field(
        default="base",
        metadata={"help": "Plain-text replay's source (with --text_replay_ratio > 0): 'base' (passages the base "
                  "model writes itself, sampled once per base model and cached) or a file of your own general "
                  "text (.txt: the whole text; .jsonl: a 'text' field per line), cut into windows. Trained with "
                  "the LM loss and the KL to the base (--kl_sources text), so plain-text modelling is kept too."},
    )
    text_replay_ratio: float = field(
        default=0.0,
        metadata={"help": "Plain-text replay examples per support dialogue (0 = off; 0.25 = one for every four)."},
    )
    text_replay_tokens: int = field(default=128, metadata={"help": "Tokens in each plain-text replay passage."})

    select_alpha: str = field(
        default="",
        metadata={"help": "After training, try these alphas (comma-separated, e.g. 0.5,0.75,1) of the trained "
                  "blocks interpolated toward the base, each measured without generation (support perplexity; "
                  "self-agreement with the base's skills replies and general-text perplexity), and keep the one "
                  "that learned most among those within --alpha_tolerance of the base. Needs the before/after "
                  "evaluation. Recorded in evaluation.json, run_info.json and the card."},
    )
    alpha_tolerance: float = field(
        default=0.02,
        metadata={"help": "The keep tolerance of --select_alpha and of --metric_for_best_model facts_dev_accuracy_if_kept: the "
                  "largest relative rise of the self-agreement ratio and of the general-text perplexity over the "
                  "base's (0.02 = 2%)."},
    )

    def kl_covers(self, source: str) -> bool:
        """Whether the KL term applies to the examples of ``source`` (one of ``KL_SOURCES``)."""
        return source in {name.strip() for name in self.kl_sources.split(",")}

    def validate_retention(self) -> None:
        if not 0.0 <= self.replay_ratio <= 10.0:
            raise ValueError(f"--replay_ratio {self.replay_ratio}: give replay examples per support dialogue, "
                             "0 (off) to 10.")
        if not 0.0 <= self.kl_to_base <= 100.0:
            raise ValueError(f"--kl_to_base {self.kl_to_base}: give a weight from 0 (off) to 100.")
        sources = [name.strip() for name in self.kl_sources.split(",") if name.strip()]
        for old, new in RENAMED_SOURCES.items():
            if old in sources:
                raise ValueError(f"--kl_sources {self.kl_sources!r}: '{old}' is now called '{new}' (the fact drills "
                                 "have one name, as in the exposure report and the log).")
        unknown = sorted(set(sources) - set(KL_SOURCES))
        if unknown or not sources:
            raise ValueError(f"--kl_sources {self.kl_sources!r}: give some of {', '.join(KL_SOURCES)}, "
                             "comma-separated.")
        if self.replay_max_new_tokens < 1:
            raise ValueError(f"--replay_max_new_tokens {self.replay_max_new_tokens}: must be >= 1.")
        if not 0.0 <= self.text_replay_ratio <= 10.0:
            raise ValueError(f"--text_replay_ratio {self.text_replay_ratio}: give plain-text examples per support "
                             "dialogue, 0 (off) to 10.")
        if not 8 <= self.text_replay_tokens <= 8192:
            raise ValueError(f"--text_replay_tokens {self.text_replay_tokens}: give a passage length of 8 to 8192 "
                             "tokens.")
        if self.text_replay_ratio > 0 and self.text_replay != "base":
            from pathlib import Path

            if not Path(self.text_replay).is_file():
                raise missing_text_file(self.text_replay)
        if self.select_alpha:
            from .alpha_selection import parse_alphas

            parse_alphas(self.select_alpha)
        if not 0.0 <= self.alpha_tolerance <= 10.0:
            raise ValueError(f"--alpha_tolerance {self.alpha_tolerance}: give a relative tolerance, e.g. 0.02.")
