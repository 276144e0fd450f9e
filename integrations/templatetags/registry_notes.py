"""Plain-words notes the public pages and the admin show beside a value."""

from __future__ import annotations

from django import template

from integrations.connectivity import ssrf

register = template.Library()


@register.filter
def inside_network(url: object) -> str:
    """Why a DICOMweb URL only works inside the hospital's network, and what
    that means for the uploader; "" for an address reachable from anywhere."""
    reason = ssrf.inside_network(str(url or ""))
    if not reason:
        return ""
    return (
        f"This address is {reason}: it can only be reached from inside your "
        "hospital's network. Radiologists on that network can use it from the "
        "uploader; from anywhere else (at home, at another site) the uploader "
        "cannot reach it, and Pacsbin's registry cannot check or monitor it "
        "from outside: use “Check from my browser” on your status page, from "
        "inside the network."
    )
