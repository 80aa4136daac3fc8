"""The values a company's text states -- prices, durations, clock times, weekdays, dates, emails, phone numbers,
URLs, percentages, quantities, street addresses -- found in text, compared, and turned into regexes.

``find_values(text)`` returns each value in text order with its ``kind`` (one of ``KINDS``), the text as written,
a canonical ``key`` (two values of one kind are the same value when their keys are equal: ``€18`` and
``18.00 euros`` are both ``EUR 18``) and a ``pattern``: a regex, searched case-insensitively like a facts sheet's
patterns, that accepts the ways a reply writes the value (``€18``, ``18 euros``, ``EUR 18.00``; ``8:30``,
``08:30``, ``8.30 am``; ``+31 20 555 0199`` with or without spaces, or ``020 5550199``) and not a neighbour
(``€180``, ``€1.80``, ``8:30 pm``, ``+31 20 555 0198``). ``value_kinds(text)`` is the set of kinds a text states.

Finding is by rules, not a model: it runs in microseconds and is the same on every machine, and a rule's guess is
visible in the draft sheet a person reads. Kinds are searched in a fixed order and a span is claimed by the first
kind that matches it, so ``info@pedalo.nl`` is an email (not a URL) and ``18 years old`` an age (not a duration).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

KINDS = ("email", "url", "address", "date", "phone", "money", "percent", "time", "quantity", "duration", "weekday")

NUMBER_WORDS = {
    1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
    11: "eleven", 12: "twelve", 13: "thirteen", 14: "fourteen", 15: "fifteen", 16: "sixteen", 17: "seventeen",
    18: "eighteen", 19: "nineteen", 20: "twenty", 30: "thirty", 40: "forty", 45: "forty-five", 50: "fifty",
    60: "sixty", 90: "ninety", 100: "a hundred",
}
WORD_NUMBERS = {word: number for number, word in NUMBER_WORDS.items() if number != 100}
_WORD = "|".join(sorted(map(re.escape, WORD_NUMBERS), key=len, reverse=True))
# A written number: 1,200 (thousands), 4.99 / 4,99 (decimals), 18, or a number word.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+(?:[.,]\d+)?)"
_NUMW = rf"(?:{_NUM}|\b(?:{_WORD})\b)"
_RANGE = r"\s*(?:-|–|—|to|and)\s*"

CURRENCIES = {  # code: (symbols, words); a reply may write any of them
    "EUR": (("€",), ("eur", "euros?")),
    "GBP": (("£",), ("gbp", "pounds?", "quid")),
    "USD": (("$", "us$"), ("usd", "dollars?")),
    "CHF": ((), ("chf", "swiss francs?", "francs?")),
    "INR": (("₹",), ("inr", "rupees?")),
    "JPY": (("¥",), ("jpy", "yen")),
}
_SYMBOLS = {symbol: code for code, (symbols, _) in CURRENCIES.items() for symbol in symbols}
_SYMBOL = "|".join(re.escape(s) for s in sorted(_SYMBOLS, key=len, reverse=True))
_CURWORD = "|".join(word for _, words in CURRENCIES.values() for word in words)

DURATION_UNITS = {"minute": r"minutes?|mins?", "hour": r"hours?|hrs?|h", "day": r"days?",
                  "week": r"weeks?|wks?", "month": r"months?", "year": r"years?|yrs?"}
QUANTITY_UNITS = {
    "kg": r"kg|kilos?|kilograms?", "g": r"g|grams?", "km": r"km|kilomet(?:er|re)s?", "mile": r"miles?",
    "m": r"m|met(?:er|re)s?", "cm": r"cm|centimet(?:er|re)s?", "litre": r"l|lit(?:er|re)s?", "ml": r"ml",
    "gb": r"gb|gigabytes?", "tb": r"tb|terabytes?", "mb": r"mb|megabytes?", "w": r"w|watts?", "kwh": r"kwh",
    "km/h": r"km/h|kph", "mph": r"mph", "mbps": r"mbps|mbit/s", "gbps": r"gbps|gbit/s", "speed": r"speeds?|gears?", "person": r"people|persons?|guests?|adults?",
    "child": r"children|kids?", "rider": r"riders?", "bike": r"(?:e-?)?bikes?|bicycles?", "seat": r"seats?",
    "device": r"devices?", "screen": r"screens?", "profile": r"profiles?", "user": r"users?", "item": r"items?",
    "bag": r"bags?", "helmet": r"helmets?", "ride": r"rides?", "station": r"stations?", "location": r"locations?",
    "session": r"sessions?", "lesson": r"lessons?", "meal": r"meals?", "box": r"box(?:es)?", "piece": r"pieces?",
    "portion": r"portions?|servings?", "pause": r"pauses?", "delivery": r"deliver(?:y|ies)",
}
_QUNIT = "|".join(QUANTITY_UNITS.values())
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|" \
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_SHORT = {"mon": 0, "tue": 1, "tues": 1, "wed": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4, "sat": 5,
                  "sun": 6}
_TLDS = r"com|org|net|io|co|uk|nl|de|eu|fr|be|ch|at|es|it|ie|us|ca|au|app|bike|shop|info|dev|ai|tv|me"
_STREET_SUFFIX = (r"Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Lane|Ln\.?|Way|Boulevard|Blvd\.?|Place|Pl\.?|Square|"
                  r"Sq\.?|Drive|Dr\.?|Court|Quay|Row|Terrace|Parade|Gardens|Close|Crescent|Embankment|Wharf|Walk|Mews")
_STREET_WORD = r"(?:straat|gracht|weg|laan|plein|kade|dijk|singel|straße|strasse|gasse|platz|allee|damm)"


@dataclass(frozen=True)
class Value:
    """One value as a text states it."""

    kind: str  # one of KINDS
    text: str  # as written
    key: str  # canonical: values of one kind are the same value when their keys are equal
    pattern: str  # regex (case-insensitive) accepting the ways a reply writes it, rejecting its neighbours
    start: int = 0
    end: int = 0


def find_values(text: str) -> list[Value]:
    """Every value ``text`` states, in text order; a span belongs to the first kind (``KINDS`` order) that
    claims it."""
    found: list[Value] = []
    for kind in KINDS:
        for value in FINDERS[kind](text):
            if value is not None and not any(value.start < other.end and other.start < value.end for other in found):
                found.append(value)
    return sorted(found, key=lambda value: value.start)


def value_kinds(text: str) -> set[str]:
    """The kinds of value ``text`` states (a subset of ``KINDS``): two facts whose values share a kind are
    confusable, the one's value a plausible wrong answer to the other."""
    return {value.kind for value in find_values(text)}


def same_value(a: Value, b: Value) -> bool:
    return a.kind == b.kind and a.key == b.key


# ------------------------------------------------------------------------------------------------------------
# numbers
# ------------------------------------------------------------------------------------------------------------


def parse_number(text: str) -> float:
    """``1,200`` -> 1200, ``4,99`` -> 4.99, ``eighteen`` -> 18."""
    text = text.strip().lower()
    if text in WORD_NUMBERS:
        return float(WORD_NUMBERS[text])
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", text):
        return float(text.replace(",", ""))
    return float(text.replace(",", "."))


def number_key(number: float) -> str:
    return str(int(number)) if number == int(number) else f"{number:.2f}".rstrip("0")


def number_pattern(number: float, words: bool = True) -> str:
    """A regex for ``number`` as digits (``1200``, ``1,200``, ``1 200``, ``18.00``) or a number word, that does not
    match inside a longer number (``180``, ``1.80``)."""
    if number == int(number):
        digits = str(int(number))
        grouped = digits if len(digits) < 4 else rf"{digits[:-3]}[,.\s]?{digits[-3:]}"
        body = rf"{grouped}(?:[.,]00?)?"
    else:
        whole, fraction = f"{number:.2f}".rstrip("0").split(".")
        body = rf"{whole}[.,]{fraction}" + ("0?" if len(fraction) == 1 else "")
    alternatives = [rf"(?<![\d.,]){body}(?!\d|[.,]\d)"]
    if words and number == int(number) and int(number) in NUMBER_WORDS:
        alternatives.append(rf"\b{re.escape(NUMBER_WORDS[int(number)])}\b")
    return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"


def _matches(regex: str, text: str, flags: int = re.IGNORECASE) -> Iterator[re.Match]:
    return re.finditer(regex, text, flags)


def _value(kind: str, match: re.Match, key: str, pattern: str) -> Value:
    return Value(kind, match.group(0).strip().rstrip(".,"), key, pattern, match.start(),
                 match.start() + len(match.group(0).rstrip().rstrip(".,")))


# ------------------------------------------------------------------------------------------------------------
# one finder per kind: (text) -> values
# ------------------------------------------------------------------------------------------------------------


def _emails(text: str) -> Iterator[Value]:
    for match in _matches(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text):
        email = match.group(0).rstrip(".")
        yield _value("email", match, email.lower(), rf"(?<![\w.+-]){re.escape(email)}(?![\w-])")


def _urls(text: str) -> Iterator[Value]:
    regex = rf"\b(?:https?://)?(?:www\.)?(?:[a-z0-9-]+\.)+(?:{_TLDS})\b(?:/[^\s,;)]*)?"
    for match in _matches(regex, text):
        if match.start() and text[match.start() - 1] == "@":
            continue
        url = match.group(0).rstrip(".")
        bare = re.sub(r"^(?:https?://)?(?:www\.)?", "", url, flags=re.IGNORECASE)
        host, _, path = bare.partition("/")
        path = path.rstrip("/")
        tail = rf"/{re.escape(path)}/?(?![\w-])" if path else r"(?!/\w|[\w-])"
        yield _value("url", match, f"{host}/{path}".lower().rstrip("/"),
                     rf"(?<![\w.-])(?:https?://)?(?:www\.)?{re.escape(host)}{tail}")


def _addresses(text: str) -> Iterator[Value]:
    english = rf"\b(\d{{1,5}}[a-zA-Z]?),?\s+((?:[A-Z][\w'-]*\s+){{1,3}})({_STREET_SUFFIX})(?!\w)"
    for match in re.finditer(english, text):
        number, name, suffix = match.group(1), match.group(2).split(), match.group(3).rstrip(".")
        suffixes = _suffix_variants(suffix)
        name_regex = r"\s+".join(map(re.escape, name))
        yield _value("address", match, f"{number} {' '.join(name)} {suffixes[0]}".lower(),
                     rf"\b{re.escape(number)},?\s+{name_regex}\s+(?:{'|'.join(suffixes)})\b")
    continental = rf"\b([A-Z][\w'-]*{_STREET_WORD})\s*,?\s*(\d{{1,5}}[a-zA-Z]?)\b"
    for match in re.finditer(continental, text):
        street, number = match.group(1), match.group(2)
        street_regex = re.escape(street).replace("straße", "stra(?:ße|sse)").replace("strasse", "stra(?:ße|sse)")
        yield _value("address", match, f"{street} {number}".lower(),
                     rf"\b{street_regex}\s*,?\s*{re.escape(number)}\b")


def _suffix_variants(suffix: str) -> list[str]:
    pairs = {"st": "street", "rd": "road", "ave": "avenue", "ln": "lane", "blvd": "boulevard", "pl": "place",
             "sq": "square", "dr": "drive"}
    full = pairs.get(suffix.lower(), suffix.lower())
    short = next((s for s, f in pairs.items() if f == full), None)
    return [full] + ([rf"{short}\.?"] if short else [])


def _phones(text: str) -> Iterator[Value]:
    for match in _matches(r"(?<![\w+/.,:])\+?\(?\d[\d\s().-]{5,}\d(?![\w])", text):
        written = match.group(0).strip()
        digits = re.sub(r"\D", "", written)
        if not 7 <= len(digits) <= 15 or re.fullmatch(r"\d{1,2}[.:]\d{2}\s*[-–]\s*\d{1,2}[.:]\d{2}", written):
            continue  # too short or long for a phone number, or an opening-hours range
        yield _value("phone", match, ("+" if written.startswith("+") else "") + digits, _phone_pattern(written))


def _phone_pattern(written: str) -> str:
    sep = r"[\s().-]*"
    if written.startswith("+"):
        groups = re.split(r"[\s().-]+", written[1:].strip())
        country, rest = (groups[0], "".join(groups[1:])) if len(groups[0]) <= 3 else ("", "".join(groups))
        rest = rest.lstrip("0") if country else rest
        national = "(?:\\b1[\\s.-]*)?" if country == "1" else r"\b0"  # how a caller inside the country dials
        head = rf"(?:\+{sep}{sep.join(country)}{sep}(?:\(0\){sep})?|{national}{sep})" if country else r"\+?"
        return rf"(?<![\d]){head}{sep.join(rest)}(?!\d)"
    digits = re.sub(r"\D", "", written)
    return rf"(?<![\d]){sep.join(digits)}(?!\d)"


def _dates(text: str) -> Iterator[Value | None]:
    day_month = rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})(?:,?\s+(\d{{4}}))?\b"
    month_day = rf"\b({_MONTH})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}}))?"
    for match in _matches(r"\b(\d{4})-(\d{2})-(\d{2})\b", text):
        yield _date(match, int(match.group(3)), int(match.group(2)), match.group(1))
    for match in _matches(day_month, text):
        yield _date(match, int(match.group(1)), _month_number(match.group(2)), match.group(3))
    for match in _matches(month_day, text):
        yield _date(match, int(match.group(2)), _month_number(match.group(1)), match.group(3))
    for match in _matches(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4})\b", text):  # read day/month/year (a guess)
        yield _date(match, int(match.group(1)), int(match.group(2)), match.group(3))


def _month_number(name: str) -> int:
    name = name.lower().rstrip(".")
    return next(index + 1 for index, month in enumerate(MONTHS) if month.startswith(name[:3]))


def _date(match: re.Match, day: int, month: int, year: str | None) -> Value | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None  # "12/31/2026" read day-first is no date: left unclaimed
    name = MONTHS[month - 1] if 1 <= month <= 12 else ""
    short = name[:3]
    month_regex = rf"(?:{name}|{short}\.?)" if name != short else name
    day_regex = rf"0?{day}(?:st|nd|rd|th)?"
    alternatives = [rf"(?<!\d){day_regex}\s+(?:of\s+)?{month_regex}\b", rf"\b{month_regex}\s+{day_regex}(?!\d)",
                    rf"(?<!\d)0?{day}[/.-]0?{month}(?!\d)"]
    if year:
        alternatives.append(rf"{year}-{month:02d}-{day:02d}")
    key = f"{year + '-' if year else ''}{month:02d}-{day:02d}"
    return _value("date", match, key, f"(?:{'|'.join(alternatives)})")


def _money(text: str) -> Iterator[Value]:
    regex = (rf"(?P<sym>{_SYMBOL})\s?(?P<a>{_NUM})|(?P<b>{_NUM})\s?(?P<sym2>{_SYMBOL})|"
             rf"\b(?P<word>{_CURWORD})\s?(?P<c>{_NUM})|(?P<d>{_NUMW})\s?(?P<word2>{_CURWORD})\b")
    for match in _matches(regex, text):
        symbol = match.group("sym") or match.group("sym2")
        code = _SYMBOLS[symbol.lower()] if symbol else _currency_of(match.group("word") or match.group("word2"))
        amount = parse_number(match.group("a") or match.group("b") or match.group("c") or match.group("d"))
        yield _value("money", match, f"{code} {number_key(amount)}", money_pattern(code, amount))


def _currency_of(word: str) -> str:
    return next(code for code, (_, words) in CURRENCIES.items()
                if any(re.fullmatch(w, word, re.IGNORECASE) for w in words))


def money_pattern(code: str, amount: float) -> str:
    symbols, words = CURRENCIES[code]
    currency = "|".join([re.escape(s) for s in symbols] + [rf"\b(?:{w})\b" for w in words])
    number = number_pattern(amount)
    return rf"(?:(?:{currency})\s*{number}|{number}\s*(?:{currency}))"


def _percents(text: str) -> Iterator[Value]:
    for match in _matches(rf"(?P<n>{_NUMW})\s?(?:%|percent\b|per\s?cent\b)", text):
        number = parse_number(match.group("n"))
        yield _value("percent", match, f"{number_key(number)}%",
                     rf"{number_pattern(number)}\s*(?:%|percent\b|per\s*cent\b)")


def _times(text: str) -> Iterator[Value]:
    ampm = r"(?P<ap>[ap])\.?\s?m\b\.?"
    regexes = (
        rf"(?<![\d:.,])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?:\s*{ampm})?",
        rf"(?<![\d:.,])(?P<h>1[0-2]|0?[1-9])\.(?P<m>[0-5]\d)\s*{ampm}",
        rf"(?<![\d:.,])(?P<h>1[0-2]|0?[1-9])\s*{ampm}",
        r"\b(?P<word>noon|midday|midnight)\b",
    )
    for regex in regexes:
        for match in _matches(regex, text):
            yield _time(match)
    # 8.30-17.30: dotted times in a range (a lone "8.30" is more often a number than a time)
    dotted = r"(?<![\d:.,])(?P<h>[01]?\d|2[0-3])\.(?P<m>[0-5]\d)\s*(?:-|–|to)\s*(?P<h2>[01]?\d|2[0-3])\.(?P<m2>[0-5]\d)"
    for match in _matches(dotted, text):
        for end in ("", "2"):
            hour, minute = int(match.group("h" + end)), int(match.group("m" + end))
            start, stop = match.start("h" + end), match.end("m" + end)
            yield Value("time", text[start:stop], f"{hour:02d}:{minute:02d}", time_pattern(hour, minute), start, stop)


def _time(match: re.Match) -> Value:
    groups = match.groupdict()
    if groups.get("word"):
        hour, minute = (0, 0) if groups["word"].lower() == "midnight" else (12, 0)
    else:
        hour, minute = int(groups["h"]), int(groups.get("m") or 0)
        ap = (groups.get("ap") or "").lower()
        hour = hour % 12 + (12 if ap == "p" else 0) if ap else hour
    return _value("time", match, f"{hour:02d}:{minute:02d}", time_pattern(hour, minute))


def time_pattern(hour: int, minute: int) -> str:
    """``08:30`` as ``8:30``, ``08.30``, ``8.30 am``, ``8:30am``; ``20:00`` as ``20:00``, ``8 pm``, ``8:00 p.m.``."""
    twelve, ap = (hour % 12 or 12), ("a" if hour < 12 else "p")
    other = "p" if ap == "a" else "a"
    minutes = rf"[:.]{minute:02d}" if minute else r"(?:[:.]00)?"
    alternatives = [rf"(?<![\d:.,])0?{hour}[:.]{minute:02d}(?!\d)(?!\s*{other}\.?\s?m\b)",
                    rf"(?<![\d:.,])0?{twelve}{minutes}\s*{ap}\.?\s?m\b"]
    if (hour, minute) == (12, 0):
        alternatives.append(r"\b(?:noon|midday)\b")
    if (hour, minute) == (0, 0):
        alternatives.append(r"\bmidnight\b")
    return f"(?:{'|'.join(alternatives)})"


def _ages(text: str) -> Iterator[Value]:
    regex = (r"\b(?:aged?\s+(?P<a>\d{1,3})\b(?:\s*\+)?|(?P<b>\d{1,3})\s*(?:\+(?!\d)|years?\s+old\b|years?\s+of\s+age\b|"
             r"or\s+(?:older|over)\b|and\s+(?:older|over|up)\b))")
    for match in _matches(regex, text):
        age = int(match.group("a") or match.group("b"))
        yield _value("quantity", match, f"age {age}",
                     rf"(?:\bage[ds]?\s*(?:of\s*)?{age}\b|(?<!\d){age}\s*(?:\+|years?\s*old|years?\s*of\s*age|"
                     rf"or\s+(?:older|over)|and\s+(?:older|over|up)))")


def _quantities(text: str) -> Iterator[Value]:
    yield from _ages(text)
    regex = rf"(?P<a>{_NUMW})(?:{_RANGE}(?P<b>{_NUMW}))?\s*(?P<u>{_QUNIT})\b(?!/)"
    for match in _matches(regex, text):
        yield _amount_value("quantity", match, QUANTITY_UNITS)
    up_to = rf"\b(?:up to|max(?:imum)?(?: of)?|at most|at least|no more than)\s+(?P<a>{_NUMW})\s+(?P<u>[a-z-]+s)\b"
    durations = "|".join(DURATION_UNITS.values())
    for match in _matches(up_to, text):
        number, noun = parse_number(match.group("a")), match.group("u").lower()
        if re.fullmatch(durations, noun):
            continue  # "up to 24 hours" is a duration
        yield _value("quantity", match, f"{number_key(number)} {noun}",
                     rf"{number_pattern(number)}\s+{re.escape(noun[:-1])}s?\b")


def _durations(text: str) -> Iterator[Value]:
    units = "|".join(DURATION_UNITS.values())
    regex = (rf"(?P<a>{_NUMW})(?:{_RANGE}(?P<b>{_NUMW}))?(?:\s*|-)(?P<q>(?:business|working|calendar)\s+)?"
             rf"(?P<u>{units})\b(?!\s+old)")  # "30 days", "30-day", "5-7 business days"
    for match in _matches(regex, text):
        yield _amount_value("duration", match, DURATION_UNITS)


def _amount_value(kind: str, match: re.Match, units: dict[str, str]) -> Value:
    """A number or range with a unit (durations and quantities): the key and a pattern accepting each number as
    digits or a word, any way of writing the unit, and "5-7" as "5 to 7"."""
    low = parse_number(match.group("a"))
    high = parse_number(match.group("b")) if match.group("b") else None
    unit = next(name for name, regex in units.items() if re.fullmatch(regex, match.group("u"), re.IGNORECASE))
    qualifier = (match.groupdict().get("q") or "").strip().lower()
    qualifier = "business" if qualifier in ("business", "working") else qualifier
    numbers = number_pattern(low) + (rf"{_RANGE}{number_pattern(high)}" if high is not None else "")
    qualifier_regex = r"(?:business|working)\s+" if qualifier == "business" else ""
    pattern = rf"{numbers}(?:\s*|-){qualifier_regex}(?:{units[unit]})\b"
    if unit == "week" and high is None and not qualifier:  # "2 weeks" is also "14 days"
        pattern = rf"(?:{pattern}|{number_pattern(low * 7, words=False)}\s*days?\b)"
    written = number_key(low) + (f"-{number_key(high)}" if high is not None else "")
    return _value(kind, match, f"{written} {qualifier + ' ' if qualifier else ''}{unit}", pattern)


def _weekdays(text: str) -> Iterator[Value]:
    for match in _matches(rf"\b(?P<d>{'|'.join(WEEKDAYS)})s?\b", text):
        yield _weekday(match, WEEKDAYS.index(match.group("d").lower()))
    # Abbreviations only capitalised ("Sat" is a day, "sat" a verb).
    for match in _matches(rf"\b(?P<d>{'|'.join(_WEEKDAY_SHORT)})\b\.?", text):
        if text[match.start()].isupper():
            yield _weekday(match, _WEEKDAY_SHORT[match.group("d").lower()])


def _weekday(match: re.Match, index: int) -> Value:
    day = WEEKDAYS[index]
    short = sorted((s for s, i in _WEEKDAY_SHORT.items() if i == index), key=len)
    return _value("weekday", match, day, rf"\b(?:{day}s?|{'|'.join(short)})\b")


FINDERS: dict[str, Callable[[str], Iterator[Value | None]]] = {
    "email": _emails, "url": _urls, "address": _addresses, "phone": _phones, "date": _dates, "money": _money,
    "percent": _percents, "time": _times, "quantity": _quantities, "duration": _durations, "weekday": _weekdays,
}


# ------------------------------------------------------------------------------------------------------------
# a plausible wrong value, for "is it X?" questions that get "no, it is Y"
# ------------------------------------------------------------------------------------------------------------


def wrong_value_text(value: Value) -> str | None:
    """A value of the same kind that is not ``value`` and that its pattern rejects (``€18`` -> ``€23``), or
    ``None`` where no simple rule makes one (emails, URLs, phones, addresses, ranges)."""
    text = value.text
    if value.kind in ("money", "percent", "quantity", "duration") and "-" not in value.key.split()[0]:
        match = re.search(r"\d+(?:[.,]\d+)?", text)
        if match:
            number = parse_number(match.group(0))
            other = number + 5 if number >= 10 else number + 1
            candidate = text[:match.start()] + number_key(other) + text[match.end():]
            return candidate if not re.search(value.pattern, candidate, re.IGNORECASE) else None
    if value.kind == "time":
        hour, minute = map(int, value.key.split(":"))
        return f"{(hour + 1) % 24:02d}:{minute:02d}"
    if value.kind == "weekday":
        return WEEKDAYS[(WEEKDAYS.index(value.key) + 1) % 7].capitalize()
    return None
