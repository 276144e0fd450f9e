"""What an archive (or the proxy in front of it) must send so that the
uploader's browser may read its DICOMweb answers: plain guidance per setup."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from integrations.connectivity import pacsbinproxy, proxyconfig
from integrations.models import DicomWebServer

CorsMode = DicomWebServer.CorsMode


@dataclass(frozen=True)
class CorsGuidance:
    origins: list[str]
    where: str  # who must send the headers, in plain words
    allow_origin_lines: list[str]
    other_lines: list[str]
    notes: list[str]

    @property
    def header_lines(self) -> list[str]:
        return [*self.allow_origin_lines, *self.other_lines]


def guidance_for(
    cors_mode: str, needs_credentials: bool, origins: list[str] | None = None
) -> CorsGuidance:
    origins = list(settings.UPLOADER_ORIGINS if origins is None else origins)
    answers: dict[str, str] = {
        CorsMode.DIRECT: "Your archive itself must send these headers.",
        CorsMode.REVERSE_PROXY: "The reverse proxy in front of your archive "
        "(nginx, Apache httpd, Caddy, …) must add these headers.",
        CorsMode.DIMSE_PROXY: "Pacsbin's proxy (in its dimse mode for an "
        'archive that speaks only DIMSE, or with "proxyMode": "dicomweb" in '
        "front of a DICOMweb archive) sends these headers for you, from the "
        "config.jsonc below: the QIDO and WADO URLs you give us must be the "
        "proxy's, not the archive's.",
    }
    where = answers.get(cors_mode, "Your archive must send these headers.")
    notes = []
    # The same values the fix-it configurations send, so the advice and the
    # ready-made configuration never disagree.
    other = [
        f"Access-Control-Allow-Methods: {proxyconfig.ALLOW_METHODS}",
        f"Access-Control-Allow-Headers: {proxyconfig.ALLOW_HEADERS}",
        f"Access-Control-Expose-Headers: {proxyconfig.EXPOSE_HEADERS}",
    ]
    if needs_credentials:
        # A wildcard is refused by browsers once cookies or HTTP auth are sent.
        allow = [f"Access-Control-Allow-Origin: {origin}" for origin in origins]
        other = ["Access-Control-Allow-Credentials: true", "Vary: Origin", *other]
        notes.append(
            "Because your archive needs the user's own login (cookies or a "
            "password prompt), “Access-Control-Allow-Origin: *” is NOT enough: "
            "browsers refuse it with credentials. Send back the exact origin of "
            "the request when it is one of the origins below, together with "
            "“Access-Control-Allow-Credentials: true”."
        )
    elif cors_mode == CorsMode.DIMSE_PROXY:
        # Pacsbin's proxy echoes exactly the origins its config.jsonc lists
        # (never *): say what it will send, so the page and the file agree.
        allow = [f"Access-Control-Allow-Origin: {origin}" for origin in origins]
        notes.append(
            "Pacsbin's proxy sends back the request's origin when it is one of "
            "the origins below (the config.jsonc lists exactly these), never "
            "“*”. You change nothing on the archive for CORS."
        )
    else:
        allow = ["Access-Control-Allow-Origin: *"]
        notes.append(
            "“Access-Control-Allow-Origin: *” is enough. If you prefer to name "
            "the origin, send back the request's origin when it is one of the "
            "origins below, with “Vary: Origin”."
        )
    if cors_mode == CorsMode.DIMSE_PROXY:
        # What Pacsbin's proxy sends with its generated config.jsonc.
        other = [
            *(["Access-Control-Allow-Credentials: true"] if needs_credentials else []),
            f"Access-Control-Allow-Methods: {', '.join(pacsbinproxy.METHODS)}",
            "Access-Control-Allow-Headers: " + ", ".join(pacsbinproxy.ALLOWED_HEADERS),
        ]
    if len(origins) > 1 and needs_credentials:
        notes.append(
            "Only one origin may be sent per answer: echo the request's Origin "
            "header when it is in the list, never all of them at once."
        )
    if cors_mode != CorsMode.DIMSE_PROXY:
        # For headers someone configures by hand; Pacsbin's proxy, from its
        # generated config.jsonc, already does both.
        notes.append(
            "Name Authorization in Access-Control-Allow-Headers: a “*” there "
            "does not cover it. Answer the OPTIONS preflight with these headers "
            "too."
        )
        notes.append(
            "Send the headers on error answers (401, 404, 500) as well; "
            "otherwise the browser reports a CORS failure and hides the real "
            "error."
        )
    return CorsGuidance(
        origins=origins,
        where=where,
        allow_origin_lines=allow,
        other_lines=other,
        notes=notes,
    )
