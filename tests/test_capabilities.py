"""Capabilities: what an archive does, learnt by watching it answer (a fake
archive behind a fake fetch, one behaviour at a time), stored on ServerHealth
and used by ?format=ohif. The real Orthanc: test_capabilities_peers.py."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import urllib3
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import TestCase, TransactionTestCase, override_settings

from integrations.connectivity import capabilities as caps
from integrations.connectivity import client, probe, run_check
from integrations.models import CheckOutcome, ServerHealth
from tests.api_helpers import key_header
from tests.factories import api_key, make_institution, make_server

QIDO = "https://pacs.example/dicomweb"
WADO = "https://pacs.example/wado"
STUDY = "1.2.3.4"
SERIES = "1.2.3.4.5"
SOP = "1.2.3.4.5.6"
JANE = "jane.doe@university.example"


def attribute(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


DEFAULT_STUDY = {
    "0020000D": attribute("UI", STUDY),
    "00100010": attribute("PN", {"Alphabetic": "Test^Connectivity"}),
    "00100020": attribute("LO", "PACSBIN-TEST-1"),
    "00080020": attribute("DA", "20260101"),
}
STUDY_DESCRIPTION = {"00081030": attribute("LO", "Connectivity check fixture")}
INSTANCE = {
    "0020000D": attribute("UI", STUDY),
    "0020000E": attribute("UI", SERIES),
    "00080018": attribute("UI", SOP),
}
METADATA = {**DEFAULT_STUDY, **STUDY_DESCRIPTION, **INSTANCE}


def response(
    status: int = 200, body: Any = b"", content_type: str | None = None, url: str = ""
) -> client.Response:
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
        content_type = content_type or "application/dicom+json"
    headers = urllib3.HTTPHeaderDict()
    if content_type:
        headers["Content-Type"] = content_type
    return client.Response(url=url, status=status, headers=headers, body=body)


@dataclass
class FakeArchive:
    """A DICOMweb archive whose every behaviour is a setting; ``fetch`` is a
    stand-in for client.fetch that records what was asked."""

    includefield: str = "works"  # works | ignored | refused
    includefield_all: str = "works"  # works | ignored
    fuzzy: str = "works"  # works | ignored | refused
    wildcard: str = "works"  # works | literal | refused
    name_filter: str = "honoured"  # honoured | ignored
    no_match: int = 204  # 204 | 200
    rendered: Any = "image"  # image | a status
    thumbnail: Any = "image"
    series_images: bool = True  # a series' /rendered and /thumbnail too
    escaped_viewport: str = "works"  # works | refused (Orthanc 1.10: 400)
    has_study: bool = True
    has_description: bool = True
    metadata: bool = True
    asked: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def fetch(self, *, method: str, url: str, headers: dict[str, str], **_: Any):
        self.asked.append((method, url, headers))
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if url.startswith(QIDO + "/studies") and path.endswith("/studies"):
            return self.search(query)
        if path == f"/dicomweb/studies/{STUDY}/instances":
            return response(body=[INSTANCE])
        series = f"/wado/studies/{STUDY}/series/{SERIES}"
        base = f"{series}/instances/{SOP}"
        if path == f"{base}/metadata":
            return response(body=[METADATA]) if self.metadata else response(404)
        images = [f"{base}/rendered", f"{base}/thumbnail"]
        if self.series_images:
            images += [f"{series}/rendered", f"{series}/thumbnail"]
        if path in images:
            behaviour = self.rendered if path.endswith("rendered") else self.thumbnail
            if "%2C" in parts.query and self.escaped_viewport == "refused":
                behaviour = 400
            if behaviour == "image":
                return response(body=b"\xff\xd8\xff\xe0jpeg", content_type="image/jpeg")
            return response(behaviour, b'{"error": "no"}', "application/json")
        return response(404)

    def nothing(self) -> client.Response:
        return response(204) if self.no_match == 204 else response(body=[])

    def search(self, query: dict[str, str]) -> client.Response:
        if not self.has_study:
            return self.nothing()
        if query.get("StudyInstanceUID", STUDY) != STUDY:
            return self.nothing()
        includefield = query.get("includefield")
        if includefield and self.includefield == "refused":
            return response(400, b'{"error": "includefield"}', "application/json")
        fuzzy = query.get("fuzzymatching") == "true"
        if fuzzy and self.fuzzy == "refused":
            return response(400, b"fuzzymatching?", "text/plain")
        name = query.get("PatientName")
        if name is not None and not self.name_matches(name, fuzzy):
            return self.nothing()
        study = dict(DEFAULT_STUDY)
        if self.has_description and (
            (includefield == "00081030" and self.includefield == "works")
            or (includefield == "all" and self.includefield_all == "works")
        ):
            study.update(STUDY_DESCRIPTION)
        return response(body=[study])

    def name_matches(self, name: str, fuzzy: bool) -> bool:
        stored = "Test^Connectivity"
        if self.name_filter == "ignored":
            return True
        if "*" in name:
            if self.wildcard == "refused":
                return False
            if self.wildcard == "works":
                pattern = ".*".join(re.escape(p) for p in name.split("*"))
                return re.fullmatch(pattern, stored, re.IGNORECASE) is not None
        if fuzzy and self.fuzzy == "works":
            return any(
                token.lower().startswith(name.lower()) for token in stored.split("^")
            )
        return name.lower() == stored.lower()


def learn(archive: FakeArchive) -> dict[str, Any]:
    return caps.learn(QIDO, WADO, fetch=archive.fetch)


ORTHANC_LIKE = {
    caps.INCLUDEFIELD_TAG: True,
    caps.INCLUDEFIELD_ALL: False,
    caps.FUZZY_MATCHING: None,
    caps.WILDCARD: True,
    caps.NO_MATCH: caps.NO_MATCH_EMPTY,
    caps.RENDERED: False,
    caps.THUMBNAIL: False,
}
# Stored values with every kind of answer (a thumbnail through /rendered).
LEARNT = {
    **ORTHANC_LIKE,
    caps.FUZZY_MATCHING: False,
    caps.RENDERED: True,
}
# Every value of the study that says whose it is (and its UIDs).
IDENTIFYING = ("Test", "Connectivity", "PACSBIN-TEST-1", STUDY, SERIES, SOP)


class LearningTests(TestCase):
    def test_an_archive_that_does_everything(self) -> None:
        archive = FakeArchive()
        assert learn(archive) == {
            caps.INCLUDEFIELD_TAG: True,
            caps.INCLUDEFIELD_ALL: True,
            caps.FUZZY_MATCHING: None,  # a yes needs a real name: never sent
            caps.WILDCARD: True,
            caps.NO_MATCH: caps.NO_MATCH_204,
            caps.RENDERED: True,
            caps.THUMBNAIL: True,
        }

    def test_an_archive_that_behaves_as_debians_orthanc(self) -> None:
        archive = FakeArchive(
            includefield_all="ignored",
            fuzzy="ignored",
            no_match=200,
            thumbnail=404,
            escaped_viewport="refused",
        )
        assert learn(archive) == ORTHANC_LIKE

    def test_fuzzymatching_accepted_or_ignored_stays_unknown(self) -> None:
        assert learn(FakeArchive(fuzzy="ignored"))[caps.FUZZY_MATCHING] is None
        assert learn(FakeArchive(fuzzy="works"))[caps.FUZZY_MATCHING] is None

    def test_an_archive_that_refuses_fuzzymatching_says_no(self) -> None:
        assert learn(FakeArchive(fuzzy="refused"))[caps.FUZZY_MATCHING] is False

    def test_fuzzy_is_asked_as_ohif_asks_with_a_made_up_name(self) -> None:
        archive = FakeArchive()
        learn(archive)
        fuzzy = [urlsplit(u).query for _, u, _ in archive.asked if "fuzzy" in u]
        assert fuzzy == ["limit=1&PatientName=zzpacsbinprobe&fuzzymatching=true"]

    def test_no_match_is_204_or_200_with_an_empty_array(self) -> None:
        assert learn(FakeArchive(no_match=204))[caps.NO_MATCH] == "204"
        assert learn(FakeArchive(no_match=200))[caps.NO_MATCH] == "200_empty"

    def test_an_archive_that_refuses_includefield_says_no_to_both(self) -> None:
        learnt = learn(FakeArchive(includefield="refused"))
        assert learnt[caps.INCLUDEFIELD_TAG] is False
        assert learnt[caps.INCLUDEFIELD_ALL] is False

    def test_an_archive_that_ignores_includefield_says_no_when_the_study_has_it(
        self,
    ) -> None:
        learnt = learn(FakeArchive(includefield="ignored", includefield_all="ignored"))
        assert learnt[caps.INCLUDEFIELD_TAG] is False
        assert learnt[caps.INCLUDEFIELD_ALL] is False

    def test_includefield_is_unknown_when_the_study_may_not_have_the_attribute(
        self,
    ) -> None:
        # No metadata: an attribute that does not come back may just be missing.
        learnt = learn(
            FakeArchive(
                includefield="ignored", includefield_all="ignored", metadata=False
            )
        )
        assert learnt[caps.INCLUDEFIELD_TAG] is None
        assert learnt[caps.INCLUDEFIELD_ALL] is None
        # ...but one that comes back is proof enough.
        learnt = learn(FakeArchive(metadata=False))
        assert learnt[caps.INCLUDEFIELD_TAG] is True
        assert learnt[caps.INCLUDEFIELD_ALL] is True

    def test_the_includefield_tag_is_one_the_default_answer_lacks(self) -> None:
        archive = FakeArchive()
        learn(archive)
        asked = [
            parse_qs(urlsplit(url).query)["includefield"][0]
            for _, url, _ in archive.asked
            if "includefield" in url
        ]
        assert asked == ["00081030", "all"]

    def test_wildcards_as_ohif_sends_them_around_nothing(self) -> None:
        archive = FakeArchive()
        assert learn(archive)[caps.WILDCARD] is True
        patterns = [
            parse_qs(urlsplit(url).query)["PatientName"][0]
            for _, url, _ in archive.asked
            if "PatientName" in url and "fuzzymatching" not in url
        ]
        assert patterns == ["**", "ZZPACSBINPROBE"]

    def test_the_star_is_sent_unescaped_as_ohif_sends_it(self) -> None:
        # Orthanc matches %2A literally; OHIF (encodeURIComponent) sends "*".
        archive = FakeArchive()
        learn(archive)
        assert any(u.endswith("?limit=1&PatientName=**") for _, u, _ in archive.asked)

    def test_no_search_carries_a_value_from_the_study(self) -> None:
        # Issue 17, item 7: no name, no patient id, no UID in any query; the
        # UIDs only in the paths of retrieve requests to the archive's roots.
        archive = FakeArchive()
        learn(archive)
        for _, url, _ in archive.asked:
            parts = urlsplit(url)
            for value in IDENTIFYING:
                assert value.lower() not in parts.query.lower(), url
            if STUDY in parts.path:
                assert url.startswith((QIDO + "/studies/", WADO + "/studies/"))

    def test_a_study_without_a_name_leaves_wildcards_unknown(self) -> None:
        archive = FakeArchive(wildcard="literal")
        study = {k: v for k, v in DEFAULT_STUDY.items() if k != "00100010"}
        with mock.patch.dict(DEFAULT_STUDY, study, clear=True):
            assert learn(archive)[caps.WILDCARD] is None

    def test_an_archive_that_refuses_the_wildcard_says_no(self) -> None:
        assert learn(FakeArchive(wildcard="refused"))[caps.WILDCARD] is False

    def test_an_archive_that_takes_the_star_literally_says_no(self) -> None:
        assert learn(FakeArchive(wildcard="literal"))[caps.WILDCARD] is False

    def test_an_archive_that_ignores_the_name_filter_leaves_wildcards_unknown(
        self,
    ) -> None:
        learnt = learn(FakeArchive(name_filter="ignored"))
        assert learnt[caps.WILDCARD] is None
        assert learnt[caps.FUZZY_MATCHING] is None

    def test_rendered_and_thumbnail_want_an_image(self) -> None:
        learnt = learn(FakeArchive(rendered=404, thumbnail=406))
        assert (learnt[caps.RENDERED], learnt[caps.THUMBNAIL]) == (False, False)
        learnt = learn(FakeArchive(rendered=401, thumbnail=503))
        assert (learnt[caps.RENDERED], learnt[caps.THUMBNAIL]) == (None, None)

    def test_images_are_asked_for_as_ohif_asks_for_thumbnails(self) -> None:
        # OHIF 3.13: a series' thumbnail in the study list, an instance's for
        # a display set; URLSearchParams escapes the comma.
        archive = FakeArchive()
        learn(archive)
        images = [
            (u, h) for _, u, h in archive.asked if "rendered" in u or "thumb" in u
        ]
        series = f"{WADO}/studies/{STUDY}/series/{SERIES}"
        assert [u for u, _ in images] == [
            f"{series}/rendered?viewport=256%2C256",
            f"{series}/instances/{SOP}/rendered?viewport=256%2C256",
            f"{series}/thumbnail?viewport=256%2C256",
            f"{series}/instances/{SOP}/thumbnail?viewport=256%2C256",
        ]
        assert all(h == {"Accept": "image/jpeg"} for _, h in images)

    def test_an_archive_that_refuses_ohifs_escaped_comma_keeps_the_default(
        self,
    ) -> None:
        # What OHIF 3.13 showed with Orthanc 1.10: /rendered?viewport=256,256
        # works, OHIF's viewport=256%2C256 is a 400. Learnt with OHIF's form,
        # the flag stays no and OHIF keeps thumbnails from WADO-RS.
        learnt = learn(FakeArchive(escaped_viewport="refused"))
        assert (learnt[caps.RENDERED], learnt[caps.THUMBNAIL]) == (False, False)
        configuration = caps.ohif_configuration(learnt)
        assert configuration["thumbnailRendering"] == "wadors"
        assert "thumbnailRequestStrategy" not in configuration

    def test_an_image_for_the_instance_but_not_for_the_series_says_no(self) -> None:
        learnt = learn(FakeArchive(series_images=False))
        assert (learnt[caps.RENDERED], learnt[caps.THUMBNAIL]) == (False, False)

    def test_with_no_study_only_no_match_is_learnt_from_one_request(self) -> None:
        for no_match, expected in ((204, "204"), (200, "200_empty")):
            archive = FakeArchive(has_study=False, no_match=no_match)
            learnt = learn(archive)
            assert learnt == {**dict.fromkeys(caps.KEYS), caps.NO_MATCH: expected}
            assert [url for _, url, _ in archive.asked] == [f"{QIDO}/studies?limit=1"]

    def test_a_default_answer_with_every_optional_attribute_leaves_the_tag_unknown(
        self,
    ) -> None:
        every = {tag: attribute("LO", "x") for tag in caps.OPTIONAL_STUDY_TAGS}
        archive = FakeArchive(includefield_all="ignored")
        with mock.patch.dict(DEFAULT_STUDY, every):
            learnt = learn(archive)
        assert learnt[caps.INCLUDEFIELD_TAG] is None
        assert learnt[caps.INCLUDEFIELD_ALL] is None
        asked = [u for _, u, _ in archive.asked if "includefield" in u]
        assert [u.rsplit("includefield=", 1)[1] for u in asked] == ["all"]

    def test_every_request_is_a_get_to_the_servers_own_roots_within_the_budget(
        self,
    ) -> None:
        archive = FakeArchive()
        learn(archive)
        assert len(archive.asked) == 13 <= caps.MAX_REQUESTS
        for method, url, _ in archive.asked:
            assert method == "GET"
            assert url.startswith((QIDO + "/", WADO + "/"))


HOSTILE = [
    response(200, b"<html>hello</html>", "text/html"),
    response(200, b"not json", "application/dicom+json"),
    response(200, b"[" * 100_000, "application/dicom+json"),
    response(200, {"not": "a list"}),
    response(200, [None, 1, "x", []]),
    response(200, [{"0020000D": {"Value": ["1.2; DROP TABLE"]}}]),
    response(200, [{"0020000D": {"Value": [{"Alphabetic": "x"}]}}]),
    response(200, [{"0020000D": "1.2.3", "00100010": 7}]),
    response(200, [{**DEFAULT_STUDY, "00100010": attribute("PN", "*^?")}]),
    response(200, [{**DEFAULT_STUDY, "00100010": attribute("PN", "x" * 100_000)}]),
    response(500, b"boom", "text/plain"),
    response(302, b"", None),
]


class HostileArchiveTests(TestCase):
    def test_odd_answers_decide_nothing_and_raise_nothing(self) -> None:
        for answer in HOSTILE:
            with self.subTest(body=answer.body[:40], status=answer.status):
                asked: list[str] = []

                def fetch(*, url: str, answer=answer, asked=asked, **_: Any):
                    asked.append(url)
                    return answer

                learnt = caps.learn(QIDO, WADO, fetch=fetch)
                assert set(learnt) == set(caps.KEYS)
                assert learnt[caps.INCLUDEFIELD_TAG] is None
                assert learnt[caps.RENDERED] is None
                assert len(asked) <= caps.MAX_REQUESTS

    def test_a_hostile_study_uid_is_never_put_in_a_url(self) -> None:
        asked: list[str] = []

        def fetch(*, url: str, **_: Any):
            asked.append(url)
            return response(200, [{"0020000D": attribute("UI", "../../admin?x=")}])

        caps.learn(QIDO, WADO, fetch=fetch)
        assert all("admin" not in url for url in asked)

    def test_a_redirect_off_the_archives_origin_is_never_followed(self) -> None:
        # Issue 17, item 7, through the real client: every search the archive
        # redirects elsewhere is left there, and nothing reaches the other host.
        archive = FakeArchive()
        sent: list[str] = []

        def send(method, url, target, headers, limits):  # type: ignore[no-untyped-def]
            sent.append(url)
            if "?" in url and "/studies?" in url and not url.endswith("limit=1"):
                return client.Response(
                    url=url,
                    status=302,
                    headers=urllib3.HTTPHeaderDict(
                        {"Location": "https://collector.example.net/q"}
                    ),
                    body=b"",
                )
            return archive.fetch(method=method, url=url, headers=headers)

        resolve = mock.Mock(return_value=["93.184.215.14"])
        with (
            mock.patch.object(client, "send", send),
            mock.patch("integrations.connectivity.ssrf.resolve", resolve),
        ):
            learnt = caps.learn(QIDO, WADO)
        assert all(url.startswith("https://pacs.example/") for url in sent)
        assert {call.args[0] for call in resolve.call_args_list} == {"pacs.example"}
        # The redirected searches decided nothing; the rest still learnt.
        assert learnt[caps.NO_MATCH] is None
        assert learnt[caps.WILDCARD] is None
        assert learnt[caps.RENDERED] is True

    def test_transport_errors_decide_nothing(self) -> None:
        def fetch(**_: Any):
            raise client.FetchError("timeout", "slow")

        assert caps.learn(QIDO, WADO, fetch=fetch) == dict.fromkeys(caps.KEYS)

    def test_a_slow_archive_is_given_up_on_at_the_deadline(self) -> None:
        clock = [1000.0]
        asked: list[str] = []
        archive = FakeArchive()

        def fetch(**kwargs: Any):
            asked.append(kwargs["url"])
            # Each answer takes ten seconds; the limits passed shrink to what is left.
            assert kwargs["limits"].total_timeout <= caps.LIMITS.total_timeout
            clock[0] += 10
            return archive.fetch(**kwargs)

        with mock.patch.object(caps.time, "monotonic", lambda: clock[0]):
            caps.learn(QIDO, WADO, fetch=fetch, deadline_seconds=25)
        assert len(asked) == 3


class RecordingTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution(), qido_url=QIDO, wado_url=WADO)

    def test_it_stores_on_server_health_and_not_on_the_server(self) -> None:
        history = self.server.history.count()
        health = caps.record(self.server, LEARNT)
        assert health.capabilities == LEARNT
        assert health.capabilities_learnt_at is not None
        assert ServerHealth.objects.get(server=self.server).capabilities == (LEARNT)
        assert self.server.history.count() == history

    def test_what_could_not_be_decided_keeps_what_was_learnt_before(self) -> None:
        caps.record(self.server, LEARNT)
        later = {**dict.fromkeys(caps.KEYS), caps.THUMBNAIL: True}
        health = caps.record(self.server, later)
        assert health.capabilities == {**LEARNT, caps.THUMBNAIL: True}

    def test_nothing_decided_leaves_the_learnt_time_alone(self) -> None:
        health = caps.record(self.server, dict.fromkeys(caps.KEYS))
        assert health.capabilities == {}
        assert health.capabilities_learnt_at is None

    def test_only_known_keys_and_values_are_stored(self) -> None:
        health = caps.record(
            self.server,
            {
                caps.WILDCARD: "yes",
                caps.NO_MATCH: "404",
                caps.RENDERED: 1,
                "patient": "Doe^Jane",
                caps.FUZZY_MATCHING: False,
            },
        )
        assert health.capabilities == {caps.FUZZY_MATCHING: False}

    def test_it_keeps_the_monitor_state_of_an_existing_row(self) -> None:
        ServerHealth.objects.create(server=self.server, state=ServerHealth.State.OK)
        caps.record(self.server, LEARNT)
        health = ServerHealth.objects.get(server=self.server)
        assert health.state == ServerHealth.State.OK
        assert health.capabilities == LEARNT

    def test_a_failed_learning_is_logged_never_raised(self) -> None:
        def fetch(**_: Any):
            raise RuntimeError("bug")

        with self.assertLogs(caps.logger, "ERROR"):
            assert caps.learn_and_record(self.server, fetch=fetch) is None
        assert not ServerHealth.objects.filter(server=self.server).exists()

    def test_unforced_learning_waits_for_relearn_seconds(self) -> None:
        archive = FakeArchive()
        assert caps.learn_and_record(self.server, force=False, fetch=archive.fetch)
        asked = len(archive.asked)
        assert caps.learn_and_record(self.server, force=False, fetch=archive.fetch) is (
            None
        )
        assert len(archive.asked) == asked
        assert caps.learn_and_record(self.server, force=True, fetch=archive.fetch)
        assert len(archive.asked) == 2 * asked


class ForgettingThumbnailsLearntWithAnotherForm(TransactionTestCase):
    """Migration 0014: /rendered and /thumbnail learnt with viewport=256,256
    (before OHIF's own form) are dropped and relearnt at the next check."""

    before = [("integrations", "0014_api_key_created_by")]
    after = [("integrations", "0015_relearn_ohif_thumbnails")]

    def migrate(self, target: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(target)
        return executor.loader.project_state(target).apps

    def tearDown(self) -> None:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        super().tearDown()

    def test_they_are_dropped_and_the_rest_kept(self) -> None:
        apps = self.migrate(self.before)
        Institution = apps.get_model("integrations", "Institution")
        Server = apps.get_model("integrations", "DicomWebServer")
        Health = apps.get_model("integrations", "ServerHealth")
        institution = Institution.objects.create(name="K")
        rows = {}
        for name, capabilities in (
            ("old", LEARNT),
            ("none", {caps.WILDCARD: True}),
            ("empty", {}),
        ):
            server = Server.objects.create(
                institution=institution, name=name, qido_url=QIDO, wado_url=WADO
            )
            rows[name] = Health.objects.create(
                server=server,
                capabilities=capabilities,
                capabilities_learnt_at="2026-12-01T00:00:00Z",
            )
        apps = self.migrate(self.after)
        Health = apps.get_model("integrations", "ServerHealth")
        old = Health.objects.get(pk=rows["old"].pk)
        expected = {
            k: v for k, v in LEARNT.items() if k not in (caps.RENDERED, caps.THUMBNAIL)
        }
        assert old.capabilities == expected
        assert old.capabilities_learnt_at is None  # relearnt at the next check
        assert caps.ohif_configuration(old.capabilities)["thumbnailRendering"] == (
            "wadors"
        )
        for name in ("none", "empty"):
            kept = Health.objects.get(pk=rows[name].pk)
            assert kept.capabilities == rows[name].capabilities
            assert kept.capabilities_learnt_at is not None


def ok_probe(*args: Any, **kwargs: Any) -> probe.ProbeResult:
    return probe.ProbeResult(origin=args[2])


def failing_probe(*args: Any, **kwargs: Any) -> probe.ProbeResult:
    result = probe.ProbeResult(origin=args[2])
    result.add("qido_cors_missing", "no header", CheckOutcome.CORS_MISSING)
    return result


@override_settings(UPLOADER_ORIGINS=["https://pacsbin.com"])
class CheckHookTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution())

    def run_it(self, probe_with: Any, learn: Any, **kwargs: Any):
        with (
            mock.patch.object(probe, "probe", probe_with),
            mock.patch.object(caps, "learn", learn) as learning,
        ):
            return run_check(self.server, **kwargs), learning

    def test_an_ok_check_learns_and_stores(self) -> None:
        check, _ = self.run_it(ok_probe, lambda *a, **k: LEARNT, relearn=True)
        assert check.outcome == "ok"
        assert self.server.health.capabilities == LEARNT

    def test_a_check_that_is_not_ok_learns_nothing(self) -> None:
        learning = mock.Mock(return_value=LEARNT)
        check, _ = self.run_it(failing_probe, learning, relearn=True)
        assert check.outcome == "cors_missing"
        learning.assert_not_called()

    def test_a_failure_in_learning_never_fails_the_check(self) -> None:
        def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
            raise ValueError("the archive surprised us")

        with self.assertLogs(caps.logger, "ERROR"):
            check, _ = self.run_it(ok_probe, broken, relearn=True)
        assert check.pk is not None
        assert check.outcome == "ok"

    def test_a_scheduled_check_relearns_only_after_relearn_seconds(self) -> None:
        learning = mock.Mock(return_value=LEARNT)
        self.run_it(ok_probe, learning)
        self.run_it(ok_probe, learning)
        assert learning.call_count == 1


@override_settings(UPLOADER_ORIGINS=["https://pacsbin.com", "https://b.example"])
class OnDemandTests(TestCase):
    """Checks someone asks for relearn, once whatever the number of origins."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.server = make_server(make_institution())
        _, cls.raw = api_key("ops", "manage")

    def test_the_api_check_relearns_and_a_failed_learning_is_still_a_201(self) -> None:
        url = f"/api/v1/servers/{self.server.pk}/checks/"
        learning = mock.Mock(return_value=LEARNT)
        with (
            mock.patch.object(probe, "probe", ok_probe),
            mock.patch.object(caps, "learn", learning),
        ):
            for _ in range(2):
                response = self.client.post(
                    url, {}, content_type="application/json", **key_header(self.raw)
                )
                assert response.status_code == 201
        assert learning.call_count == 2
        assert self.server.health.capabilities == LEARNT
        broken = mock.Mock(side_effect=RecursionError("deep"))
        with (
            mock.patch.object(probe, "probe", ok_probe),
            mock.patch.object(caps, "learn", broken),
            self.assertLogs(caps.logger, "ERROR"),
        ):
            response = self.client.post(
                url, {}, content_type="application/json", **key_header(self.raw)
            )
        assert response.status_code == 201
        assert response.json()["outcome"] == "ok"

    def test_check_servers_learns_once_for_all_origins(self) -> None:
        learning = mock.Mock(return_value=LEARNT)
        with (
            mock.patch.object(probe, "probe", ok_probe),
            mock.patch.object(caps, "learn", learning),
        ):
            call_command(
                "check_servers",
                str(self.server.pk),
                stdout=io.StringIO(),
                stderr=io.StringIO(),
            )
            call_command(
                "check_servers",
                str(self.server.pk),
                stdout=io.StringIO(),
                stderr=io.StringIO(),
            )
        assert learning.call_count == 2
        assert self.server.health.capabilities == LEARNT


class TableTests(TestCase):
    def test_labels_and_values_in_words(self) -> None:
        assert caps.table(LEARNT) == [
            ("includefield with a named attribute", "yes"),
            ("includefield=all", "no"),
            ("Fuzzy matching of names", "no"),
            ("Wildcards (*) in searches", "yes"),
            ("A search that finds nothing answers", "200 with []"),
            ("Rendered images (/rendered)", "yes"),
            ("Thumbnails (/thumbnail)", "no"),
        ]

    def test_unknown_and_junk_read_as_unknown(self) -> None:
        for junk in ({}, None, "x", {caps.NO_MATCH: "418", caps.WILDCARD: "true"}):
            assert {text for _, text in caps.table(junk)} == {"unknown"}


CONSERVATIVE = {
    "qidoSupportsIncludeField": False,
    "imageRendering": "wadors",
    "thumbnailRendering": "wadors",
    "enableStudyLazyLoad": True,
    "supportsFuzzyMatching": False,
    "supportsWildcard": True,
}


class OhifConfigurationTests(TestCase):
    def test_unknown_gives_the_conservative_values(self) -> None:
        for unknown in (None, {}, dict.fromkeys(caps.KEYS), "junk"):
            assert caps.ohif_configuration(unknown) == CONSERVATIVE

    def test_each_learnt_value_is_used(self) -> None:
        assert caps.ohif_configuration(LEARNT) == {
            **CONSERVATIVE,
            "qidoSupportsIncludeField": True,
            "thumbnailRendering": "rendered",
            "thumbnailRequestStrategy": "fetch",
        }
        assert caps.ohif_configuration(
            {caps.FUZZY_MATCHING: True, caps.WILDCARD: False, caps.THUMBNAIL: True}
        ) == {
            **CONSERVATIVE,
            "supportsFuzzyMatching": True,
            "supportsWildcard": False,
            "thumbnailRendering": "thumbnail",
            "thumbnailRequestStrategy": "fetch",
        }


@override_settings(ACCESS_THROTTLE_RATE=None)
class OhifAnswerTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("viewer", "access")
        institution = make_institution()
        cls.learnt = make_server(institution, "Learnt", emails=[JANE])
        cls.unknown = make_server(
            institution, "Unknown", emails=[JANE], qido_url="https://other.example/x"
        )
        ServerHealth.objects.create(server=cls.learnt, capabilities=LEARNT)

    def ask(self, fmt: str = "ohif") -> dict[str, Any]:
        response = self.client.get(
            "/api/v1/access", {"email": JANE, "format": fmt}, **key_header(self.raw)
        )
        assert response.status_code == 200
        return response.json()

    def test_each_server_gets_its_own_learnt_values(self) -> None:
        sources = {s["configuration"]["name"]: s for s in self.ask()["dataSources"]}
        learnt = sources["Learnt"]["configuration"]
        assert learnt["qidoSupportsIncludeField"] is True
        assert learnt["supportsFuzzyMatching"] is False
        assert learnt["supportsWildcard"] is True
        assert learnt["imageRendering"] == "wadors"
        assert learnt["thumbnailRendering"] == "rendered"
        assert learnt["thumbnailRequestStrategy"] == "fetch"
        unknown = sources["Unknown"]["configuration"]
        assert {k: unknown[k] for k in CONSERVATIVE} == CONSERVATIVE
        assert "thumbnailRequestStrategy" not in unknown

    def test_the_json_answer_does_not_change(self) -> None:
        servers = self.ask("json")["servers"]
        assert [sorted(s) for s in servers] == [
            ["id", "institution", "name", "qido_url", "wado_url"]
        ] * 2

    def test_a_hand_broken_row_still_answers(self) -> None:
        ServerHealth.objects.filter(server=self.learnt).update(
            capabilities=[1, {"x": None}]
        )
        sources = self.ask()["dataSources"]
        assert all(
            {k: s["configuration"][k] for k in CONSERVATIVE} == CONSERVATIVE
            for s in sources
        )


def test_the_keys_are_the_stored_names_each_with_a_label() -> None:
    assert caps.KEYS == (
        "includefield_tag",
        "includefield_all",
        "fuzzy_matching",
        "wildcard",
        "no_match",
        "rendered",
        "thumbnail",
    )
    assert all(caps.LABELS[key] for key in caps.KEYS)
