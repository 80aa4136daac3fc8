"""``data/README.md``, one function per part."""

from __future__ import annotations

import textwrap

from .company import Company
from .generate import MAX_APPROX_TOKENS, README_MARKER, split_stats
from .intents import INTENT_DESCRIPTIONS, INTENTS


def _readme_intro(company: Company, command: str) -> str:
    about = textwrap.fill(f"Synthetic multi-turn customer-support conversations for **{company.name}**, a "
                          f"fictional {company.facts['business']}. They are the default fine-tuning data for "
                          "chatfreeze.", width=110, break_on_hyphens=False)
    return f"""{README_MARKER}
# {company.name} customer-support dialogues

{about}

- **Made by:** `scripts/make_support_data.py` (the intents and dialogue templates: `scripts/support_data/`) from `company.yaml` in this
  folder (the company's system prompt, policies, products and invented customers), both written by hand for
  this project. No text was copied from other datasets; no real customers, orders or people are involved.
- **Licence:** Apache-2.0, the same as this repository.
- **Regenerate** (deterministic: the same command gives byte-identical files; `tests/test_support_data.py`
  checks that the committed files match):

  ```bash
  {command}
  ```

  The script only overwrites files it wrote itself (this README starts with a marker line; the JSONL files are
  recognised by their schema and ids); add `--force` to overwrite anything else. Edit `company.yaml` or the
  script, not these files.
"""


def _readme_files(tr: dict, va: dict) -> str:
    return f"""## Files and schema

| file | dialogues | avg. user turns | avg. messages (excl. system) | avg. / max approx. tokens |
|---|---:|---:|---:|---:|
| `train.jsonl` | {tr['dialogues']} | {tr['avg_user_turns']:.2f} | {tr['avg_messages']:.2f} | {tr['avg_tokens']:.0f} / {tr['max_tokens']} |
| `validation.jsonl` | {va['dialogues']} | {va['avg_user_turns']:.2f} | {va['avg_messages']:.2f} | {va['avg_tokens']:.0f} / {va['max_tokens']} |

One JSON object per line, in the Hugging Face chat `messages` format:

```json
{{"messages": [{{"role": "system", "content": "<SYSTEM_PROMPT>"}},
              {{"role": "user", "content": "..."}},
              {{"role": "assistant", "content": "..."}}, ...],
 "intent": "order_status", "id": "order_status-007"}}
```

- `messages[0]` is always the system prompt below; then user and assistant alternate, and the last turn is
  the assistant's.
- `intent` is one of the {len(INTENTS)} intents below; `id` is `<intent>-<number>`, unique across both files.
- Stratified split: every intent is in both files in (near-)equal shares, and no dialogue appears twice.
- Approx. tokens: a tokenizer-free estimate over all turns, system prompt included (`approx_tokens()` in the
  script; 0.98–1.11x the count of SmolLM2's tokenizer on this data). Every dialogue is capped at
  {MAX_APPROX_TOKENS}, i.e. under ~350 real tokens.
- Dialogues where the customer first gives a malformed order number and the assistant explains the format:
  {tr['format_corrections']} in train, {va['format_corrections']} in validation.
"""


def _readme_prompt_and_facts(company: Company) -> str:
    facts = "\n".join(f"| `{k}` | {v} |" for k, v in company.facts.items())
    return f"""## System prompt

Every dialogue starts with this exact system prompt (`system_prompt` in `company.yaml`); train and chat with
the same one.

```text
{company.system_prompt}
```

## Company facts

The assistant states only these policies, always with the same values (`facts` in `company.yaml`, which also
gives each one's values as data; the ids are the ones `facts_probe.jsonl` scores).
The assistant is written as a front-line agent that cannot see live order, stock or tracking data: it asks the
customer what My orders shows, explains the policy, and passes requests (cancellations, address changes,
escalations, complaints) on to the human teams.

| fact | value |
|---|---|
{facts}
"""


def _readme_intents(tr: dict, va: dict) -> str:
    intents = "\n".join(
        f"| `{i}` | {INTENT_DESCRIPTIONS[i]} | {tr['per_intent'][i]} | {va['per_intent'][i]} |" for i in INTENTS
    )
    return f"""## Intents

| intent | what the customer wants | train | validation |
|---|---|---:|---:|
{intents}
| **total** | | {tr['dialogues']} | {va['dialogues']} |
"""


def _readme_variation_and_limits(company: Company) -> str:
    return f"""## How the dialogues vary

Greetings, self-introductions (the assistant then uses the name), politeness and sign-offs come from several
templates each; roughly one user turn in ten has a typo, and about as many are typed casually (lower-case start,
no final full stop). Products ({len(company.products)} invented ones, {len(company.appliances)} of them appliances), prices, dates,
addresses, discount codes, countries and order numbers are drawn at random. In about a fifth of the order-number exchanges the customer first gives a malformed number (no `{company.order_prefix}`,
too few or too many digits, `#`, a space), and the assistant explains the format before the customer corrects it.
Branches follow what the customer says (order still `Processing` vs. `Dispatched`, inside vs. outside the
return, damage-report or warranty window, pending vs. completed duplicate charge, ...).

## Limitations

- Template-generated: phrasing is far less varied than real customer chats, and many assistant replies repeat
  word for word. A model trained on it learns this company's policies and tone, not general support skills.
- One fictional company with one fixed set of policies; products, prices, phone number (a range reserved for
  fiction) and the email domain (`.example`) are invented.
- English only; customers are cooperative, each dialogue has one main intent, and what a customer says about
  their order (e.g. "it still says Processing") is taken at face value.
- The assistant never looks anything up; actions such as "I've passed this to our orders team" describe a
  hand-off, not a real system.
"""


def render_readme(company: Company, splits: dict[str, list[dict]], seed: int, num_train: int,
                  num_validation: int) -> str:
    tr, va = (split_stats(splits[name], company.format_hints) for name in ("train", "validation"))
    command = (f"python scripts/make_support_data.py --seed {seed} --num_train {num_train} "
               f"--num_validation {num_validation} --out_dir data/")
    parts = (_readme_intro(company, command), _readme_files(tr, va), _readme_prompt_and_facts(company),
             _readme_intents(tr, va), _readme_variation_and_limits(company))
    return "\n".join(parts)
