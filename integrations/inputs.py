"""Odd input, read safely: ids that are plain ASCII digits within 64 bits,
JSON that is neither too deep nor holding lone surrogates, and text shown or
stored with its NUL, control characters and lone surrogates escaped.

Python's own ``int()`` and ``str.isdigit()`` accept "²" and "١" and numbers no
database column holds; a lone surrogate cannot be encoded as UTF-8, so a page
or a JSON answer holding one fails; PostgreSQL refuses NUL in text and JSON.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

# The largest id a signed 64-bit column (BigAutoField, PostgreSQL bigint,
# SQLite INTEGER) holds.
MAX_ID = 2**63 - 1
_ID = re.compile(r"[0-9]{1,19}", re.ASCII)

# No request body the registry takes nests deeper than a few levels.
MAX_JSON_DEPTH = 32

# Shown as \uXXXX: they end a line, reverse text or hide text on screen.
_INVISIBLE = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e") | frozenset(
    "\u2066\u2067\u2068\u2069"
)


def parse_id(raw: Any) -> int | None:
    """The id in ``raw`` (a str of ASCII digits, or an int) when a 64-bit
    column can hold it; None for anything else."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 <= raw <= MAX_ID else None
    if not isinstance(raw, str) or not _ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None


def is_unsafe(character: str) -> bool:
    """NUL and other control characters, lone surrogates, line separators and
    bidirectional overrides."""
    return unicodedata.category(character) in ("Cc", "Cs") or character in _INVISIBLE


def first_unsafe(text: str) -> str | None:
    return next((c for c in text if is_unsafe(c)), None)


def codepoint(character: str) -> str:
    """``U+0000``: how a message names a character it cannot show."""
    return f"U+{ord(character):04X}"


def escaped(text: Any, limit: int | None = None) -> str:
    """``text`` with every unsafe character written as ``\\uXXXX`` (so it can
    be shown, stored and encoded anywhere), cut to ``limit`` characters."""
    if not isinstance(text, str):
        text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    if not any(is_unsafe(c) for c in text):
        return text
    return "".join(f"\\u{ord(c):04x}" if is_unsafe(c) else c for c in text)


_SPACES = re.compile(" {2,}")
# How much of a text someone else wrote (an archive's header, its error
# message) a mail or a summary repeats.
QUOTE_LIMIT = 200


def quoted(text: Any, limit: int = QUOTE_LIMIT) -> str:
    """``text`` as a quotation that reads as one: in “…”, on one line (line
    breaks and every unsafe character escaped as ``\\uXXXX``, runs of spaces
    one), at most ``limit`` characters between the marks, escapes included,
    cut with an ellipsis, and unable to close its own quotation early (a ”
    inside is escaped too)."""
    if not isinstance(text, str):
        text = str(text)
    pieces = [
        f"\\u{ord(c):04x}" if is_unsafe(c) or c in "“”" else c
        for c in _SPACES.sub(" ", text)
    ]
    body, used = [], 0
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        if used + len(piece) > (limit if last else limit - 1):
            body.append("…")
            break
        body.append(piece)
        used += len(piece)
    return f"“{''.join(body)}”"


class JsonInputError(ValueError):
    """The body is not JSON the registry reads; the message is safe to echo."""


def load_json(body: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses, with a message naming the problem, what
    would otherwise fail later: nesting deeper than ``max_depth`` (or than
    Python can parse at all) and strings holding lone surrogates."""
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonInputError(
            f"The JSON is nested too deeply (at most {max_depth} levels)."
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise JsonInputError(f"The body is not JSON: {escaped(exc, 200)}.") from None
    check_json_value(data, max_depth=max_depth)
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def check_json_value(data: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Walk parsed JSON without recursion; JsonInputError on the first string
    (key or value) holding a lone surrogate, or nesting over ``max_depth``."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise JsonInputError(
                    f"The JSON is nested too deeply (at most {max_depth} levels)."
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            surrogate = next(
                (c for c in value if unicodedata.category(c) == "Cs"), None
            )
            if surrogate is not None:
                raise JsonInputError(
                    f"The string “{escaped(value, 100)}” holds a lone surrogate "
                    f"({codepoint(surrogate)}), which is not a character: send "
                    "text as UTF-8."
                )
