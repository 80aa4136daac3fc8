"""How customers ask and how the assistant answers, made from one FAQ entry by seeded rules.

Two families of question rules that never share a template, so the probe measures a fact, not a sentence:

* **drill rules** (the sheet's questions): the question as written, lower case, terse keywords, casual, polite,
  typos (letters swapped, dropped, doubled), inside a longer message, with the company's name, and the reverse
  direction ("Is it €150?") where the entry states a single value;
* **probe rules** (the held-out probe): the topic in other words (a small synonym table) inside frames the drills
  never use, text-speak ("u", "ur", "pls") instead of letter typos, other stories around the question.

Answers: the answer as written, its sentences that state the values, and those framed as the assistant would say
them (greeted, with an offer to help further), several framings drawn per entry, never one fixed template.
"""

from __future__ import annotations

import random
import re

# Words a topic never starts with: question words, auxiliaries, pronouns, articles, prepositions.
STOPWORDS = frozenset("""
a an the and or but if to of in on at by for with from about into over under up down out off as than then so
is are was were be been being am do does did doing have has had having can could will would shall should may
might must i me my mine you your yours we us our ours they them their it its this that these those there here
what when where which who whom whose why how much many long far often soon please hi hello hey thanks thank
any some get got just also still really very exactly actually again ever need want like know tell let s t
per each one if what's whats where's how's who's when's it's i'm don't can't isn't there's
""".split())
AUXILIARIES = frozenset("is are be was were am must can could should will would do does did have has had may might "
                        "shall".split())
# Words that say what is asked (a price, a time) rather than about what: left out of the topic.
CUE_WORDS = frozenset("""
cost costs price prices charge charges fee fees pay paying expensive cheap time times long take takes last lasts
date day which number address email mail link website site url percent percentage many much old age late early
far big heavy soon minimum maximum min max fast slow
""".split())
# The probe's other words for a topic's words (the drills keep the FAQ's own).
SYNONYMS = {
    "rent": "hire", "rental": "hire", "hire": "rent", "renting": "hiring", "hiring": "renting",
    "cancelling": "calling off", "picking": "collecting", "bringing": "handing over",
    "taking": "carrying", "getting": "receiving", "buying": "purchasing", "paying": "settling", "bike": "bicycle", "bikes": "bicycles",
    "bicycle": "bike", "book": "reserve", "booking": "reservation", "reservation": "booking",
    "cancel": "call off", "cancellation": "cancelling", "refund": "money back", "deliver": "ship",
    "delivery": "shipping", "shipping": "delivery", "subscription": "plan", "plan": "subscription",
    "account": "profile", "buy": "purchase", "order": "purchase", "children": "kids", "kids": "children",
    "phone": "telephone", "opening": "opening times", "deposit": "security deposit",
    "helmet": "helmet", "return": "bring back", "returns": "bringing things back", "shop": "store",
    "store": "shop", "office": "premises", "pause": "put on hold", "damage": "breakage",
    "insurance": "cover", "lock": "bike lock", "membership": "member plan", 
    "discount": "reduction", "late": "overdue", "weekend": "Saturday and Sunday", "support": "help desk",
    "e-bike": "electric bike", "e-bikes": "electric bikes", "city": "town", "child": "kid", "seats": "seating",
    "seat": "seating", "carry": "haul", "cargo": "freight", "charge": "battery load", "flat": "punctured",
    "tyre": "tire", "tire": "tyre", "train": "railway", "winter": "holiday", "break": "closure", "closed": "shut",
    "bring": "hand over", "ID": "identification", "students": "uni students", "riders": "cyclists",
    "rider": "cyclist", "online": "on the web", "email": "e-mail", "write": "send a message", "pick": "collect",
    "hours": "schedule", "Sundays": "a Sunday", "Sunday": "Sundays", "week": "seven days", "whole": "full",
    "luggage": "baggage", "go": "travel", "happens": "goes on", "ride": "cycle",
    "price": "rate", "members": "subscribers", "member": "subscriber", "parking": "storage",
    "locks": "bike locks", "lost": "missing", "stolen": "taken", "repair": "fixing",
    "monthly": "per month", "yearly": "annual", "annual": "yearly", "upgrade": "move up", "downgrade": "move down",
    "devices": "gadgets", "profiles": "user profiles", "streaming": "watching", "download": "save offline",
}
# The kind of the first value decides how a keyword question ends and which probe frames fit.
# What a question is about when a rule finds nothing better than a verb ("Which email address can I write to?").
KIND_TOPICS = {"email": "your email address", "phone": "your phone number", "url": "your website",
               "address": "your address", "time": "your hours", "weekday": "your opening days"}
KIND_CUES = {"money": "price", "duration": "how long", "time": "what time", "weekday": "which days",
             "date": "what date", "email": "email address", "phone": "phone number", "url": "link",
             "percent": "how much", "quantity": "how many", "address": "address", None: "info"}

CASUAL = ("hey, {ql}?", "so {ql}?", "{ql}? thx", "quick q - {ql}?", "ok so {ql}??", "yo {ql}")
POLITE = ("Could you please tell me: {q}", "Excuse me, {ql}?", "Hello, I'd be grateful for some help. {q}",
          "Sorry to bother you. {q}", "Would you mind telling me something? {q}", "Good afternoon! {q}")
STORIES = ("I'm planning a weekend away with two friends.", "My neighbour told me about you last week.",
           "I'm comparing a few options before I decide.", "I tried to find this on the website but gave up.",
           "First time using your service, so bear with me.", "We're visiting the city in the spring.")
CLOSINGS = ("Thanks!", "Cheers.", "Thanks in advance.", "")
SECONDS = ("I want to plan ahead.", "Just checking before I decide.", "Asking for my family as well.",
           "I couldn't find it anywhere.")
COMPANY = ("Question for {company}: {q}", "{ql} at {company}?", "{company} - {ql}?")
REVERSE_YES = ("Is it {value} for {topic}?", "{Topic}: {value}, right?", "Am I right that it's {value} for {topic}?")
REVERSE_NO = ("Is it {wrong} for {topic}?", "{Topic}: {wrong}, correct?")

PROBE_FRAMES = ("I'd like some details on {topic}.", "Can you fill me in on {topic}?",
                "Need info regarding {topic}, what's the situation?", "What's the story with {topic}?")
PROBE_KIND_FRAMES = {
    "money": ("What would {topic} set me back?", "What do you charge for {topic}?"),
    "duration": ("How much time does {topic} involve?", "What's the time frame for {topic}?"),
    "time": ("At what hour is {topic}?", "What are the hours for {topic}?"),
    "weekday": ("On what days is {topic}?", "Which days of the week for {topic}?"),
    "date": ("On which date is {topic}?", "What's the date of {topic}?"),
    "email": ("Which address do I write to about {topic}?", "Where do I send an email about {topic}?"),
    "phone": ("What number do I dial for {topic}?", "Who do I ring about {topic}, which number?"),
    "url": ("Which web page is {topic} on?", "Where online do I find {topic}?"),
    "percent": ("What percentage is {topic}?", "By what percent is {topic}?"),
    "quantity": ("What's the limit on {topic}?", "What amount is allowed for {topic}?"),
    "address": ("Where exactly is {topic}?", "What's the street address of {topic}?"),
}
PROBE_STORIES = ("My partner and I are new in town.", "I'm sorting this out for my elderly dad.",
                 "Writing from my phone on the train, sorry for the brevity.", "Our team outing is coming up.")
TEXT_SPEAK = {"you": "u", "your": "ur", "are": "r", "please": "pls", "what": "wat", "for": "4", "to": "2",
              "thanks": "thx", "because": "cuz"}

ANSWER_FRAMES = ("Sure! {s}", "{s} Anything else I can help you with?", "Happy to help. {s}",
                 "Good question. {s} Let me know if there's anything else.", "{s} Hope that helps!",
                 "Of course. {s}")
COMPANY_ANSWER_FRAMES = ("{s} Thanks for choosing {company}!", "Thanks for contacting {company}. {s}")
YES_FRAMES = ("Yes, that's right. {s}", "Correct! {s}", "Yes. {s}")
NO_FRAMES = ("No, that's not it. {s}", "Not quite. {s}", "No. {s}")


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9][A-Za-z0-9'&-]*", text)


def topic_of(question: str) -> str:
    """The part of ``question`` about *what* is asked: from its first content word (with the article or
    possessive before it) to the end, less a trailing verb or cue word ("How much is the deposit?" -> "the
    deposit", "How long does a refund take?" -> "a refund")."""
    tokens = words(question)
    start = next((i for i, w in enumerate(tokens) if w.lower() not in STOPWORDS and w.lower() not in CUE_WORDS),
                 None)
    if start is None:
        return " ".join(tokens).lower()
    verb = start > 0 and tokens[start - 1].lower() in ("i", "we", "you", "to")  # "can I rent ...", "to rent ..."
    if start and tokens[start - 1].lower() in ("the", "a", "an", "your", "my", "our"):
        start -= 1
    # Cue words ("cost", "fast") and auxiliaries ("must", "be") out: "How fast must my connection be for 4K?" is
    # about "my connection for 4K".
    topic = [w for w in tokens[start:] if w.lower() not in CUE_WORDS | AUXILIARIES] or tokens[start:]
    while len(topic) > 1 and topic[-1].lower() in STOPWORDS:
        topic = topic[:-1]
    if verb and not topic[0].lower().endswith(("ed", "ing")):  # a noun phrase reads in every frame: "renting a city bike"
        topic = [gerund(topic[0])] + topic[1:]
    return " ".join(_my(w) for w in topic)


def gerund(verb: str) -> str:
    """``rent`` -> ``renting``, ``hire`` -> ``hiring``, ``get`` -> ``getting`` (regular verbs; a guess)."""
    verb = verb.lower()
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith("ee") and len(verb) > 2:
        return verb[:-1] + "ing"
    if re.fullmatch(r"[^aeiou]*[aeiou][^aeiouwxy]", verb) and len(verb) <= 4:
        return verb + verb[-1] + "ing"
    return verb + "ing"


def _my(word: str) -> str:
    # In a customer's mouth "your shop" stays, but "my order" asked back becomes "my order" too: keep both.
    return word if word.isupper() or word[:1].isupper() and word.lower() not in STOPWORDS else word.lower()


def keywords_of(question: str) -> list[str]:
    return [w.lower() for w in words(question) if w.lower() not in STOPWORDS]


PHRASES = {"pick up": "collect", "picking up": "collecting", "bring back": "return", "sign up": "register",
           "log in": "sign in", "set up": "install"}


def with_synonyms(topic: str) -> str:
    for phrase, other in PHRASES.items():
        topic = re.sub(rf"\b{phrase}\b", other, topic, flags=re.IGNORECASE)
    topic = " ".join(SYNONYMS.get(w, SYNONYMS.get(w.lower(), w)) for w in topic.split())
    # The article before a replaced word: "an account" -> "a profile", "a hire" stays.
    return re.sub(r"\b(an?) (\w)", lambda m: ("an" if m.group(2).lower() in "aeiou" else "a") + " " + m.group(2),
                  topic, flags=re.IGNORECASE)


def lower_plain(question: str) -> str:
    return question.strip().rstrip("?!. ").lower()


def add_typos(text: str, rng: random.Random, count: int = 2) -> str:
    """``count`` typos in words of 4+ letters: two letters swapped, one dropped, or one doubled."""
    tokens = text.split(" ")
    candidates = [i for i, token in enumerate(tokens) if len(re.sub(r"\W", "", token)) >= 4]
    for index in rng.sample(candidates, min(count, len(candidates))):
        token = tokens[index]
        spot = rng.randrange(1, len(token) - 2) if len(token) > 3 else 1
        how = rng.choice(("swap", "drop", "double"))
        if how == "swap":
            token = token[:spot] + token[spot + 1] + token[spot] + token[spot + 2:]
        elif how == "drop":
            token = token[:spot] + token[spot + 1:]
        else:
            token = token[:spot] + token[spot] + token[spot:]
        tokens[index] = token
    return " ".join(tokens)


def text_speak(text: str) -> str:
    return " ".join(TEXT_SPEAK.get(w.lower(), w.lower()) for w in re.sub(r"[?!.,]", "", text).split())


def drill_questions(question: str, topic: str, kind: str | None, company: str | None,
                    rng: random.Random) -> list[tuple[str, str]]:
    """``(rule, question)`` for the sheet: every drill rule applied once or twice (templates drawn by ``rng``)."""
    q = question.strip()
    q = q if q.endswith(("?", ".", "!")) else f"{q}?"
    ql = lower_plain(without_company(q, company) if company else q)
    cue = KIND_CUES.get(kind, "info")
    made = [("as written", q), ("lower case", lower_plain(q)), ("keywords", f"{' '.join(keywords_of(q))}?"),
            ("keywords", f"{topic} {cue}?")]
    made += [("casual", t.format(ql=ql)) for t in rng.sample(CASUAL, 3)]
    made += [("polite", t.format(q=q, ql=ql)) for t in rng.sample(POLITE, 3)]
    made.append(("second sentence", f"{q} {rng.choice(SECONDS)}"))
    made += [("typos", add_typos(q, rng)), ("typos", add_typos(ql, rng, 1))]
    for story in rng.sample(STORIES, 2):
        made.append(("longer message", f"{story} {q} {rng.choice(CLOSINGS)}".strip()))
    if company:
        stripped = without_company(q, company)
        if stripped != q:
            made.append(("without company", stripped))
        made += [("with company", t.format(q=stripped, ql=lower_plain(stripped), company=company))
                 for t in rng.sample(COMPANY, 2)]
    return _unique(made)


def without_company(question: str, company: str) -> str:
    """``question`` with the company named as "you" ("Does Pedalo deliver?" -> "Do you deliver?" is beyond a rule;
    "at Pedalo" -> "with you", "Pedalo's" -> "your")."""
    name = re.escape(company)
    text = re.sub(rf"\b{name}'s\b", "your", question, flags=re.IGNORECASE)
    text = re.sub(rf"\b(?:at|with|from|of) {name}\b", "with you", text, flags=re.IGNORECASE)
    return re.sub(rf"\b{name}\b", "you", text, flags=re.IGNORECASE)


def reverse_questions(topic: str, value: str, wrong: str | None,
                      rng: random.Random) -> tuple[list[str], list[str]]:
    """``(yes questions, no questions)`` asking back a single value, and a wrong one (none without ``wrong``)."""
    fill = dict(topic=topic, Topic=topic[:1].upper() + topic[1:], value=value, wrong=wrong or "")
    yes = [t.format(**fill) for t in rng.sample(REVERSE_YES, 2)]
    no = [t.format(**fill) for t in rng.sample(REVERSE_NO, 2)] if wrong else []
    return yes, no


def probe_questions(topic: str, kind: str | None, rng: random.Random, count: int = 6) -> list[tuple[str, str]]:
    """``(rule, question)``: ``count`` held-out questions made only by probe rules (frames, words and typos the
    drills never use)."""
    other = with_synonyms(topic)
    frames = list(PROBE_KIND_FRAMES.get(kind, ())) + list(PROBE_FRAMES)
    rng.shuffle(frames)
    made = [("probe frame", frames[0].format(topic=other)), ("probe frame", frames[1].format(topic=other))]
    made.append(("probe text-speak", text_speak(frames[2].format(topic=other))))
    made.append(("probe story", f"{rng.choice(PROBE_STORIES)} {frames[3].format(topic=other)}"))
    for frame in frames[4:]:
        if len(made) >= count:
            break
        made.append(("probe frame", frame.format(topic=other)))
    return _unique(made)[:count]


def answer_wordings(answer: str, value_sentence: str, company: str | None, rng: random.Random,
                    count: int = 6) -> list[str]:
    """The answer as written, its value sentence(s), and those framed (several framings drawn by ``rng``)."""
    frames = list(ANSWER_FRAMES) + ([f.replace("{company}", company) for f in COMPANY_ANSWER_FRAMES]
                                    if company else [])
    made = [answer, value_sentence] + [f.format(s=value_sentence) for f in rng.sample(frames, len(frames))]
    return [text for text in dict.fromkeys(made)][:count]


def reverse_answers(value_sentence: str, frames: tuple[str, ...], rng: random.Random) -> list[str]:
    return [f.format(s=value_sentence) for f in rng.sample(frames, len(frames))]


def _unique(made: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen, kept = set(), []
    for rule, text in made:
        text = " ".join(text.split())
        key = re.sub(r"[\W_]+", " ", text.lower()).strip()
        if key and key not in seen:
            seen.add(key)
            kept.append((rule, text))
    return kept
