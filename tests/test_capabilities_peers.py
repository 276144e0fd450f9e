"""Capabilities learnt from the real thing: Debian's Orthanc 1.10 with its
DICOMweb plugin 1.7 (tests/peers.py), each value asserted on its own, then a
check through the nginx fix-it proxy stores them and ?format=ohif uses them."""

from __future__ import annotations

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


def test_orthanc_accepts_fuzzymatching_and_ignores_it(learnt: dict[str, Any]) -> None:
    # PatientName=test&fuzzymatching=true finds nothing, as without it
    # (fuzzymatching=maybe would be a 400: the parameter is read, then unused).
    assert learnt[caps.FUZZY_MATCHING] is False


def test_orthanc_does_wildcards_as_ohif_sends_them(learnt: dict[str, Any]) -> None:
    # PatientName=*es* finds Test^Connectivity; PatientName=es does not.
    assert learnt[caps.WILDCARD] is True


def test_orthanc_answers_no_match_with_200_and_an_empty_array(
    learnt: dict[str, Any],
) -> None:
    assert learnt[caps.NO_MATCH] == caps.NO_MATCH_EMPTY


def test_orthanc_renders_an_instance(learnt: dict[str, Any]) -> None:
    assert learnt[caps.RENDERED] is True


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
        caps.FUZZY_MATCHING: False,
        caps.WILDCARD: True,
        caps.NO_MATCH: caps.NO_MATCH_EMPTY,
        caps.RENDERED: True,
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
    assert configuration["thumbnailRendering"] == "rendered"
    assert configuration["thumbnailRequestStrategy"] == "fetch"
