"""The dialogue builder: one conversation under construction, ``u``/``a`` fill ``{slots}`` and append a turn."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .company import Company
from .phrases import FORMAT_HINT, THANKS, WELCOME


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 2)
    kind = rng.randrange(3)
    if kind == 0:  # swap two neighbouring letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]  # double a letter


def _join(answer: str, suffix: str) -> str:
    """``answer`` + ``suffix`` (which starts with a space), with a full stop between them if needed."""
    if suffix and not answer.endswith((".", "!", "?")):
        answer += "."
    return answer + suffix


class Dialogue:
    """One conversation under construction; ``u``/``a`` fill ``{slots}`` and append a turn."""

    def __init__(self, rng: random.Random, company: Company) -> None:
        self.rng = rng
        self.company = company
        self.messages: list[dict[str, str]] = [{"role": "system", "content": company.system_prompt}]
        low, high = 10 ** (company.order_digits - 1), 10**company.order_digits - 1
        number = rng.randint(low, high)
        # the example number in FORMAT_HINT is never a customer's order
        while company.order_prefix + str(number) == company.facts["order_number_example"]:
            number = rng.randint(low, high)
        self.digits = str(number)
        self.order = company.order_prefix + self.digits
        self.item = rng.choice(company.products)
        self.name: str | None = None

    # -- helpers -------------------------------------------------------------------------------------------
    def pick(self, options: Sequence[str]) -> str:
        return self.rng.choice(options)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def slots(self, extra: dict[str, str]) -> dict[str, str]:
        base = {
            **self.company.facts,
            "o": self.order,
            "p": self.item.name,
            "s": self.item.short,
            "price": self.item.price,
            "n": f", {self.name}" if self.name else "",
        }
        base.update(extra)
        return base

    def fill(self, template: str, extra: dict[str, str]) -> str:
        try:
            return template.format(**self.slots(extra))
        except KeyError as exc:
            raise ValueError(f"a dialogue template needs {{{exc.args[0]}}}, which is no fact id in the "
                             f"company file: {template!r}") from None

    def _style_user(self, template: str) -> str:
        """Occasional typos and casual writing; words holding a {slot} are never touched."""
        if self.chance(0.12):
            words = template.split(" ")
            candidates = [i for i, w in enumerate(words) if w.isalpha() and w.islower() and len(w) >= 5]
            if candidates:
                i = self.rng.choice(candidates)
                words[i] = _typo(self.rng, words[i])
                template = " ".join(words)
        if self.chance(0.12):
            template = template[:1].lower() + template[1:]
            if template.endswith(".") and not template.endswith("}."):
                template = template[:-1]
        return template

    def u(self, template: str, **extra: str) -> None:
        text = self.fill(self._style_user(template), extra)
        self.messages.append({"role": "user", "content": text})

    def a(self, template: str, **extra: str) -> None:
        text = self.fill(template, extra)
        self.messages.append({"role": "assistant", "content": text})

    def hi(self) -> str:
        """A user greeting, sometimes with the user's name (which the assistant may then use)."""
        greeting = self.pick(("Hi! ", "Hello. ", "Hey there. ", "Good morning! ", "Hi. ", "Good evening. ", "", "", ""))
        if self.chance(0.3):
            self.name = self.pick(self.company.names)
            greeting += self.pick(("I'm {N}. ", "{N} here. ", "My name is {N}. ", "This is {N}. ")).replace(
                "{N}", self.name
            )
        return greeting

    def ahi(self) -> str:
        """The assistant's opening words."""
        if self.name:
            return self.pick(("Hi {N}! ", "Hello {N}! ", "Thanks, {N}. ", "Hi {N}. ")).replace("{N}", self.name)
        return self.pick(("", "", "Hi! ", "Hello. ", "Hi there. "))

    def user_turns(self) -> int:
        return sum(m["role"] == "user" for m in self.messages)

    # -- shared exchanges ----------------------------------------------------------------------------------
    def wrong_number(self) -> str:
        """The order number as customers mistype it: no or a wrong prefix, a digit too few or too many."""
        d, prefix = self.digits, self.company.order_prefix
        letters = prefix[:-1]  # "KC" of "KC-"
        extra_digit = f"{prefix}{d}{self.rng.randrange(10)}"
        return self.pick((d, f"{letters}{d}", f"#{d}", f"{prefix}{d[:-1]}", extra_digit, f"{letters[::-1]}-{d}",
                          f"{letters} {d}"))

    def give_order(self, suffix: str = "") -> None:
        """The user's answer to an order-number question, sometimes in a wrong format first."""
        if self.chance(0.22):
            self.u(self.pick(("It's {w}.", "{w}", "Order {w}", "the number is {w}", "I think it's {w}.")),
                   w=self.wrong_number())
            self.a(self.pick(FORMAT_HINT))
            self.u(_join(self.pick(("Sorry, it's {o}.", "Ah, found it: {o}.", "Right, {o}.", "ok here: {o}",
                                    "My mistake, it's {o}.")), suffix))
        else:
            self.u(_join(self.pick(("It's {o}.", "{o}", "Sure: {o}.", "The order number is {o}.", "Here you go: {o}.",
                                    "Of course: {o}.")), suffix))

    def close(self, force: bool = False, p: float = 0.6) -> None:
        """Optional thanks + goodbye; forced when the user has spoken only once."""
        if force or self.user_turns() < 2 or self.chance(p):
            self.u(self.pick(THANKS))
            self.a(self.pick(WELCOME))
