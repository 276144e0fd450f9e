"""Pacsbin's proxy on a server (DESIGN.md "Pacsbin's proxy"): the settings'
one rule on every path in (model, admin, API, public form, import, approval),
the generated config.jsonc, the archive's sheet, and where the pages show
them. The real proxy runs in test_pacsbin_proxy_peers.py."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import TestCase, override_settings

from integrations import transfer
from integrations.connectivity import proxyconfig
from integrations.models import DicomWebServer, Institution, OnboardingRequest
from integrations.onboarding import lifecycle
from integrations.onboarding.links import status_link
from integrations.validators import normalize_pacsbin_proxy, proxy_error_messages
from tests.api_helpers import key_header
from tests.factories import api_key, make_institution, make_server
from tests.onboarding_helpers import FreshRateLimit, form_data

PROXY = "https://pacs-proxy.hospital.example"
DIMSE = {
    "mode": "dimse",
    "archive_ae_title": "PACS_SERVER",
    "archive_host": "10.1.2.3",
    "archive_port": 11112,
    "proxy_ae_title": "PACSBIN_PROXY",
    "proxy_dimse_port": 8888,
}
DICOMWEB = {
    "mode": "dicomweb",
    "forward_qido_url": "http://10.1.2.3:8042",
    "forward_wado_url": "http://10.1.2.3:8042",
}


def jsonc(text: str) -> Any:
    """The generated config.jsonc read as the proxy reads it: its comments are
    whole // lines (a URL's // is inside a string, never at a line start)."""
    return json.loads(
        "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("//")
        )
    )


def proxied_server(
    settings: dict[str, Any] | None = None, **fields: Any
) -> DicomWebServer:
    fields.setdefault("qido_url", PROXY)
    fields.setdefault("wado_url", fields["qido_url"])
    institution, _made = Institution.objects.get_or_create(name="County General")
    return make_server(
        institution,
        f"County PACS {institution.servers.count() + 1}",
        cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY,
        pacsbin_proxy=dict(settings or DIMSE),
        **fields,
    )


def messages(value: Any) -> list[str]:
    try:
        normalize_pacsbin_proxy(value)
    except ValidationError as exc:
        return proxy_error_messages(exc)
    return []


class TheRule(TestCase):
    def test_good_settings_are_normalised(self) -> None:
        got = normalize_pacsbin_proxy(
            {
                **DIMSE,
                "archive_ae_title": " PACS ",
                "archive_host": "PACS.Hospital.Local",
                "archive_port": "104",
                "proxy_ae_title": 'P"Q/*',
            }
        )
        assert got == {
            **DIMSE,
            "archive_ae_title": "PACS",
            "archive_host": "pacs.hospital.local",
            "archive_port": 104,
            "proxy_ae_title": 'P"Q/*',
        }
        assert (
            normalize_pacsbin_proxy({**DIMSE, "archive_host": "[::1]"})["archive_host"]
            == "::1"
        )
        assert (
            normalize_pacsbin_proxy(
                {**DICOMWEB, "forward_qido_url": "HTTP://10.1.2.3:8042/"}
            )["forward_qido_url"]
            == "http://10.1.2.3:8042"
        )
        assert normalize_pacsbin_proxy(None) is None

    def test_every_bad_value_is_refused_naming_it(self) -> None:
        cases = [
            ({**DIMSE, "archive_ae_title": "A" * 17}, "archive_ae_title", "A" * 17),
            ({**DIMSE, "archive_ae_title": "   "}, "archive_ae_title", "only spaces"),
            ({**DIMSE, "archive_ae_title": "PACS\\X"}, "archive_ae_title", "“\\”"),
            ({**DIMSE, "archive_ae_title": "PÄCS"}, "archive_ae_title", "U+00C4"),
            ({**DIMSE, "proxy_ae_title": "A\x00B"}, "proxy_ae_title", "U+0000"),
            ({**DIMSE, "proxy_ae_title": 5}, "proxy_ae_title", "5"),
            ({**DIMSE, "archive_host": "a b"}, "archive_host", "“a b”"),
            ({**DIMSE, "archive_host": "pacs:104"}, "archive_host", "pacs:104"),
            ({**DIMSE, "archive_host": "-bad-"}, "archive_host", "-bad-"),
            ({**DIMSE, "archive_port": 0}, "archive_port", "0"),
            ({**DIMSE, "archive_port": 65536}, "archive_port", "65536"),
            ({**DIMSE, "archive_port": "70000"}, "archive_port", "70000"),
            ({**DIMSE, "archive_port": True}, "archive_port", "true"),
            ({**DIMSE, "archive_port": 1.5}, "archive_port", "1.5"),
            ({**DIMSE, "archive_port": "١٠٤"}, "archive_port", "١٠٤"),
            ({**DIMSE, "proxy_dimse_port": 10**30}, "proxy_dimse_port", "1000000"),
            ({**DIMSE, "proxy_dimse_port": None}, "proxy_dimse_port", "needs"),
            ({**DIMSE, "port": 1}, "“port”", "not a setting"),
            (
                {**DICOMWEB, "forward_qido_url": "ftp://x"},
                "forward_qido_url",
                "ftp://x",
            ),
            (
                {**DICOMWEB, "forward_wado_url": "http://h/a;b"},
                "forward_wado_url",
                "“;”",
            ),
            ({"mode": "dicom"}, "mode", "“dicom”"),
            ({}, "mode", "“dimse”"),
            ([1, 2], "[1, 2]", "mode"),
            ("dimse", "“dimse”", "not the proxy's settings"),
        ]
        for value, first, second in cases:
            with self.subTest(value=value):
                found = " ".join(messages(value))
                assert first in found and second in found, found


class TheModelRule(TestCase):
    def test_dimse_proxy_needs_the_settings_and_the_proxys_origin(self) -> None:
        server = proxied_server()
        server.full_clean()
        server.pacsbin_proxy = None
        with self.assertRaisesMessage(ValidationError, "needs the proxy's settings"):
            server.full_clean()
        server.pacsbin_proxy = dict(DIMSE)
        server.qido_url = server.wado_url = f"{PROXY}/dicom-web"
        with self.assertRaises(ValidationError) as caught:
            server.full_clean()
        assert "without “/dicom-web”" in str(caught.exception.message_dict["qido_url"])
        server.qido_url = PROXY
        server.wado_url = "https://other.hospital.example"
        with self.assertRaisesMessage(ValidationError, "must be the QIDO URL"):
            server.full_clean()

    def test_other_modes_check_the_settings_then_keep_none(self) -> None:
        server = make_server(make_institution(), pacsbin_proxy=dict(DIMSE))
        server.full_clean()
        assert server.pacsbin_proxy is None
        server.pacsbin_proxy = {**DIMSE, "archive_port": 0}
        with self.assertRaises(ValidationError) as caught:
            server.full_clean()
        assert "0 is not a port" in caught.exception.message_dict["pacsbin_proxy"][0]


class TheApi(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        _key, cls.raw = api_key("ops", "manage")
        _key, cls.access = api_key("uploader", "access")
        cls.institution = make_institution("County General")

    def send(self, method: str, url: str, body: Any, raw: bool = False) -> Any:
        return getattr(self.client, method)(
            url,
            body if raw else json.dumps(body),
            content_type="application/json",
            **key_header(self.raw),
        )

    def new(self, **fields: Any) -> dict[str, Any]:
        return {
            "institution": self.institution.pk,
            "name": "County PACS",
            "qido_url": PROXY,
            "wado_url": PROXY,
            "cors_mode": "dimse_proxy",
            "pacsbin_proxy": {**DIMSE, "archive_port": "11112"},
            **fields,
        }

    def test_a_server_behind_the_proxy_is_created_normalised(self) -> None:
        response = self.send("post", "/api/v1/servers/", self.new())
        assert response.status_code == 201, response.json()
        assert response.json()["pacsbin_proxy"] == DIMSE
        server = DicomWebServer.objects.get()
        assert server.pacsbin_proxy == DIMSE
        # Audit history keeps before and after.
        self.send(
            "patch",
            f"/api/v1/servers/{server.pk}/",
            {"pacsbin_proxy": {**DIMSE, "archive_port": 104}},
        )
        history = list(server.history.order_by("history_date"))
        assert [h.pacsbin_proxy["archive_port"] for h in history] == [11112, 104]

    def test_bad_settings_are_400_naming_the_value_and_nothing_is_written(self) -> None:
        for settings, named in [
            ({**DIMSE, "archive_port": 70000}, "70000"),
            ({**DIMSE, "proxy_ae_title": "X" * 20}, "X" * 20),
            ({**DIMSE, "archive_host": "a;b"}, "a;b"),
            ({"mode": "ftp"}, "ftp"),
            (None, "needs the proxy's settings"),
            ("text", "“text”"),
        ]:
            with self.subTest(settings=settings):
                response = self.send(
                    "post", "/api/v1/servers/", self.new(pacsbin_proxy=settings)
                )
                assert response.status_code == 400
                assert named in " ".join(response.json()["pacsbin_proxy"])
        assert not DicomWebServer.objects.exists()

    def test_moving_off_the_proxy_clears_the_settings(self) -> None:
        server = proxied_server()
        url = f"/api/v1/servers/{server.pk}/"
        bad = self.send(
            "patch",
            url,
            {"cors_mode": "direct", "pacsbin_proxy": {**DIMSE, "archive_port": -1}},
        )
        assert bad.status_code == 400  # checked even when not kept
        assert "-1 is not a port" in bad.json()["pacsbin_proxy"][0]
        for body in (
            {"cors_mode": "reverse_proxy", "qido_url": "https://pacs.example/dw"},
            {"cors_mode": "direct", "pacsbin_proxy": DIMSE},
        ):
            with self.subTest(body=body):
                server = proxied_server()
                response = self.send(
                    "patch",
                    f"/api/v1/servers/{server.pk}/",
                    {
                        "wado_url": "https://pacs.example/dw",
                        "qido_url": "https://pacs.example/dw",
                        **body,
                    },
                )
                assert response.status_code == 200, response.json()
                assert response.json()["pacsbin_proxy"] is None
                server.refresh_from_db()
                assert server.pacsbin_proxy is None

    def test_odd_input_is_never_a_500(self) -> None:
        server = proxied_server()
        url = f"/api/v1/servers/{server.pk}/"
        deep = '{"pacsbin_proxy": ' + "[" * 100 + "]" * 100 + "}"
        bodies = [
            deep,
            '{"pacsbin_proxy": {"mode": "dimse", "archive_ae_title": "\\ud800"}}',
            '{"pacsbin_proxy": {"mode": "dimse", "\\u0000": 1}}',
            '{"pacsbin_proxy": {"mode": "dimse", "archive_port": NaN}}',
            '{"pacsbin_proxy": {"mode": "dimse", "archive_port": 1e999}}',
            '{"pacsbin_proxy": {"mode": {"x": [1]}}}',
            '{"pacsbin_proxy": 123456789012345678901234567890}',
        ]
        for body in bodies:
            with self.subTest(body=body[:60]):
                response = self.send("patch", url, body, raw=True)
                assert response.status_code == 400, response.content
        server.refresh_from_db()
        assert server.pacsbin_proxy == DIMSE

    def test_the_config_is_text_409_naming_what_is_missing_and_needs_manage(
        self,
    ) -> None:
        server = proxied_server()
        url = f"/api/v1/servers/{server.pk}/proxy-config/pacsbin"
        response = self.client.get(url, **key_header(self.raw))
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert self.client.get(url).status_code == 401
        assert self.client.get(url, **key_header(self.access)).status_code == 403
        plain = make_server(self.institution, "Plain")
        missing = self.client.get(
            f"/api/v1/servers/{plain.pk}/proxy-config/pacsbin", **key_header(self.raw)
        )
        assert missing.status_code == 409
        detail = missing.json()["detail"]
        for key in ("mode", "archive_ae_title", "proxy_dimse_port", "forward_qido_url"):
            assert key in detail

    def test_the_schema_documents_both_modes(self) -> None:
        text = self.client.get("/api/schema/?format=json").content.decode()
        assert "archive_ae_title" in text and "forward_qido_url" in text
        assert "pacsbin" in text


@override_settings(
    UPLOADER_ORIGINS=["https://pacsbin.com", "https://eu.pacsbin.com"],
    REGISTRY_PUBLIC_ORIGIN="https://registry.pacsbin.example",
)
class TheConfig(TestCase):
    def test_dimse_mode(self) -> None:
        text = proxyconfig.render(proxied_server(), "pacsbin")
        config = jsonc(text)
        assert config["proxyMode"] == "dimse"
        assert config["dimseProxySettings"] == {
            "proxyServer": {"aet": "PACSBIN_PROXY", "ip": "0.0.0.0", "port": 8888},
            "peers": [{"aet": "PACS_SERVER", "ip": "10.1.2.3", "port": 11112}],
        }
        cors = config["cors"]
        assert cors["origin"] == [
            "https://pacsbin.com",
            "https://eu.pacsbin.com",
            "https://registry.pacsbin.example",
        ]
        assert "*" not in json.dumps(cors)
        assert "Authorization" in cors["allowedHeaders"]
        assert cors["credentials"] is False
        assert config["ssl"]["enabled"] is True and config["ssl"]["port"] == 443
        assert config["ssl"]["certPath"].startswith("/")
        assert config["storagePath"] == "./data"
        assert config["useCget"] is True
        # Comments say what to edit, next to what.
        assert re.search(r"// EDIT: .*storage", text) or "EDIT: a folder" in text
        assert "EDIT: the certificate and key for pacs-proxy.hospital.example" in text

    def test_credentials_only_when_needed_and_plain_http_as_registered(self) -> None:
        server = proxied_server(needs_credentials=True, qido_url="http://10.9.9.9:3006")
        config = jsonc(proxyconfig.render(server, "pacsbin"))
        assert config["cors"]["credentials"] is True
        assert config["ssl"]["enabled"] is False
        assert config["webserverPort"] == 3006

    def test_dicomweb_mode_at_the_root_and_refused_with_a_path(self) -> None:
        config = jsonc(proxyconfig.render(proxied_server(DICOMWEB), "pacsbin"))
        assert config["proxyMode"] == "dicomweb"
        assert config["dicomwebProxySettings"] == {
            "qidoForwardingUrl": "http://10.1.2.3:8042",
            "wadoForwardingUrl": "http://10.1.2.3:8042",
        }
        server = proxied_server(
            {**DICOMWEB, "forward_qido_url": "http://10.1.2.3:8042/dicom-web"}
        )
        with self.assertRaisesMessage(proxyconfig.ConfigRefused, "drops the path"):
            proxyconfig.render(server, "pacsbin")

    def test_the_archive_sheet(self) -> None:
        sheet = " ".join(proxyconfig.pacsbin_view(proxied_server()).sheet)
        assert "register Pacsbin's proxy" in sheet
        assert "AE title PACSBIN_PROXY, host pacs-proxy.hospital.example" in sheet
        assert "port 8888" in sheet and "C-GET" in sheet and "C-MOVE" in sheet
        assert proxyconfig.pacsbin_view(proxied_server(DICOMWEB)).sheet == []


class TheAdmin(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = get_user_model().objects.create_superuser(
            "admin", "a@example.org", "a-long-test-password-1"
        )

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def post(self, server: DicomWebServer, **fields: Any) -> Any:
        data = {
            "institution": server.institution_id,
            "name": server.name,
            "qido_url": server.qido_url,
            "wado_url": server.wado_url,
            "status": server.status,
            "cors_mode": server.cors_mode,
            "notes": "",
            "add_emails": "",
            "proxy_mode": "dimse",
            "archive_ae_title": "PACS_SERVER",
            "archive_host": "10.1.2.3",
            "archive_port": "11112",
            "proxy_ae_title": "PACSBIN_PROXY",
            "proxy_dimse_port": "8888",
            "forward_qido_url": "",
            "forward_wado_url": "",
            **fields,
        }
        return self.client.post(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/", data
        )

    def test_the_page_has_one_input_per_setting_the_config_and_the_sheet(self) -> None:
        server = proxied_server()
        page = self.client.get(
            f"/admin/integrations/dicomwebserver/{server.pk}/change/"
        ).content.decode()
        for name in (
            "proxy_mode",
            "archive_ae_title",
            "archive_port",
            "proxy_ae_title",
        ):
            assert f'name="{name}"' in page
        assert 'value="PACS_SERVER"' in page
        assert 'id="pi-fixit-pacsbin"' in page and "&quot;proxyMode&quot;" in page
        assert "For the archive's administrators" in page

    def test_a_change_is_saved_normalised_and_a_bad_value_is_named(self) -> None:
        server = proxied_server()
        response = self.post(server, archive_port="104", archive_host="PACS.Local")
        assert response.status_code == 302
        server.refresh_from_db()
        assert server.pacsbin_proxy["archive_port"] == 104
        assert server.pacsbin_proxy["archive_host"] == "pacs.local"
        response = self.post(server, archive_port="99999", proxy_ae_title="A\\B")
        assert response.status_code == 200
        page = response.content.decode()
        assert "“99999” is not a port" in page
        assert "“A\\B” is not an AE title" in page
        assert 'value="99999"' in page  # what was typed is kept
        server.refresh_from_db()
        assert server.pacsbin_proxy["archive_port"] == 104

    def test_moving_off_the_proxy_clears_the_settings(self) -> None:
        server = proxied_server()
        response = self.post(
            server,
            cors_mode="reverse_proxy",
            qido_url="https://pacs.example/dw",
            wado_url="https://pacs.example/dw",
        )
        assert response.status_code == 302
        server.refresh_from_db()
        assert server.pacsbin_proxy is None

    def test_the_inputs_are_folded_away_unless_the_server_is_behind_the_proxy(
        self,
    ) -> None:
        plain = make_server(make_institution("Plain"))
        page = self.client.get(
            f"/admin/integrations/dicomwebserver/{plain.pk}/change/"
        ).content.decode()
        fieldset = page[page.index("Pacsbin&#x27;s proxy (only") - 400 :]
        assert "<details>" in fieldset[:500]
        proxied = self.client.get(
            f"/admin/integrations/dicomwebserver/{proxied_server().pk}/change/"
        ).content.decode()
        fieldset = proxied[proxied.index("Pacsbin&#x27;s proxy (only") - 400 :]
        assert "<details>" not in fieldset[:500]

    def test_the_proxy_without_a_mode_is_refused(self) -> None:
        server = proxied_server()
        response = self.post(server, proxy_mode="")
        assert "Choose how Pacsbin&#x27;s proxy reaches the archive" in (
            response.content.decode()
        )


class ThePublicForm(FreshRateLimit, TestCase):
    def dimse(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "qido_url": "",
            "cors_mode": None,
            "archive_speaks": "dimse",
            "archive_ae_title": "PACS_SERVER",
            "archive_host": "10.1.2.3",
            "archive_port": "11112",
            "proxy_url": PROXY + "/",
            "proxy_ae_title": "PACSBIN_PROXY",
            "proxy_dimse_port": "8888",
        }
        return form_data(**{**values, **overrides})

    def test_it_asks_first_how_the_archive_speaks(self) -> None:
        page = self.client.get("/onboarding/").content.decode()
        assert page.index('name="archive_speaks"') < page.index('name="qido_url"')
        for name in ("archive_ae_title", "archive_host", "archive_port", "proxy_url"):
            assert f'name="{name}"' in page
            assert f'<label for="id_{name}">' in page

    def test_a_dimse_archive_is_stored_behind_the_proxy(self) -> None:
        response = self.client.post("/onboarding/", self.dimse())
        assert response.status_code == 302
        r = OnboardingRequest.objects.get()
        assert (r.qido_url, r.wado_url, r.cors_mode) == (PROXY, PROXY, "dimse_proxy")
        assert r.pacsbin_proxy == DIMSE

    def test_bad_answers_are_named_by_field_and_typed_text_is_kept(self) -> None:
        response = self.client.post(
            "/onboarding/",
            self.dimse(
                archive_port="99999",
                archive_ae_title="A" * 20,
                proxy_url=PROXY + "/dicom-web",
                archive_host="",
            ),
        )
        assert response.status_code == 400
        page = response.content.decode()
        assert "“99999” is not a port" in page
        assert "A" * 20 + "” is not an AE title" in page
        assert "without “/dicom-web”" in page
        assert "The dimse mode needs archive_host" in page
        assert 'value="99999"' in page and f'value="{PROXY}/dicom-web"' in page
        assert 'href="#id_archive_port"' in page  # the summary links to the field
        assert not OnboardingRequest.objects.exists()

    def test_a_dicomweb_archive_behind_the_proxy_forwards_from_its_root_only(
        self,
    ) -> None:
        refused = self.client.post(
            "/onboarding/",
            form_data(cors_mode="dimse_proxy", proxy_url=PROXY),
        )
        assert refused.status_code == 400
        assert "drops the path" in refused.content.decode()
        ok = self.client.post(
            "/onboarding/",
            form_data(
                cors_mode="dimse_proxy",
                proxy_url=PROXY,
                qido_url="http://10.1.2.3:8042",
            ),
        )
        assert ok.status_code == 302
        r = OnboardingRequest.objects.get()
        assert r.qido_url == PROXY
        assert r.pacsbin_proxy == DICOMWEB

    def test_the_status_page_and_the_review_show_the_config_and_the_sheet(
        self,
    ) -> None:
        self.client.post("/onboarding/", self.dimse())
        r = OnboardingRequest.objects.get()
        page = self.client.get(f"/onboarding/status/{status_link(r)}/").content.decode()
        assert (
            'id="pacsbin-config"' in page
            and 'data-copy-target="pacsbin-config"' in page
        )
        assert "&quot;proxyMode&quot;: &quot;dimse&quot;" in page
        assert 'id="archive-sheet"' in page and "AE title PACSBIN_PROXY" in page
        assert 'id="fixit"' not in page  # no reverse proxy for a DIMSE archive
        staff = get_user_model().objects.create_superuser("s", "s@example.org", "pw")
        self.client.force_login(staff)
        review = self.client.get(
            f"/admin/integrations/onboardingrequest/{r.pk}/change/"
        ).content.decode()
        assert "dimse: archive PACS_SERVER at 10.1.2.3, port 11112" in review
        assert 'id="pi-fixit-pacsbin"' in review

    def test_a_change_starts_from_the_live_settings(self) -> None:
        from integrations.onboarding.forms import UpdateServerForm

        initial = UpdateServerForm.initial_for(proxied_server())
        assert initial["archive_speaks"] == "dimse"
        assert initial["proxy_url"] == PROXY
        assert initial["archive_port"] == 11112


class ApprovalAndImport(TestCase):
    def test_approval_writes_the_settings_onto_the_server(self) -> None:
        from tests.factories import submitted_request

        r = submitted_request(
            qido_url=PROXY,
            wado_url=PROXY,
            cors_mode="dimse_proxy",
            pacsbin_proxy=DIMSE,
        )
        staff = get_user_model().objects.create_superuser("s", "s@example.org", "pw")
        lifecycle.approve_request(r, staff)
        assert DicomWebServer.objects.get().pacsbin_proxy == DIMSE

    def test_approval_refuses_bad_settings_naming_them(self) -> None:
        from tests.factories import submitted_request

        r = submitted_request(
            qido_url=PROXY,
            wado_url=PROXY,
            cors_mode="dimse_proxy",
            pacsbin_proxy={**DIMSE, "archive_port": 0},
        )
        staff = get_user_model().objects.create_superuser("s", "s@example.org", "pw")
        with self.assertRaisesMessage(lifecycle.ReviewError, "0 is not a port"):
            lifecycle.approve_request(r, staff)
        assert not DicomWebServer.objects.exists()

    def test_export_and_import_keep_the_settings_and_refuse_bad_ones(self) -> None:
        proxied_server()
        out = io.StringIO()
        transfer.export_json(out)
        document = json.loads(out.getvalue())
        assert document["servers"][0]["pacsbin_proxy"] == DIMSE
        DicomWebServer.objects.all().delete()
        Institution.objects.all().delete()
        bad = json.loads(out.getvalue())
        bad["servers"][0]["pacsbin_proxy"] = {**DIMSE, "proxy_ae_title": "X\\Y"}
        with self.assertRaisesMessage(transfer.TransferError, "“X\\Y” is not an AE"):
            transfer.import_json(io.StringIO(json.dumps(bad)))
        assert not DicomWebServer.objects.exists()
        transfer.import_json(io.StringIO(out.getvalue()))
        assert DicomWebServer.objects.get().pacsbin_proxy == DIMSE
        # An export from before the field imports as "no proxy".
        old = json.loads(out.getvalue())
        for row in old["servers"]:
            del row["pacsbin_proxy"]
            row["cors_mode"] = "direct"
        DicomWebServer.objects.all().delete()
        Institution.objects.all().delete()
        transfer.import_json(io.StringIO(json.dumps(old)))
        assert DicomWebServer.objects.get().pacsbin_proxy is None


class TheProbeThroughTheProxy(TestCase):
    """probe.probe with a scripted proxy (the real one: the peers tests)."""

    ORIGIN = "https://pacsbin.com"
    CORS = {
        "Access-Control-Allow-Origin": ORIGIN,
        "Access-Control-Allow-Headers": "Authorization, Accept",
    }

    def scripted(self, search: Any) -> Any:
        import urllib3

        from integrations.connectivity import client

        def fetch(method: str, url: str, **_kwargs: Any) -> client.Response:
            def answer(status: int, body: Any, kind: str = "application/dicom+json"):
                headers = urllib3.HTTPHeaderDict({**self.CORS, "Content-Type": kind})
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                return client.Response(url, status, headers, data)

            if method == "OPTIONS":
                return answer(200, b"")
            if url.endswith("/studies?limit=1"):
                if isinstance(search, Exception):
                    raise search
                return answer(*search)
            if url.endswith("/series"):
                return answer(200, [{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}])
            if url.endswith("/instances"):
                return answer(200, [{"00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]}}])
            if url.endswith("/instances/1.2.3.4.5"):
                return answer(
                    200, b"--x\r\nDICM", 'multipart/related; type="application/dicom"'
                )
            return answer(404, {"error": "Not Found"}, "application/json")

        return fetch

    def run_probe(self, search: Any, **kwargs: Any) -> Any:
        from integrations.connectivity import probe

        return probe.probe(
            PROXY, PROXY, self.ORIGIN, fetch=self.scripted(search), **kwargs
        )

    STUDY = (200, [{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}])

    def test_it_retrieves_one_instance_found_by_qido_and_says_so(self) -> None:
        result = self.run_probe(self.STUDY, pacsbin_proxy=DIMSE)
        assert result.outcome == "ok", result.findings
        wado = next(f for f in result.findings if f.code == "wado_ok")
        assert "retrieved one instance instead (1.2.3.4.5" in wado.message

    def test_a_normal_server_still_asks_for_metadata(self) -> None:
        result = self.run_probe(self.STUDY)
        codes = [f.code for f in result.findings]
        assert "wado_bad_status" in codes  # the scripted proxy has no /metadata

    def test_a_search_that_never_comes_back_names_the_ae_registration(self) -> None:
        from integrations.connectivity import client

        timeout = client.FetchError("timeout", "It did not answer in time.")
        result = self.run_probe(timeout, pacsbin_proxy=DIMSE)
        assert result.outcome == "unreachable"
        refused = next(f for f in result.findings if f.code == "proxy_archive_refused")
        assert "register the proxy's AE title PACSBIN_PROXY" in refused.message
        assert "PACS_SERVER at 10.1.2.3, port 11112" in refused.message
        # Without the proxy it stays a plain timeout.
        plain = self.run_probe(timeout)
        assert [f.code for f in plain.findings][-1] == "unreachable_timeout"

    def test_a_dimse_error_answer_names_it_too(self) -> None:
        error = (500, {"error": "DIMSE query failed: Network error"})
        result = self.run_probe(error, pacsbin_proxy=DIMSE)
        refused = next(f for f in result.findings if f.code == "proxy_archive_refused")
        assert "“DIMSE query failed: Network error”" in refused.message


class TheProxyPeerUnderCi(TestCase):
    """Without node/npm the proxy's tests skip only outside CI; under CI they
    fail, so CI never passes by skipping them (.ci/run installs node and npm)."""

    def test_a_missing_node_fails_under_ci_and_skips_outside(self) -> None:
        from unittest import mock

        import pytest

        from tests import peers

        missing = mock.patch.object(peers, "NODE", "/nonexistent/node")
        with (
            missing,
            mock.patch.dict("os.environ", {"CI": "true"}),
            pytest.raises(pytest.fail.Exception, match="/nonexistent/node"),
        ):
            peers.build_pacsbin_proxy()
        with (
            missing,
            mock.patch.dict("os.environ", {"CI": ""}),
            pytest.raises(pytest.skip.Exception),
        ):
            peers.build_pacsbin_proxy()

    def test_ci_installs_node_and_npm(self) -> None:
        from pathlib import Path

        script = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
        assert "command -v npm" in script and "nodejs npm" in script


class AChangeToAProxiedServer(FreshRateLimit, TestCase):
    """Updates work the same way: the change form starts from the live
    settings, the reviewer sees them changed in words, approval applies them."""

    def test_the_change_form_round_trip(self) -> None:
        from tests.factories import confirm, submitted_request

        staff = get_user_model().objects.create_superuser("s", "s@example.org", "pw")
        origin = submitted_request(
            qido_url=PROXY, wado_url=PROXY, cors_mode="dimse_proxy", pacsbin_proxy=DIMSE
        )
        lifecycle.approve_request(origin, staff)
        server = DicomWebServer.objects.get()
        url = f"/onboarding/status/{status_link(origin)}/change/"
        page = self.client.get(url).content.decode()
        assert re.search(r'<input[^>]*value="dimse"[^>]*checked', page)
        assert 'value="PACS_SERVER"' in page and f'value="{PROXY}"' in page
        response = self.client.post(
            url,
            {
                "contact_name": "Pat Admin",
                "contact_email": "pat.admin@st-example.org",
                "server_name": server.name,
                "archive_speaks": "dimse",
                "archive_ae_title": "PACS_SERVER",
                "archive_host": "10.1.2.4",
                "archive_port": "104",
                "proxy_url": PROXY,
                "proxy_ae_title": "PACSBIN_PROXY",
                "proxy_dimse_port": "8888",
                "emails_to_add": "",
                "emails_to_remove": "",
                "leave_blank": "",
            },
        )
        assert response.status_code == 302, response.content.decode()[:3000]
        update = confirm(OnboardingRequest.objects.get(kind="update"))
        changed = {d.field: d for d in lifecycle.differences(update) if d.changed}
        assert set(changed) == {"pacsbin_proxy"}
        assert "10.1.2.4, port 104" in changed["pacsbin_proxy"].shown_requested
        lifecycle.approve_request(update, staff)
        server.refresh_from_db()
        assert server.pacsbin_proxy == {
            **DIMSE,
            "archive_host": "10.1.2.4",
            "archive_port": 104,
        }


class TheSystemCheck(TestCase):
    databases = {"default"}

    def test_a_server_marked_dimse_proxy_before_the_settings_is_listed(self) -> None:
        from django.core.checks import run_checks

        old = make_server(make_institution(), "Old proxied")
        DicomWebServer.objects.filter(pk=old.pk).update(cors_mode="dimse_proxy")
        proxied_server()  # a good one is not listed
        found = [
            w for w in run_checks(databases=["default"]) if w.id == "integrations.W004"
        ]
        assert len(found) == 1 and "Old proxied" in found[0].msg
        assert "needs the proxy's settings" in found[0].msg


class TheGuidance(TestCase):
    @override_settings(
        UPLOADER_ORIGINS=["https://pacsbin.com", "https://eu.pacsbin.com"]
    )
    def test_behind_the_proxy_it_says_what_the_proxy_sends_never_a_star(self) -> None:
        from integrations.onboarding import cors

        guidance = cors.guidance_for("dimse_proxy", False)
        assert guidance.allow_origin_lines == [
            "Access-Control-Allow-Origin: https://pacsbin.com",
            "Access-Control-Allow-Origin: https://eu.pacsbin.com",
        ]
        text = " ".join([*guidance.header_lines, *guidance.notes])
        assert "Allow-Origin: *" not in text and "never “*”" in text
        assert "Authorization" in text


class TheInstitutionPagesServerRows(TestCase):
    """The servers inline on an institution's page has no proxy inputs: it
    clears the settings when a row leaves the proxy, and refuses (never a
    500) a row moved onto it, pointing to the server's own page."""

    def post(self, server: DicomWebServer, **row: str) -> Any:
        staff = get_user_model().objects.create_superuser("s", "s@example.org", "pw")
        self.client.force_login(staff)
        institution = server.institution
        data = {
            "name": institution.name,
            "servers-TOTAL_FORMS": "1",
            "servers-INITIAL_FORMS": "1",
            "servers-0-id": str(server.pk),
            "servers-0-institution": str(institution.pk),
            "servers-0-name": server.name,
            "servers-0-status": server.status,
            "servers-0-cors_mode": server.cors_mode,
            "servers-0-qido_url": server.qido_url,
            "servers-0-wado_url": server.wado_url,
        }
        data.update({f"servers-0-{key}": value for key, value in row.items()})
        return self.client.post(
            f"/admin/integrations/institution/{institution.pk}/change/", data
        )

    def test_moving_onto_the_proxy_is_refused_with_a_pointer(self) -> None:
        server = make_server(make_institution("Plain"), qido_url="https://p.example")
        response = self.post(server, cors_mode="dimse_proxy")
        assert response.status_code == 200
        self.assertContains(response, "needs the proxy&#x27;s settings")
        self.assertContains(response, "on the server&#x27;s own page")
        server.refresh_from_db()
        assert server.cors_mode == "direct"

    def test_moving_off_the_proxy_clears_the_settings(self) -> None:
        server = proxied_server()
        response = self.post(
            server,
            cors_mode="reverse_proxy",
            qido_url="https://pacs.example/dw",
            wado_url="https://pacs.example/dw",
        )
        assert response.status_code == 302
        server.refresh_from_db()
        assert (server.cors_mode, server.pacsbin_proxy) == ("reverse_proxy", None)
