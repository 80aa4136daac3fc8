"""The company, read from ``data/company.yaml`` and checked: its facts (wording and values), order numbers,
product catalogue, discount codes and the invented customers who write in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from .phrases import FORMAT_HINT

DEFAULT_COMPANY = Path(__file__).resolve().parents[2] / "data" / "company.yaml"
FACT_ID_RE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Product:
    name: str
    short: str
    price: str
    appliance: bool
    damage: tuple[str, ...]


@dataclass(frozen=True)
class Company:
    """Everything the dialogues say about the company and its customers (``data/company.yaml``, checked)."""

    system_prompt: str
    facts: dict[str, str]  # fact id -> the wording the assistant uses, in file order
    values: dict[str, dict[str, Any]]  # fact id -> the same fact as data
    order_prefix: str  # "KC-"
    order_digits: int
    products: tuple[Product, ...]
    discount_codes: tuple[str, ...]
    baskets_over: tuple[str, ...]  # basket totals that get free shipping
    baskets_under: tuple[tuple[str, str], ...]  # (total, amount missing for free shipping)
    countries_delivered: tuple[str, ...]
    countries_not_delivered: tuple[str, ...]
    names: tuple[str, ...]
    addresses: tuple[str, ...]
    businesses: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.facts["company"]

    @property
    def appliances(self) -> tuple[Product, ...]:
        return tuple(p for p in self.products if p.appliance)

    @property
    def format_hints(self) -> tuple[str, ...]:
        """``FORMAT_HINT`` as the assistant writes it, to recognise those turns in the data."""
        return tuple(hint.format(**self.facts) for hint in FORMAT_HINT)


def _get(data: Any, path: str, kind: type | tuple[type, ...], name: str | None = None) -> Any:
    """The value at the dotted ``path`` in ``data``, which must be a ``kind``; errors call it ``name``."""
    name = name or path
    value = data
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"{name} is missing")
        value = value[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{name} must be a {expected}, not {value!r}")
    return value


def _texts(data: Any, path: str) -> tuple[str, ...]:
    items = _get(data, path, list)
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{path} must be a non-empty list of texts")
    return tuple(items)


def _value(values: dict[str, dict[str, Any]], fact_id: str, key: str, kind: type | tuple[type, ...]) -> Any:
    """One machine-usable value of a fact (``values: {key: ...}`` of the fact with ``id: fact_id``)."""
    return _get(values, f"{fact_id}.{key}", kind, f"the fact {fact_id}: values.{key}")


def _read_facts(entries: list) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    facts: dict[str, str] = {}
    values: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        fact_id = _get(entry, "id", str, f"facts[{i}].id")
        if not FACT_ID_RE.fullmatch(fact_id) or fact_id in facts:
            raise ValueError(f"facts[{i}].id {fact_id!r} must be a new lower_snake_case name")
        facts[fact_id] = _get(entry, "text", str, f"the fact {fact_id}: text")
        values[fact_id] = _get(entry, "values", dict, f"the fact {fact_id}: values")
        if not values[fact_id]:
            raise ValueError(f"the fact {fact_id}: values is empty (give the fact as data too)")
    for fact_id in ("company", "business"):  # the README's title and first sentence
        _get(facts, fact_id, str, f"the fact {fact_id}")
    return facts, values


def _read_order_number(values: dict[str, dict[str, Any]]) -> tuple[str, int]:
    """Prefix and digit count of an order number; the example must have that format."""
    prefix = _value(values, "order_number_format", "prefix", str)
    digits = _value(values, "order_number_format", "digits", int)
    example = _value(values, "order_number_example", "example", str)
    if not re.fullmatch(r"[A-Z]+-", prefix) or not 1 <= digits <= 12:
        raise ValueError("the fact order_number_format: values.prefix must be capital letters and a hyphen "
                         "(KC-), values.digits 1 to 12")
    if not re.fullmatch(re.escape(prefix) + rf"\d{{{digits}}}", example):
        raise ValueError(f"the fact order_number_example: {example!r} is not {prefix} and {digits} digits")
    return prefix, digits


def _read_products(raw: dict) -> tuple[Product, ...]:
    products = []
    for i, entry in enumerate(_get(raw, "products", list)):
        kinds = {"name": str, "short": str, "price": str, "appliance": bool, "damage": str}
        field = {key: _get(entry, key, kind, f"products[{i}].{key}") for key, kind in kinds.items()}
        damage = _texts(raw, f"damage.{field['damage']}")
        products.append(Product(field["name"], field["short"], field["price"], field["appliance"], damage))
    if not any(p.appliance for p in products):
        raise ValueError("products needs at least one appliance (warranty claims are about appliances)")
    return tuple(products)


def _money(text: str, currency: str) -> Decimal | None:
    try:
        return Decimal(text[len(currency):]) if text.startswith(currency) else None
    except InvalidOperation:
        return None


def _read_baskets(
    raw: dict, values: dict[str, dict[str, Any]]
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Basket totals over and under the free-shipping threshold; those under it with the amount missing."""
    currency = _value(values, "free_shipping_threshold", "currency", str)
    limit = Decimal(str(_value(values, "free_shipping_threshold", "amount", (int, float))))
    over, under = _texts(raw, "basket_totals.over_threshold"), _texts(raw, "basket_totals.under_threshold")
    amounts_over, amounts_under = ([_money(t, currency) for t in totals] for totals in (over, under))
    if not all(a is not None and a > limit for a in amounts_over):
        raise ValueError(f"basket_totals.over_threshold must all be amounts over {currency}{limit}")
    if not all(a is not None and a <= limit for a in amounts_under):
        raise ValueError(f"basket_totals.under_threshold must all be amounts up to {currency}{limit}")
    return over, tuple((t, f"{currency}{limit - a:.2f}") for t, a in zip(under, amounts_under, strict=True))


def _company_from(raw: Any) -> Company:
    facts, values = _read_facts(_get(raw, "facts", list))
    prefix, digits = _read_order_number(values)
    over, under = _read_baskets(raw, values)
    return Company(
        system_prompt=_get(raw, "system_prompt", str), facts=facts, values=values, order_prefix=prefix,
        order_digits=digits, products=_read_products(raw), discount_codes=_texts(raw, "discount_codes"),
        baskets_over=over, baskets_under=under, countries_delivered=_texts(raw, "countries.delivered"),
        countries_not_delivered=_texts(raw, "countries.not_delivered"), names=_texts(raw, "customers.names"),
        addresses=_texts(raw, "customers.addresses"), businesses=_texts(raw, "customers.businesses"),
    )


def load_company(path: str | Path = DEFAULT_COMPANY) -> Company:
    """Read and check a company file; a ``ValueError`` names the file and the key at fault."""
    try:
        return _company_from(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"--company {path}: {exc}") from None
