"""What an archive does, learnt by watching it answer.

After a successful server-side check, a few more DICOMweb requests (at most
``MAX_REQUESTS``, each with short timeouts and a small byte cap, all through
``client.fetch`` and so through the SSRF guard) decide each capability by its
behaviour, never by the product's name. ``learn`` is pure logic (no database);
``record`` stores what was learnt on the server's ``ServerHealth`` row (never
on the server, whose saves write audit history); ``ohif_configuration`` turns
it into OHIF's data-source settings, and ``table`` into words for people.

Nothing about a patient is sent or stored. The searches carry no value from
a study: the attributes are compared on the studies an unfiltered
``limit=1`` search brings back, and names are made up (``ZZPACSBINPROBE``)
or wildcards alone (``**``). A study's UIDs appear only in the paths of the
retrieve requests (its instances, metadata, a rendered image) to the archive
that holds it: the client never follows a redirect off the archive's origin.
Only the yes/no answers are stored.

Each flag is learnt with the request exactly as the client that reads it
sends it (OHIF ``OHIF_VERSION``'s own forms, checked against its published
package in tests/test_capabilities_peers.py): an archive that would answer
another form but refuses OHIF's keeps the conservative value.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from django.db import transaction
from django.utils import timezone

from integrations.connectivity import client
from integrations.models import DicomWebServer, ServerHealth

logger = logging.getLogger(__name__)

# --- The capabilities: keys stored in ServerHealth.capabilities ---------------
# Each value is True / False, or None (absent) when it could not be decided;
# NO_MATCH is one of NO_MATCH_VALUES.

INCLUDEFIELD_TAG = "includefield_tag"
"""``includefield=<tag>`` brings back an attribute the default answer lacks
(OHIF's ``qidoSupportsIncludeField``)."""
INCLUDEFIELD_ALL = "includefield_all"
"""``includefield=all`` brings back more than the default attributes."""
FUZZY_MATCHING = "fuzzy_matching"
"""``fuzzymatching=true`` (OHIF's ``supportsFuzzyMatching``): False when the
archive refuses it. Yes would need a real patient's name found only with it,
and learning sends none: unknown otherwise, which keeps OHIF's conservative
``false``. (A value learnt before issue 17 is kept until one is decided.)"""
WILDCARD = "wildcard"
"""``PatientName=**`` (OHIF's form, ``*value*``, around nothing) finds a
study while a made-up name finds none (OHIF's ``supportsWildcard``); no when
the archive refuses it or finds nothing though its first study has a name."""
NO_MATCH = "no_match"
"""How a search that matches nothing is answered: ``"204"`` (No Content) or
``"200_empty"`` (200 with ``[]``)."""
RENDERED = "rendered"
"""``…/rendered`` answers an image for a series and for an instance, asked
exactly as OHIF asks for a thumbnail (``ohif_image_url``: ``Accept:
image/jpeg``, ``viewport=256%2C256``)."""
THUMBNAIL = "thumbnail"
"""``…/thumbnail``, the same two requests."""

NO_MATCH_204 = "204"
NO_MATCH_EMPTY = "200_empty"
NO_MATCH_VALUES = (NO_MATCH_204, NO_MATCH_EMPTY)

# In the order people read them, with their labels.
LABELS: dict[str, str] = {
    INCLUDEFIELD_TAG: "includefield with a named attribute",
    INCLUDEFIELD_ALL: "includefield=all",
    FUZZY_MATCHING: "Fuzzy matching of names",
    WILDCARD: "Wildcards (*) in searches",
    NO_MATCH: "A search that finds nothing answers",
    RENDERED: "Rendered images (/rendered)",
    THUMBNAIL: "Thumbnails (/thumbnail)",
}
KEYS = tuple(LABELS)
_NO_MATCH_TEXT = {NO_MATCH_204: "204 No Content", NO_MATCH_EMPTY: "200 with []"}

# --- Limits: a few small requests, never a long wait ------------------------

MAX_REQUESTS = 14  # 13 when everything is learnt
DEADLINE_SECONDS = 30.0  # for all the requests of one learning
LIMITS = client.Limits(connect_timeout=3.0, total_timeout=5.0, max_bytes=1024 * 1024)
# Scheduled checks relearn at most this often; a check someone asked for
# (admin, API, check_servers) always relearns.
RELEARN_SECONDS = 6 * 3600

DICOM_JSON = "application/dicom+json"
# The OHIF Viewer whose requests learning imitates (the published @ohif/app
# package; tests/peers.ohif_package fetches this version and the peer tests
# compare its own code's requests with these).
OHIF_VERSION = "3.13.2"
# What OHIF 3.13 asks for when it fetches a thumbnail (thumbnailRequestStrategy
# fetch): ``new URLSearchParams({viewport: '256,256'})``, which escapes the
# comma. Orthanc 1.10 answers that form 400 and ``viewport=256,256`` 200: the
# form OHIF sends decides.
IMAGE_ACCEPT = "image/jpeg"
IMAGE_QUERY = "viewport=256%2C256"
# A StudyInstanceUID no archive holds (2.25: the UUID-derived root; 0 is the
# nil UUID, which no generator gives).
ABSENT_STUDY_UID = "2.25.0"
# A patient name nobody has: a search with it must find nothing.
PROBE_NAME = "ZZPACSBINPROBE"
# OHIF's wildcard form (``*${value}*``) around nothing: any name matches.
WILDCARD_ANY = "**"

STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
SOP_UID = "00080018"
PATIENT_NAME = "00100010"
# Study- and patient-level attributes that are not in the standard's default
# study answer of every archive, best first (StudyDescription is the one OHIF
# asks for). The first one the study has and the default answer lacks is asked
# for with includefield.
OPTIONAL_STUDY_TAGS = (
    "00081030",  # StudyDescription
    "00080090",  # ReferringPhysicianName
    "00080050",  # AccessionNumber
    "00200010",  # StudyID
    "00080030",  # StudyTime
    "00100030",  # PatientBirthDate
    "00100040",  # PatientSex
    "00101010",  # PatientAge
)
_UID = re.compile(r"[0-9.]{1,64}", re.ASCII)

Fetch = Callable[..., client.Response]
Capabilities = dict[str, Any]


# --- Learning ---------------------------------------------------------------


@dataclass
class _Asker:
    """Sends the requests of one learning within its budget; a request that
    cannot be sent or gets no answer is None."""

    fetch: Fetch
    limits: client.Limits
    deadline: float
    requests_left: int = MAX_REQUESTS
    sent: list[str] = field(default_factory=list)

    def get(self, url: str, accept: str) -> client.Response | None:
        remaining = self.deadline - time.monotonic()
        if self.requests_left <= 0 or remaining <= 0:
            return None
        self.requests_left -= 1
        self.sent.append(url)
        limits = client.Limits(
            connect_timeout=min(self.limits.connect_timeout, remaining),
            total_timeout=min(self.limits.total_timeout, remaining),
            max_bytes=self.limits.max_bytes,
            max_redirects=self.limits.max_redirects,
        )
        try:
            return self.fetch(
                method="GET",
                url=url,
                headers={"Accept": accept},
                follow_redirects=True,
                limits=limits,
            )
        except client.FetchError:
            return None


def learn(
    qido_url: str,
    wado_url: str,
    *,
    fetch: Fetch = client.fetch,
    limits: client.Limits = LIMITS,
    deadline_seconds: float = DEADLINE_SECONDS,
) -> Capabilities:
    """Every capability of the archive at these roots: True / False / a
    NO_MATCH value, or None where this learning could not decide it."""
    ask = _Asker(fetch, limits, time.monotonic() + deadline_seconds)
    learnt: Capabilities = dict.fromkeys(KEYS)

    def search(**params: str) -> list[Any] | int | None:
        query = search_query(params)
        return _dicom_json(ask.get(f"{qido_url}/studies?{query}", DICOM_JSON))

    first = ask.get(f"{qido_url}/studies?limit=1", DICOM_JSON)
    found = _dicom_json(first)
    if found == []:
        # An archive with no study: that search was itself one matching nothing.
        learnt[NO_MATCH] = _no_match(first)
        return learnt
    learnt[NO_MATCH] = _no_match(
        ask.get(f"{qido_url}/studies?StudyInstanceUID={ABSENT_STUDY_UID}", DICOM_JSON)
    )
    study = found[0] if isinstance(found, list) else None
    study_uid = _uid(study, STUDY_UID)
    if not isinstance(study, dict) or study_uid is None:
        return learnt  # no study to learn the rest from
    default_tags = set(study)

    instance = _first(
        _dicom_json(
            ask.get(f"{qido_url}/studies/{study_uid}/instances?limit=1", DICOM_JSON)
        )
    )
    series_uid, sop_uid = _uid(instance, SERIES_UID), _uid(instance, SOP_UID)
    present: set[str] | None = None  # the study's attributes, when known
    if series_uid and sop_uid:
        instance_path = f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        metadata = _first(
            _dicom_json(ask.get(f"{wado_url}/{instance_path}/metadata", DICOM_JSON))
        )
        if isinstance(metadata, dict):
            present = {tag for tag, value in metadata.items() if _has_value(value)}
    # The unfiltered search again, with includefield: the answer is compared
    # for the same study (by its UID, read here, never sent).
    tag, tag_known_present = _optional_tag(default_tags, present)
    if tag is not None:
        learnt[INCLUDEFIELD_TAG] = _includefield(
            search(includefield=tag),
            study_uid,
            lambda entry: tag in entry,
            decisive_no=tag_known_present,
        )
    learnt[INCLUDEFIELD_ALL] = _includefield(
        search(includefield="all"),
        study_uid,
        lambda entry: bool(set(entry) - default_tags),
        decisive_no=tag_known_present,
    )

    learnt[WILDCARD] = _wildcard(
        with_it=search(PatientName=WILDCARD_ANY),
        without_it=search(PatientName=PROBE_NAME),
        study_has_a_name=_has_value(study.get(PATIENT_NAME)),
    )
    # Only a refusal is telling (see FUZZY_MATCHING).
    fuzzy = search(PatientName=PROBE_NAME.lower(), fuzzymatching="true")
    learnt[FUZZY_MATCHING] = False if isinstance(fuzzy, int) else None

    if series_uid and sop_uid:
        for key in (RENDERED, THUMBNAIL):
            learnt[key] = _images(
                ask,
                ohif_image_url(wado_url, key, study_uid, series_uid),
                ohif_image_url(wado_url, key, study_uid, series_uid, sop_uid),
            )
    return learnt


def search_query(params: dict[str, str]) -> str:
    """A ``limit=1`` search's query string, escaped as dicomweb-client
    escapes OHIF's search parameters (encodeURIComponent): Orthanc's
    DICOMweb plugin does not unescape %2A back into a wildcard."""
    return urlencode({"limit": "1", **params}, safe="!*'()", quote_via=quote)


def ohif_image_url(
    wado_url: str,
    kind: str,
    study_uid: str,
    series_uid: str,
    sop_uid: str | None = None,
) -> str:
    """The URL OHIF fetches a series' (or an instance's) thumbnail from, with
    ``thumbnailRendering: kind`` and ``thumbnailRequestStrategy: fetch``
    (OHIF's buildThumbnailEndpointPath and getThumbnailFetchRequest; UIDs as
    they are, since learning only uses ones that are digits and dots)."""
    path = f"/studies/{study_uid}/series/{series_uid}"
    if sop_uid:
        path += f"/instances/{sop_uid}"
    return f"{wado_url}{path}/{kind}?{IMAGE_QUERY}"


def _images(ask: _Asker, *urls: str) -> bool | None:
    """Yes when every one of OHIF's requests answers an image; no as soon as
    one is refused (the conservative value then stands)."""
    verdict: bool | None = True
    for url in urls:
        answer = _image(ask.get(url, IMAGE_ACCEPT))
        if answer is False:
            return False
        if answer is None:
            verdict = None
    return verdict


def _dicom_json(response: client.Response | None) -> list[Any] | int | None:
    """A search's datasets ([] for 204), the status of a refusal (4xx other
    than those asking for a login, or 501), or None (no usable answer)."""
    if response is None:
        return None
    if response.status == 204:
        return []
    if response.status != 200:
        return response.status if _refused(response.status) else None
    content_type = (response.header("content-type") or "").split(";")[0].strip()
    if content_type.lower() not in (DICOM_JSON, "application/json"):
        return None
    try:
        data = json.loads(response.body or b"null")
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, list) else None


def _refused(status: int) -> bool:
    return (400 <= status < 500 and status not in (401, 403, 407, 408, 429)) or (
        status == 501
    )


def _no_match(response: client.Response | None) -> str | None:
    if response is None:
        return None
    if response.status == 204:
        return NO_MATCH_204
    found = _dicom_json(response)
    return NO_MATCH_EMPTY if found == [] else None


def _first(found: list[Any] | int | None) -> dict[str, Any] | None:
    if isinstance(found, list) and found and isinstance(found[0], dict):
        return found[0]
    return None


def _uid(dataset: Any, tag: str) -> str | None:
    try:
        uid = dataset[tag]["Value"][0]
    except (TypeError, KeyError, IndexError):
        return None
    return uid if isinstance(uid, str) and _UID.fullmatch(uid) else None


def _has_value(attribute: Any) -> bool:
    return isinstance(attribute, dict) and bool(attribute.get("Value"))


def _optional_tag(
    default_tags: set[str], present: set[str] | None
) -> tuple[str | None, bool]:
    """The attribute to ask for with includefield (None when the default
    answer has them all), and whether the study is known to have it (so that
    its absence from the answer says no)."""
    absent_by_default = [t for t in OPTIONAL_STUDY_TAGS if t not in default_tags]
    for tag in absent_by_default:
        if present is not None and tag in present:
            return tag, True
    # Unknown whether the study has it: only its coming back decides (yes).
    return (absent_by_default[0] if absent_by_default else None), False


def _entry(found: list[Any], study_uid: str) -> dict[str, Any] | None:
    return next(
        (e for e in found if isinstance(e, dict) and _uid(e, STUDY_UID) == study_uid),
        None,
    )


def _includefield(
    found: list[Any] | int | None,
    study_uid: str,
    came_back: Callable[[dict[str, Any]], bool],
    *,
    decisive_no: bool,
) -> bool | None:
    if isinstance(found, int):
        return False  # the archive refuses the parameter
    entry = _entry(found, study_uid) if isinstance(found, list) else None
    if entry is None:
        return None
    if came_back(entry):
        return True
    return False if decisive_no else None


def _wildcard(
    with_it: list[Any] | int | None,
    without_it: list[Any] | int | None,
    *,
    study_has_a_name: bool,
) -> bool | None:
    """Yes when the wildcard finds a study while the made-up name finds none;
    no when the archive refuses the wildcard, or finds nothing with it though
    its first study has a name; unknown otherwise (the name filter ignored,
    or no answer)."""
    if without_it != []:
        return None  # the name filter is not honoured: nothing to tell apart
    if isinstance(with_it, int):
        return False
    if not isinstance(with_it, list):
        return None
    if with_it:
        return True
    return False if study_has_a_name else None


def _image(response: client.Response | None) -> bool | None:
    if response is None:
        return None
    if response.status == 200:
        content_type = (response.header("content-type") or "").split(";")[0].strip()
        return content_type.lower().startswith("image/") and bool(response.body)
    return False if _refused(response.status) else None


# --- Recording --------------------------------------------------------------


def clean(capabilities: Any) -> Capabilities:
    """Only the known keys with the values they may hold (what is stored is
    read back defensively: a hand-edited row cannot break an answer)."""
    if not isinstance(capabilities, dict):
        return {}
    cleaned: Capabilities = {}
    for key in KEYS:
        value = capabilities.get(key)
        if key == NO_MATCH:
            if value in NO_MATCH_VALUES:
                cleaned[key] = value
        elif isinstance(value, bool):
            cleaned[key] = value
    return cleaned


def record(server: DicomWebServer, learnt: Capabilities) -> ServerHealth:
    """Store what was learnt on the server's health row: each decided value
    replaces the old one; what this learning could not decide keeps what an
    earlier one learnt (a passing timeout does not forget a capability)."""
    with transaction.atomic():
        health, _ = ServerHealth.objects.select_for_update().get_or_create(
            server=server
        )
        fields = ["capabilities"]
        if merge(health, learnt, timezone.now()):
            fields.append("capabilities_learnt_at")
        health.save(update_fields=fields)
    return health


def merge(health: ServerHealth, learnt: Capabilities, when: datetime) -> bool:
    """Put what was learnt on ``health`` (unsaved): each decided value
    replaces the old one, the rest keeps what an earlier learning found;
    True when something was decided (``capabilities_learnt_at`` = ``when``)."""
    decided = clean(learnt)
    health.capabilities = {**clean(health.capabilities), **decided}
    if decided:
        health.capabilities_learnt_at = when
    return bool(decided)


def due(learnt_at: datetime | None, now: datetime) -> bool:
    """Whether capabilities learnt at ``learnt_at`` are to be learnt again."""
    return learnt_at is None or (now - learnt_at).total_seconds() >= RELEARN_SECONDS


def learn_and_record(
    server: DicomWebServer, *, force: bool = True, fetch: Fetch = client.fetch
) -> Capabilities | None:
    """Learn the archive's capabilities and store them; None when skipped
    (learnt less than RELEARN_SECONDS ago and not forced) or when learning
    failed, which is logged and never raised: a check's outcome does not
    depend on it."""
    try:
        if not force and _recently_learnt(server):
            return None
        learnt = learn(server.qido_url, server.wado_url, fetch=fetch)
        record(server, learnt)
        return learnt
    except Exception:
        logger.exception("Learning the capabilities of server %s failed", server.pk)
        return None


def _recently_learnt(server: DicomWebServer) -> bool:
    learnt_at = (
        ServerHealth.objects.filter(server=server)
        .values_list("capabilities_learnt_at", flat=True)
        .first()
    )
    return not due(learnt_at, timezone.now())


# --- Reading ----------------------------------------------------------------


def table(capabilities: Any) -> list[tuple[str, str]]:
    """(label, value in words) for each capability, in reading order."""
    known = clean(capabilities)
    rows = []
    for key, label in LABELS.items():
        value = known.get(key)
        if value is None:
            text = "unknown"
        elif key == NO_MATCH:
            text = _NO_MATCH_TEXT[value]
        else:
            text = "yes" if value else "no"
        rows.append((label, text))
    return rows


def ohif_configuration(capabilities: Any) -> dict[str, Any]:
    """OHIF v3 data-source settings from what was learnt; what is unknown
    keeps the conservative value any DICOMweb archive meets.

    ``imageRendering`` stays ``wadors``: in OHIF v3 it only chooses WADO-RS
    frames over WADO-URI for the images themselves (the registry has no
    WADO-URI root, and a rendered JPEG would lose the pixel values a viewer
    windows). What /thumbnail and /rendered do sets ``thumbnailRendering``
    (``thumbnail`` preferred, then ``rendered``, else ``wadors``), fetched the
    way learning asked for it (``thumbnailRequestStrategy: fetch``: a plain
    GET with Accept image/jpeg).
    """
    known = clean(capabilities)
    if known.get(THUMBNAIL):
        thumbnails = "thumbnail"
    elif known.get(RENDERED):
        thumbnails = "rendered"
    else:
        thumbnails = "wadors"
    configuration: dict[str, Any] = {
        "qidoSupportsIncludeField": known.get(INCLUDEFIELD_TAG) is True,
        "imageRendering": "wadors",
        "thumbnailRendering": thumbnails,
        "enableStudyLazyLoad": True,
        "supportsFuzzyMatching": known.get(FUZZY_MATCHING) is True,
        "supportsWildcard": known.get(WILDCARD) is not False,
    }
    if thumbnails != "wadors":
        configuration["thumbnailRequestStrategy"] = "fetch"
    return configuration
