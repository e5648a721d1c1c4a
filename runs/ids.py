"""The ids a client gives runs and input requests. They become page URLs (`/runs/<id>/`), so
they are held to characters that need no escaping in a path segment."""

from __future__ import annotations

import re

MAX_ID_LENGTH = 64
# What AgentScope generates (shortuuid) and what people pass to `init(run_id=...)`, without the
# characters that end or escape a path segment ("/", "\", "?", "#", "%", whitespace, controls).
_ID = re.compile(rf"[A-Za-z0-9_.:@+=~-]{{1,{MAX_ID_LENGTH}}}")
ID_RULE = f"1 to {MAX_ID_LENGTH} letters, digits or any of _ . : @ + = ~ -"


def is_valid_id(value: str) -> bool:
    # "." and ".." would be resolved away by browsers as path segments.
    return bool(_ID.fullmatch(value)) and value.strip(".") != ""
