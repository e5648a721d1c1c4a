"""What models cost: the price table shipped with Studio (tracing/prices.json), merged with the
user's own file (`STUDIO_PRICES`), and how a span's model name finds its row.

Plain Python, no Django. Prices are USD per million tokens. The shipped table holds list prices
as of its "checked" date: they go stale, so users verify them and override in their file.

Matching a model name: first exactly as the span spells it; then both the name and the table's
keys normalised: lower case, a provider or path prefix dropped (`openai/gpt-4o`,
`models/gemini-2.5-pro` -> the part after the last `/`), then one version suffix dropped: a date
(`-2024-08-06`, `-20241022`, `@20241022`, `-0613`), `-latest`, or a three-digit revision
(`-001`). Never by prefix: `gpt-4o-audio-preview` is not `gpt-4o`, and a wrong price is worse
than "no price".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).resolve().parent / "prices.json"

REQUIRED = ("input", "output")
OPTIONAL = ("cached_input", "reasoning", "cache_write")

# Built-in rows, rows the user's file changed, rows only the user's file has.
BUILTIN = "builtin"
OVERRIDDEN = "overridden"
ADDED = "added"

_SUFFIX = re.compile(r"([-@](\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3})|-latest)$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. A missing cached-input or cache-write price is the input price,
    a missing reasoning price the output price: never a discount nobody published."""

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None
    cache_write: float | None = None
    provider: str = ""

    @property
    def cached_input_rate(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def reasoning_rate(self) -> float:
        return self.output if self.reasoning is None else self.reasoning

    @property
    def cache_write_rate(self) -> float:
        return self.input if self.cache_write is None else self.cache_write


@dataclass(frozen=True, slots=True)
class Row:
    model: str
    price: Price
    origin: str  # BUILTIN, OVERRIDDEN or ADDED


def normalise(model: str) -> str:
    name = model.strip().lower().rsplit("/", 1)[-1]
    return _SUFFIX.sub("", name) or name


class PriceError(ValueError):
    """A price file that cannot be used; the message says what is wrong, in a few words."""


def _price(name: str, raw: Any, *, allow_provider: bool) -> Price:
    if not isinstance(raw, dict):
        raise PriceError(f"{name!r} must map to an object of prices")
    known = set(REQUIRED) | set(OPTIONAL) | ({"provider"} if allow_provider else set())
    unknown = sorted(set(raw) - known)
    if unknown:
        expected = ", ".join((*REQUIRED, *OPTIONAL))
        raise PriceError(f"{name!r} has unknown key {unknown[0]!r} (expected {expected})")
    values: dict[str, float | None] = {}
    for key in (*REQUIRED, *OPTIONAL):
        value = raw.get(key)
        if value is None:
            if key in REQUIRED:
                raise PriceError(f"{name!r} needs {key!r}")
            values[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PriceError(f"{name!r} {key!r} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise PriceError(f"{name!r} {key!r} must be a finite number >= 0, got {value!r}")
        values[key] = float(value)
    provider = raw.get("provider", "")
    return Price(**values, provider=provider if isinstance(provider, str) else "")  # type: ignore[arg-type]


def parse_overrides(text: str) -> dict[str, Price]:
    """A user's price file: `{"model": {"input": 2.0, "output": 8.0, ...}}`."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PriceError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise PriceError("must be a JSON object mapping model names to prices")
    prices = {}
    for name, raw in document.items():
        if not name.strip():
            raise PriceError("a model name is empty")
        prices[name] = _price(name, raw, allow_provider=True)
    return prices


def load_overrides(path: str | Path) -> dict[str, Price]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceError(getattr(exc, "strerror", None) or str(exc)) from None
    return parse_overrides(text)


@dataclass(frozen=True)
class Builtin:
    checked: str
    note: str
    prices: dict[str, Price]


@lru_cache(maxsize=1)
def builtin() -> Builtin:
    document = json.loads(PRICES_FILE.read_text(encoding="utf-8"))
    prices = {
        name: _price(name, raw, allow_provider=True) for name, raw in document["models"].items()
    }
    return Builtin(checked=document["checked"], note=document.get("note", ""), prices=prices)


class PriceTable:
    """The shipped prices with the user's on top; `lookup` finds a span's model's row."""

    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        shipped = builtin()
        overrides = overrides or {}
        self.checked = shipped.checked
        self.note = shipped.note
        self.rows: dict[str, Row] = {
            name: Row(name, price, BUILTIN) for name, price in shipped.prices.items()
        }
        for name, price in overrides.items():
            origin = OVERRIDDEN if name in self.rows else ADDED
            self.rows[name] = Row(name, price, origin)
        # Normalised names: the user's rows win, then a row whose key is already normal
        # (`gpt-4o` over `gpt-4o-2024-08-06` if both were listed).
        self._normal: dict[str, Row] = {}
        ranked = sorted(
            self.rows.values(),
            key=lambda row: (row.origin != BUILTIN, normalise(row.model) == row.model),
        )
        for row in ranked:
            self._normal[normalise(row.model)] = row
        self._cache: dict[str, Row | None] = {}

    def lookup(self, model: str) -> Row | None:
        if not model:
            return None
        try:
            return self._cache[model]
        except KeyError:
            pass
        row = self.rows.get(model) or self._normal.get(normalise(model))
        if len(self._cache) < 10_000:
            self._cache[model] = row
        return row

    def price(self, model: str) -> Price | None:
        row = self.lookup(model)
        return row.price if row else None

    def sorted_rows(self) -> list[Row]:
        return sorted(self.rows.values(), key=lambda row: (row.price.provider, row.model))
