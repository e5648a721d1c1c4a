"""Attribute filter clauses, `key op value`: parsed here, with no Django, so anything a user types
either becomes a `Clause` or raises `ClauseError` with a message saying what is wrong.

    gen_ai.request.model = gpt-4o
    llm.token_count.total > 1000
    error.type exists
    gen_ai.output.messages ~ "Tokyo tower"

The value is typed: one that reads as a number compares as a number (1000 matches a stored 1000
and 1000.0, never the text "1000" with `>`); `true` / `false` match booleans; anything else, or any
value in double quotes, is text. Keys are OTel attribute names: letters, digits and `_ . - / : @`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "~", "exists")
# Longest first, so `>=` is not read as `>` followed by `=value`.
_SYMBOLS = sorted((op for op in OPERATORS if op != "exists"), key=len, reverse=True)
MAX_CLAUSE = 500
MAX_KEY = 200
_KEY = re.compile(r"[A-Za-z0-9_.\-/:@]+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
ORDERED = (">", ">=", "<", "<=")


class ClauseError(ValueError):
    """A clause that cannot be read; the message names the clause and what is wrong with it."""


Value = str | float | bool | None


@dataclass(frozen=True)
class Clause:
    key: str
    op: str
    # None for `exists`; a float for a number, a bool for true/false, else text.
    value: Value = None

    @property
    def text(self) -> str:
        """The value as the user wrote it (for `~` and for matching text that looks numeric)."""
        if self.value is None:
            return ""
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        if isinstance(self.value, float):
            return _format_number(self.value)
        return self.value

    def __str__(self) -> str:
        if self.op == "exists":
            return f"{self.key} exists"
        value = self.text
        if isinstance(self.value, str) and (
            value != value.strip()
            or _NUMBER.fullmatch(value)
            or value.lower() in ("true", "false", "")
            or value.startswith('"')
        ):
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{self.key} {self.op} {value}"


def _format_number(number: float) -> str:
    return str(int(number)) if number.is_integer() and abs(number) < 1e18 else repr(number)


def _fail(clause: str, problem: str) -> ClauseError:
    shown = clause if len(clause) <= 80 else clause[:79] + "…"
    return ClauseError(f"“{shown}”: {problem}")


def parse(text: str) -> Clause:
    """One clause. Raises ClauseError (and nothing else) for anything it cannot read."""
    if not isinstance(text, str):
        raise ClauseError("a clause must be text")
    clause = text.strip()
    if not clause:
        raise _fail(text, "empty clause; write key op value, e.g. gen_ai.request.model = gpt-4o")
    if len(clause) > MAX_CLAUSE:
        raise _fail(clause, f"longer than {MAX_CLAUSE} characters")
    if "\x00" in clause:
        raise _fail(clause, "contains a NUL character")
    match = _KEY.match(clause)
    if match is None:
        raise _fail(
            clause,
            "should start with an attribute key (letters, digits and _ . - / : @), "
            "e.g. gen_ai.request.model",
        )
    key = match.group()
    if len(key) > MAX_KEY:
        raise _fail(clause, f"the key is longer than {MAX_KEY} characters")
    rest = clause[match.end() :].lstrip()
    if rest.lower() == "exists":
        return Clause(key, "exists")
    op = next((symbol for symbol in _SYMBOLS if rest.startswith(symbol)), None)
    if op is None:
        if not rest:
            problem = "no operator after the key; use one of = != > >= < <= ~ exists"
        elif rest.lower().startswith("exists"):
            problem = "nothing may follow exists"
        else:
            problem = (
                f"unknown operator at “{rest[:10]}”; use one of = != > >= < <= ~ exists "
                "(a key has no spaces)"
            )
        raise _fail(clause, problem)
    raw = rest[len(op) :].strip()
    if not raw:
        raise _fail(clause, f"no value after {op}")
    value = _value(clause, raw)
    if op in ORDERED and not isinstance(value, float):
        raise _fail(clause, f"{op} compares numbers, and “{raw[:40]}” is not a number")
    if op == "~":
        value = raw if isinstance(value, float | bool) else value  # contains: always text
    return Clause(key, op, value)


def _value(clause: str, raw: str) -> Value:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"') or (raw.endswith('\\"') and _odd_escapes(raw)):
            raise _fail(clause, "the quoted value has no closing quote")
        body = raw[1:-1]
        out, escaped = [], False
        for char in body:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                raise _fail(clause, 'a quote inside a quoted value must be written \\"')
            else:
                out.append(char)
        return "".join(out)
    if _NUMBER.fullmatch(raw):
        number = float(raw)
        if math.isfinite(number):
            return number
        raise _fail(clause, f"the number {raw[:40]} is too large")
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return raw


def _odd_escapes(raw: str) -> bool:
    """True if the final quote is escaped (an odd run of backslashes before it)."""
    run = len(raw) - 1 - len(raw[:-1].rstrip("\\"))
    return run % 2 == 1


def parse_all(texts: list[str]) -> tuple[list[Clause], list[str]]:
    """Every clause that reads, and a message for each that does not (blank ones are skipped)."""
    clauses, problems = [], []
    for text in texts:
        if not text.strip():
            continue
        try:
            clauses.append(parse(text))
        except ClauseError as exc:
            problems.append(str(exc))
    return clauses, problems
