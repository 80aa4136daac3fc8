"""A product catalogue (CSV: one row per product, one column per attribute) as FAQ entries: one per product and
attribute, asked with the product named the ways customers name it -- its full name, a shortened name, and its
kind ("the kettle") where no other product shares that kind.

The name column is ``name``, ``product``, ``product_name``, ``title``, ``model`` or ``item`` (any letter case),
else the first column; ``kind``, ``type`` or ``category`` gives the product's kind. Every other non-empty cell is a
fact: its value is found as in a FAQ answer (a price, a warranty of 2 years, 25 kg), or, where no value of a known
kind is (colours: "red, teal"), its items are the value.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..data.readers import _read_csv
from ..data.schema import DataError
from .faq import FaqEntry, FaqError
from .values import find_values

NAME_COLUMNS = ("name", "product", "product_name", "title", "model", "item")
KIND_COLUMNS = ("kind", "type", "category")
# How a question about an attribute is worded, by a word in the column's name; {p}: the product as named.
ATTRIBUTE_QUESTIONS = (
    (("price", "cost", "rate", "fee"), "How much is the {p}?"),
    (("warranty", "guarantee"), "What warranty comes with the {p}?"),
    (("colour", "color"), "Which colours does the {p} come in?"),
    (("capacity", "volume", "size"), "What's the {a} of the {p}?"),
    (("weight",), "How heavy is the {p}?"),
    (("range",), "How far does the {p} go on one charge?"),
)


def read_catalogue(path: str | Path) -> list[FaqEntry]:
    """One entry per product and attribute of the catalogue at ``path``."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".csv":
        raise FaqError(f"{path}: no such catalogue; give a .csv file with one row per product.")
    try:
        records, columns = _read_csv(path)
    except DataError as err:
        raise FaqError(str(err)) from None
    lowered = {column.strip().lower(): column for column in columns}
    name_column = next((lowered[c] for c in NAME_COLUMNS if c in lowered), columns[0] if columns else None)
    kind_column = next((lowered[c] for c in KIND_COLUMNS if c in lowered), None)
    attributes = [c for c in columns if c not in (name_column, kind_column)]
    if not records or not attributes:
        raise FaqError(f"{path}: no products, or no attribute columns besides the name (columns: "
                       f"{', '.join(columns) or 'none'}); give one row per product and a column per attribute.")
    kinds = [(record.get(kind_column) or "").strip().lower() for _, record in records] if kind_column else []
    entries = []
    for index, (where, record) in enumerate(records):
        name = (record.get(name_column) or "").strip()
        if not name:
            raise FaqError(f"{where}: empty product name in column {name_column!r}; fill it in or delete the row.")
        kind = kinds[index] if kinds and kinds[index] and kinds.count(kinds[index]) == 1 else None
        for attribute in attributes:
            cell = (record.get(attribute) or "").strip()
            if cell:
                entries.append(_entry(name, kind, attribute, cell, where))
    return entries


def product_names(name: str, kind: str | None) -> list[str]:
    """The ways a customer names a product: as written, shortened (without its first word, often the brand or
    range), and by its kind when no other product shares it."""
    names = [name]
    parts = name.split()
    if len(parts) > 2:
        names.append(" ".join(parts[1:]))
    elif len(parts) == 2 and not parts[1].isdigit():
        names.append(parts[1])
    if kind:
        names.append(kind)
    return list(dict.fromkeys(names))


def _entry(name: str, kind: str | None, attribute: str, cell: str, where: str) -> FaqEntry:
    label = re.sub(r"[_\s]+", " ", attribute).strip().lower()
    template = next((t for keys, t in ATTRIBUTE_QUESTIONS if any(k in label for k in keys)),
                    "What is the {a} of the {p}?")
    names = product_names(name, kind)
    questions = [template.format(p=n, a=label) for n in names]
    price = template.startswith("How much")
    answer = f"The {name} costs {cell}." if price else f"The {label} of the {name} is {cell}."
    literal = None if find_values(cell) else cell
    slug = re.sub(r"[^a-z0-9]+", "_", f"{name} {label}".lower()).strip("_")
    topic = f"the {names[-1]}" if price else f"the {label} of the {names[-1]}"
    return FaqEntry(questions[0], answer, f"{where} ({label})", topic=topic, more=tuple(questions[1:]),
                    literal=literal, slug=slug)
