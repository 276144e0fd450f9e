"""Capabilities learnt from the real thing: Debian's Orthanc 1.10 with its
DICOMweb plugin 1.7 (tests/peers.py), each value asserted on its own, then a
check through the nginx fix-it proxy stores them and ?format=ohif uses them.
OHIF's own request-building code, read from its published package (pinned,
peers.ohif_package) and run with node, proves learning asks exactly what
OHIF will ask, and that what OHIF asks with the learnt flags succeeds."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from integrations import registry
from integrations.connectivity import capabilities as caps
from integrations.connectivity import proxyconfig, run_check
from integrations.models import DicomWebServer, Institution, ServerHealth
from tests import peers
from tests.api_helpers import key_header
from tests.factories import api_key

pytestmark = [
    pytest.mark.peers,
    pytest.mark.django_db,
    pytest.mark.usefixtures("allow_private"),
]
JANE = "jane.doe@university.example"


@pytest.fixture
def learnt(orthanc: peers.Orthanc) -> dict[str, Any]:
    return caps.learn(orthanc.dicomweb, orthanc.dicomweb)


def test_orthanc_brings_back_a_named_includefield(learnt: dict[str, Any]) -> None:
    # StudyDescription (0008,1030) is not in its default study answer; asked
    # for by name, it comes back.
    assert learnt[caps.INCLUDEFIELD_TAG] is True


def test_orthanc_ignores_includefield_all(learnt: dict[str, Any]) -> None:
    # includefield=all answers the default attributes only, though the study
    # has a StudyDescription (its metadata says so).
    assert learnt[caps.INCLUDEFIELD_ALL] is False


def test_orthanc_accepts_fuzzymatching_so_it_stays_unknown(
    learnt: dict[str, Any],
) -> None:
    # It accepts the parameter and ignores it; only a real name could show
    # that, and learning sends none: OHIF keeps supportsFuzzyMatching false.
    assert learnt[caps.FUZZY_MATCHING] is None


def test_orthanc_does_wildcards_as_ohif_sends_them(learnt: dict[str, Any]) -> None:
    # PatientName=** finds a study; PatientName=ZZPACSBINPROBE none.
    assert learnt[caps.WILDCARD] is True


def test_orthanc_answers_no_match_with_200_and_an_empty_array(
    learnt: dict[str, Any],
) -> None:
    assert learnt[caps.NO_MATCH] == caps.NO_MATCH_EMPTY


def test_orthanc_refuses_rendered_as_ohif_asks_for_it(learnt: dict[str, Any]) -> None:
    # /rendered?viewport=256,256 is an image, but OHIF 3.13 sends
    # viewport=256%2C256 and the plugin 1.7 answers 400: no.
    assert learnt[caps.RENDERED] is False


def test_orthanc_has_no_thumbnail_resource(learnt: dict[str, Any]) -> None:
    # The plugin 1.7 answers 404 (thumbnails came in orthanc-dicomweb 1.19).
    assert learnt[caps.THUMBNAIL] is False


def test_a_check_through_the_proxy_stores_them_and_ohif_uses_them(
    orthanc: peers.Orthanc, tmp_path: Path, settings
) -> None:
    settings.UPLOADER_ORIGINS = ["https://pacsbin.com"]
    settings.REGISTRY_PUBLIC_ORIGIN = ""
    settings.ACCESS_THROTTLE_RATE = None
    institution = Institution.objects.create(name="University Hospital")
    server = DicomWebServer.objects.create(
        institution=institution,
        name="Orthanc",
        qido_url=orthanc.dicomweb,
        wado_url=orthanc.dicomweb,
        status=DicomWebServer.Status.ACTIVE,
    )
    with peers.nginx(tmp_path, proxyconfig.render(server, "nginx")) as proxy:
        server.qido_url = server.wado_url = f"{proxy}/dicom-web"
        server.save()
        check = run_check(server)  # as a scheduled round calls it
    assert check.outcome == "ok"
    health = ServerHealth.objects.get(server=server)
    assert health.capabilities == {
        caps.INCLUDEFIELD_TAG: True,
        caps.INCLUDEFIELD_ALL: False,
        caps.WILDCARD: True,
        caps.NO_MATCH: caps.NO_MATCH_EMPTY,
        caps.RENDERED: False,
        caps.THUMBNAIL: False,
    }
    assert health.capabilities_learnt_at is not None

    registry.add_approved_users(server, [JANE])
    _, raw = api_key("viewer", "access")
    answer = Client().get(
        "/api/v1/access", {"email": JANE, "format": "ohif"}, **key_header(raw)
    )
    assert answer.status_code == 200
    [source] = answer.json()["dataSources"]
    configuration = source["configuration"]
    assert configuration["qidoRoot"] == server.qido_url
    assert configuration["qidoSupportsIncludeField"] is True
    assert configuration["supportsFuzzyMatching"] is False
    assert configuration["supportsWildcard"] is True
    assert configuration["imageRendering"] == "wadors"
    assert configuration["thumbnailRendering"] == "wadors"
    assert "thumbnailRequestStrategy" not in configuration


# --- OHIF's own requests (its published package, pinned) --------------------


@pytest.fixture(scope="module")
def ohif() -> Path:
    return peers.ohif_package()


def test_the_ohif_package_is_the_pinned_release(ohif: Path) -> None:
    version = json.loads((ohif / "package.json").read_text())["version"]
    assert version == peers.OHIF_VERSION == caps.OHIF_VERSION == "3.13.2"


def test_learning_asks_for_images_exactly_as_ohifs_own_code_does(
    ohif: Path, tmp_path: Path
) -> None:
    root = "https://pacs.example/dicom-web"
    study, series, sop = "1.2.3", "1.2.3.4", "1.2.3.4.5"
    contexts = {
        "series": {"StudyInstanceUID": study, "SeriesInstanceUID": series},
        "instance": {
            "StudyInstanceUID": study,
            "SeriesInstanceUID": series,
            "SOPInstanceUID": sop,
        },
    }
    for kind in (caps.RENDERED, caps.THUMBNAIL):
        asked = peers.ohif_run(
            ohif,
            f"[{json.dumps(contexts['series'])}, {json.dumps(contexts['instance'])}]"
            f".map(c => getThumbnailFetchRequest(c, {json.dumps(kind)}, "
            f"{json.dumps(root)}, () => ({{}})))",
            tmp_path,
        )
        assert [a["url"] for a in asked] == [
            caps.ohif_image_url(root, kind, study, series),
            caps.ohif_image_url(root, kind, study, series, sop),
        ]
        assert all(a["headers"] == {"Accept": caps.IMAGE_ACCEPT} for a in asked)


def test_learning_searches_as_ohifs_own_code_escapes(
    ohif: Path, tmp_path: Path
) -> None:
    name = json.dumps(caps.WILDCARD_ANY)
    wildcard, fuzzy, escaped = peers.ohif_run(
        ohif,
        "[mapParams({patientName: 'v'}, {supportsWildcard: true}).PatientName,"
        " mapParams({patientName: 'v'}, {supportsFuzzyMatching: true}).fuzzymatching,"
        f" _parseQueryParameters({{limit: 1, PatientName: {name},"
        " fuzzymatching: true})]",
        tmp_path,
    )
    # OHIF's wildcard form around nothing, and its fuzzy flag as it sends it.
    assert wildcard == "*v*" and caps.WILDCARD_ANY == "**"
    assert fuzzy is True
    assert escaped == "?" + caps.search_query(
        {"PatientName": caps.WILDCARD_ANY, "fuzzymatching": "true"}
    )


def test_what_ohif_asks_with_the_learnt_flags_succeeds_against_orthanc(
    orthanc: peers.Orthanc, ohif: Path, tmp_path: Path
) -> None:
    """The OHIF 3.13 incident: with thumbnailRendering "rendered", its
    thumbnail requests were 400s. With what is learnt now, every request
    OHIF makes for the study list, its thumbnails and the viewer succeeds."""
    configuration = caps.ohif_configuration(
        caps.learn(orthanc.dicomweb, orthanc.dicomweb)
    )
    assert configuration["thumbnailRendering"] == "wadors"
    root = orthanc.dicomweb
    # The study list, searched by name with the learnt wildcard and fuzzy flags.
    query = peers.ohif_run(
        ohif,
        "_parseQueryParameters(mapParams({patientName: 'onnectivit'}, "
        f"{{supportsWildcard: {json.dumps(configuration['supportsWildcard'])}, "
        f"supportsFuzzyMatching: {json.dumps(configuration['supportsFuzzyMatching'])}"
        "}))",
        tmp_path,
    )
    status, _, body = get(f"{root}/studies{query}", caps.DICOM_JSON)
    assert status == 200
    uids = {study["0020000D"]["Value"][0] for study in json.loads(body)}
    assert uids == set(orthanc.study_uids)
    study_uid = orthanc.study_uids[0]
    status, _, body = get(
        f"{root}/studies/{study_uid}/instances?limit=1", caps.DICOM_JSON
    )
    instance = json.loads(body)[0]
    context = {
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": instance["0020000E"]["Value"][0],
        "SOPInstanceUID": instance["00080018"]["Value"][0],
    }
    # "wadors" thumbnails and the viewer: OHIF's WADO-RS frame of an instance.
    image_id = peers.ohif_run(
        ohif,
        f"getWADORSImageId({json.dumps(context)}, {{wadoRoot: {json.dumps(root)}}})",
        tmp_path,
    )
    assert image_id.startswith("wadors:")
    status, content_type, body = get(
        image_id.removeprefix("wadors:"),
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
    )
    assert status == 200, body[:300]
    assert content_type.startswith("multipart/related") and body
    # Why the learnt flag said no: OHIF's own /rendered request, refused.
    rendered = peers.ohif_run(
        ohif,
        f"getThumbnailFetchRequest({json.dumps(context)}, 'rendered', "
        f"{json.dumps(root)}, () => ({{}}))",
        tmp_path,
    )
    assert get(rendered["url"], caps.IMAGE_ACCEPT)[0] == 400
    assert get(rendered["url"].replace("%2C", ","), caps.IMAGE_ACCEPT)[0] == 200


def get(url: str, accept: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get("content-type", ""), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()
