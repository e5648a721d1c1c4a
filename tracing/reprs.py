"""Python reprs as data: AgentScope records some values (`ToolResponse(content=[...], id='x')`,
`Msg(...)`, blocks, enum members) as their repr. They are parsed with `ast`, never evaluated.

Plain Python, no Django. Takes untrusted text and never raises: what it cannot read is None.
"""

from __future__ import annotations

import ast
import io
import tokenize
from typing import Any

# Past this size a repr is shown as text.
REPR_LIMIT = 200_000

# What ast and tokenize raise on text that is not a Python expression, or one too deep for them.
_UNREADABLE = (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, tokenize.TokenError)


def parse_repr(text: str) -> Any:
    """A Python repr such as `ToolResponse(content=[...], id='x')` as data, or None.

    AgentScope records some values as reprs. They are parsed with `ast` and never evaluated:
    calls become dicts with a `__type__`, names become strings, anything else fails.
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or len(text) > REPR_LIMIT or "(" not in text:
        return None
    try:
        node = ast.parse(text, mode="eval").body
    except _UNREADABLE:
        # Enum members print as `<State.SUCCESS: 'success'>`, which is not Python.
        if "<" not in text:
            return None
        try:
            node = ast.parse(_without_enum_reprs(text), mode="eval").body
        except _UNREADABLE:
            return None
    try:
        return _literal(node)
    except _UNREADABLE:
        return None


def _without_enum_reprs(text: str) -> str:
    """`<State.SUCCESS: 'success'>` outside string literals replaced by `'State.SUCCESS'`."""
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == tokenize.OP and token.string == "<":
            j = i + 1
            names = []
            while j < len(tokens) and tokens[j].type == tokenize.NAME:
                names.append(tokens[j].string)
                if j + 1 < len(tokens) and tokens[j + 1].string == ".":
                    j += 2
                else:
                    j += 1
                    break
            if (
                names
                and j + 2 < len(tokens)
                and tokens[j].string == ":"
                and tokens[j + 1].type in (tokenize.STRING, tokenize.NUMBER)
                and tokens[j + 2].string == ">"
            ):
                out.append((tokenize.STRING, repr(".".join(names))))
                i = j + 3
                continue
        out.append((token.type, token.string))
        i += 1
    return tokenize.untokenize(out)


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if value is Ellipsis:
            return "..."
        return value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_literal(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise ValueError("dict unpacking")
        return {str(_literal(k)): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            type_name = func.id
        elif isinstance(func, ast.Attribute):
            type_name = func.attr
        else:
            raise ValueError("call of an expression")
        result: dict[str, Any] = {"__type__": type_name}
        if node.args:
            result["args"] = [_literal(arg) for arg in node.args]
        for keyword in node.keywords:
            if keyword.arg is None:
                raise ValueError("keyword unpacking")
            result[keyword.arg] = _literal(keyword.value)
        return result
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
        raise ValueError("unary operator on a non-number")
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    raise ValueError(f"unsupported node {type(node).__name__}")
