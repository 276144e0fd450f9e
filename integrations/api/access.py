"""The answer to the access question, in our shape or as OHIF data sources."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.utils.cache import parse_etags

from integrations import registry

FORMATS = ("json", "ohif")
OHIF_NAMESPACE = "@ohif/extension-default.dataSourcesModule.dicomweb"


def answer(email: str, fmt: str = "json") -> dict[str, Any]:
    """Every active server ``email`` (normalised) may use; one SQL query."""
    servers = [
        {
            "id": row["id"],
            "name": row["name"],
            "institution": row["institution__name"],
            "qido_url": row["qido_url"],
            "wado_url": row["wado_url"],
        }
        for row in registry.access_rows(email)
    ]
    if fmt == "ohif":
        return ohif_answer(email, servers)
    return {"email": email, "servers": servers}


def ohif_answer(email: str, servers: list[dict[str, Any]]) -> dict[str, Any]:
    """OHIF Viewer v3 ``dataSources`` entries, one DICOMweb source per server."""
    sources = [
        {
            "namespace": OHIF_NAMESPACE,
            "sourceName": f"pacsbin-{server['id']}",
            "configuration": {
                "friendlyName": f"{server['institution']} — {server['name']}",
                "name": server["name"],
                "qidoRoot": server["qido_url"],
                "wadoRoot": server["wado_url"],
                # Conservative capabilities that any DICOMweb archive meets.
                "qidoSupportsIncludeField": False,
                "imageRendering": "wadors",
                "thumbnailRendering": "wadors",
                "enableStudyLazyLoad": True,
                "supportsFuzzyMatching": False,
                "supportsWildcard": True,
            },
        }
        for server in servers
    ]
    return {
        "email": email,
        "defaultDataSourceName": sources[0]["sourceName"] if sources else None,
        "dataSources": sources,
    }


def etag(content: dict[str, Any]) -> str:
    """A strong ETag computed from the answer itself: it changes exactly when
    the answer does, with no bookkeeping on writes."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:40] + '"'


def not_modified(if_none_match: str, current: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag equal to ``current``.

    The comparison is the weak one the RFC prescribes for If-None-Match, so a
    proxy that weakens our tag when it compresses (W/"…") still gets a 304.
    """
    if not if_none_match.strip():
        return False
    tags = parse_etags(if_none_match)
    if tags == ["*"]:
        return True
    return any(tag.removeprefix("W/") == current for tag in tags)
