"""JSON encoding of arbitrary Python values for span attributes, within a size limit.

Attributes are shown by a viewer that parses them as JSON, so a value that is too long is cut
inside its structure (long strings, long lists), never as serialised text: the result always
parses. Work is bounded by the limit, not by the size of the value, because a traced call may
pass megabytes (documents, base64 images) that must not slow the application down.
"""

import json
import math
from collections.abc import Mapping
from typing import Any

# Deeper structures are almost always cycles or ORM graphs; their repr says enough.
MAX_DEPTH = 24


def text_marker(dropped: int) -> str:
    return f"…[truncated {dropped} chars]"


def items_marker(dropped: int) -> str:
    return f"…[{dropped} more items]"


def truncate_text(text: str, max_chars: int) -> str:
    """Cut a plain string to at most ``max_chars`` characters, marker included."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(text_marker(len(text))))
    return text[:keep] + text_marker(len(text) - keep)


def safe_repr(value: object, max_chars: int) -> str:
    # A broken __repr__ in user code must not break the traced call.
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__qualname__} object (repr failed)>"
    return truncate_text(text, max_chars)


class _Converter:
    """Turns a value into JSON-compatible data, stopping once ``budget`` characters are used."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        # Twice the limit leaves room for the fitting pass to choose what to shorten.
        self.budget = 2 * max_chars

    def string(self, text: str) -> str:
        text = truncate_text(text, self.max_chars)
        self.budget -= len(text) + 2
        return text

    def convert(self, value: Any, depth: int = 0) -> Any:
        if value is None or value is True or value is False:
            self.budget -= 5
            return value
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, int):
            self.budget -= 8
            # json.dumps, like str(), refuses ints of more than 4300 digits.
            return int(value) if value.bit_length() <= 64 else self.string(safe_repr(value, 64))
        if isinstance(value, float):
            self.budget -= 8
            # NaN and infinities are not JSON; json.dumps would write them anyway.
            return float(value) if math.isfinite(value) else repr(value)
        if depth >= MAX_DEPTH:
            return self.string(safe_repr(value, self.max_chars))
        if isinstance(value, Mapping):
            return self._mapping(value, depth)
        if isinstance(value, (list, tuple)):
            return self._sequence(value, depth)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.string(f"<{len(value)} bytes>")
        return self.string(safe_repr(value, self.max_chars))

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        total = len(value)
        for index, (key, item) in enumerate(value.items()):
            if self.budget <= 0:
                out["…"] = items_marker(total - index)
                break
            if not isinstance(key, str):
                key = json.dumps(key) if _is_scalar(key) else safe_repr(key, 200)
            self.budget -= len(key) + 4
            out[key] = self.convert(item, depth + 1)
        return out

    def _sequence(self, value: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
        out: list[Any] = []
        for index, item in enumerate(value):
            if self.budget <= 0:
                out.append(items_marker(len(value) - index))
                break
            self.budget -= 2
            out.append(self.convert(item, depth + 1))
        return out


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float))


def to_jsonable(value: Any, max_chars: int) -> Any:
    """JSON-compatible data for ``value``: non-JSON values become their repr, sizes bounded."""
    return _Converter(max_chars).convert(value)


def snapshot(value: Any, max_chars: int) -> tuple[Any, int]:
    """``to_jsonable(value, max_chars)``, and about how many characters of JSON it makes."""
    converter = _Converter(max_chars)
    data = converter.convert(value)
    return data, 2 * max_chars - converter.budget


def _encode(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _longest_leaf(data: Any) -> int:
    if isinstance(data, str):
        return len(data)
    if isinstance(data, dict):
        return max((_longest_leaf(v) for v in data.values()), default=0)
    if isinstance(data, list):
        return max((_longest_leaf(v) for v in data), default=0)
    return 0


def _longest_container(data: Any) -> int:
    if isinstance(data, dict):
        return max([len(data), *(_longest_container(v) for v in data.values())])
    if isinstance(data, list):
        return max([len(data), *(_longest_container(v) for v in data)])
    return 0


def _shrink(data: Any, leaf: int, items: int | None) -> Any:
    if isinstance(data, str):
        if len(data) <= leaf:
            return data
        return data[:leaf] + text_marker(len(data) - leaf)
    if isinstance(data, dict):
        keys = list(data)
        kept = keys if items is None else keys[:items]
        out = {k: _shrink(data[k], leaf, items) for k in kept}
        if len(kept) < len(keys):
            out["…"] = items_marker(len(keys) - len(kept))
        return out
    if isinstance(data, list):
        kept_items = data if items is None else data[:items]
        out_list = [_shrink(v, leaf, items) for v in kept_items]
        if len(kept_items) < len(data):
            out_list.append(items_marker(len(data) - len(kept_items)))
        return out_list
    return data


def _largest_fitting(high: int, render: Any, max_chars: int) -> str | None:
    """Binary search for the largest parameter in [0, high] whose rendering fits."""
    best: str | None = None
    low = 0
    while low <= high:
        middle = (low + high) // 2
        text = render(middle)
        if len(text) <= max_chars:
            best, low = text, middle + 1
        else:
            high = middle - 1
    return best


def dumps(value: Any, max_chars: int) -> str:
    """Serialise ``value`` as JSON of at most ``max_chars`` characters that always parses."""
    data = to_jsonable(value, max_chars)
    text = _encode(data)
    if len(text) <= max_chars:
        return text
    # Shorten the long strings first: they are usually one blob among useful small fields.
    fitted = _largest_fitting(
        _longest_leaf(data), lambda leaf: _encode(_shrink(data, leaf, None)), max_chars
    )
    if fitted is not None:
        return fitted
    fitted = _largest_fitting(
        _longest_container(data), lambda n: _encode(_shrink(data, 0, n)), max_chars
    )
    if fitted is not None:
        return fitted
    # Only reachable with a limit too small for any structure: keep a JSON string.
    cut = max_chars // 2
    while cut > 0:
        candidate = _encode(truncate_text(text, cut))
        if len(candidate) <= max_chars:
            return candidate
        cut //= 2
    return '""'
