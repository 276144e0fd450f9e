"""The API's JSON parser: DRF's, with the registry's limits on odd input."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from integrations.inputs import JsonInputError, load_json


class StrictJSONParser(JSONParser):
    """Deep nesting and lone surrogates are a 400 naming the problem, never a
    RecursionError or an answer that cannot be encoded (a 500)."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding}.") from exc
        try:
            return load_json(text)
        except JsonInputError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
