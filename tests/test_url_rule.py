"""The one DICOMweb URL rule (DESIGN.md, "Validation everywhere"): what it
refuses, naming the character, through every way in (validator, public form,
change form, admin, management API, importer), and what it still accepts."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings

from integrations.management.commands.seed_demo import DEMO
from integrations.models import (
    ApprovedUser,
    DicomWebServer,
    Institution,
    OnboardingRequest,
)
from integrations.onboarding import approve_request
from integrations.onboarding.links import status_link
from integrations.validators import normalize_dicomweb_url
from tests.api_helpers import (
    key_header,
)
from tests.factories import (
    api_key,
    make_institution,
    make_server,
    submitted_request,
)
from tests.onboarding_helpers import (
    FORM_URL,
    FreshRateLimit,
    form_data,
)

# (URL, what the message must name). Each was, or would have been, a way to
# inject into a generated proxy configuration.
HOSTILE_URLS = [
    ("http://$http_x_target/dicom-web", "“$”"),
    ("http://pacs.example.org/dicom-web?a;internal;}types{", "query"),
    ("http://pacs.example.org/dicom-web?", "query"),
    ("http://pacs.example.org/dicom;web", "“;”"),
    ("http://pacs.example.org/dicom{web", "“{”"),
    ("http://pacs.example.org/dicom}web", "“}”"),
    ('http://pacs.example.org/dicom-web"retry=0', '“"”'),
    ("http://pacs.example.org/{http.request.header.x-p}", "“{”"),
    ("http://pacs.example.org/dicom'web", "“'”"),
    ("http://pacs.example.org/dicom\\web", "“\\”"),
    ("http://pacs.example.org/dicom<web>", "“<”"),
    ("http://pacs.example.org/a^b", "“^”"),
    ("http://pacs.example.org/a|b", "“|”"),
    ("http://pacs.example.org/a`b", "“`”"),
    ("http://pacs.example.org/a$host", "“$”"),
    ("http://pacs.example.org/dicom web", "U+0020"),
    ("http://pacs.example.org/dicom\tweb", "U+0009"),
    ("http://pacs.example.org/dw\nproxy_pass http://evil.example", "U+000A"),
    ("http://pacs.example.org/dw\r\nX: y", "U+000D"),
    ("http://pacs.example.org/dicom\x00web", "U+0000"),
    ("http://pacs.example.org/dicom\u2028web", "U+2028"),
    ("http://pacs.example.org/dicom\u0085web", "U+0085"),
    ("http://pacs.example.org/dicomw\u00e9b", "U+00E9"),
    ("http://pacs.example.org/a%zz", "“%”"),
    ("http://pacs.example.org/a%2", "“%”"),
    ("http://pacs_1.example.org/dw", "“_”"),
    ("http://pacs.example.org{/dw", "“{”"),
    ("http://evil.example;/dw", "“;”"),
    ("http://pacs.example.org%0a/dw", "“%”"),
    ("http://-pacs.example.org/dw", "-pacs"),
    ("http://pacs..example.org/dw", "empty label"),
    ("http://1.2.3/dw", "not an IPv4 address"),
    ("http://[::1%25eth0]/dw", "IPv6"),
    ("http://[::1]x/dw", "“x”"),
    ("http://user:secret@pacs.example.org/dw", "user name or password"),
    ("http://pacs.example.org/dw#studies", "fragment"),
    ("http://pacs.example.org:0/dw", "port 0"),
    ("http://pacs.example.org:65536/dw", "65536"),
    ("http://pacs.example.org:80x/dw", "port"),
    ("http://pacs.example.org:/dw", "port"),
    ("ftp://pacs.example.org/dw", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("http:/pacs.example.org/dw", "http:// or https://"),
]

GOOD_URLS = [
    (
        "https://pacs.klinikum-münchen.de/dicom-web",
        "https://pacs.xn--klinikum-mnchen-8vb.de/dicom-web",
    ),
    ("https://PACS.KLINIKUM-MÜNCHEN.de/", "https://pacs.xn--klinikum-mnchen-8vb.de"),
    ("http://[2001:DB8::1]:8042/dicom-web/", "http://[2001:db8::1]:8042/dicom-web"),
    ("http://[::1]/dw", "http://[::1]/dw"),
    ("http://10.0.0.5:8042/dicom-web", "http://10.0.0.5:8042/dicom-web"),
    ("https://pacs.example.org:65535/dw", "https://pacs.example.org:65535/dw"),
    ("https://pacs.example.org/a%2Fb%20c/dw", "https://pacs.example.org/a%2Fb%20c/dw"),
    (
        "https://pacs.example.org/x/!&()*+,=:@/-._~",
        "https://pacs.example.org/x/!&()*+,=:@/-._~",
    ),
    ("https://pacs.example.org", "https://pacs.example.org"),
]


@pytest.mark.parametrize(("raw", "named"), HOSTILE_URLS)
def test_the_validator_refuses_each_hostile_url_naming_the_problem(
    raw: str, named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_dicomweb_url(raw)
    message = caught.value.messages[0]
    assert named in message
    # The message itself is safe to show: one line, nothing unprintable.
    assert message.isprintable()


@pytest.mark.parametrize(("raw", "expected"), GOOD_URLS)
def test_the_validator_still_accepts_and_normalises_good_urls(
    raw: str, expected: str
) -> None:
    assert normalize_dicomweb_url(raw) == expected
    assert normalize_dicomweb_url(expected) == expected  # a fixed point


def test_the_demo_data_obeys_the_rule() -> None:
    for spec in DEMO:
        for server in spec["servers"]:
            for field in ("qido_url", "wado_url"):
                assert normalize_dicomweb_url(server[field]) == server[field]


def first_error(errors: dict, field: str) -> str:
    return str(errors[field][0])


def names(named: str, message: str) -> bool:
    """Whether the message names the problem. A NUL is refused before the URL
    rule by Django's own form fields, with their own message."""
    if named == "U+0000" and message == "Null characters are not allowed.":
        return True
    return named in message


@override_settings(ONBOARDING_SUBMISSIONS_PER_HOUR=10_000)
class ThePublicForms(FreshRateLimit, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        reviewer = get_user_model().objects.create_user("reviewer", is_staff=True)
        cls.origin = submitted_request()
        cls.server = approve_request(cls.origin, reviewer).server
        cls.change_url = f"/onboarding/status/{status_link(cls.origin)}/change/"

    def test_the_new_server_form_refuses_each_hostile_url_and_stores_nothing(
        self,
    ) -> None:
        before = OnboardingRequest.objects.count()
        for raw, named in HOSTILE_URLS:
            for data in (
                form_data(qido_url=raw),
                form_data(wado_same=None, wado_url=raw),
            ):
                with self.subTest(raw=raw, data=data.get("wado_same")):
                    response = self.client.post(FORM_URL, data)
                    self.assertEqual(response.status_code, 400)
                    field = "qido_url" if "wado_same" in data else "wado_url"
                    errors = response.context["form"].errors
                    self.assertTrue(names(named, first_error(errors, field)))
        self.assertEqual(OnboardingRequest.objects.count(), before)

    def test_the_change_form_refuses_each_hostile_url_and_stores_nothing(
        self,
    ) -> None:
        before = OnboardingRequest.objects.count()
        for raw, named in HOSTILE_URLS:
            with self.subTest(raw=raw):
                response = self.client.post(
                    self.change_url,
                    {
                        "contact_name": "Pat Admin",
                        "contact_email": "pat.admin@st-example.org",
                        "server_name": "Main PACS",
                        "qido_url": raw,
                        "wado_same": "on",
                        "cors_mode": "reverse_proxy",
                        "emails_to_add": "",
                        "emails_to_remove": "",
                        "notes": "",
                        "leave_blank": "",
                    },
                )
                self.assertEqual(response.status_code, 400)
                errors = response.context["form"].errors
                self.assertTrue(names(named, first_error(errors, "qido_url")))
        self.assertEqual(OnboardingRequest.objects.count(), before)
        self.server.refresh_from_db()
        self.assertEqual(self.server.qido_url, "https://pacs.st-example.org/dicomweb")

    def test_an_internationalised_host_is_stored_in_ascii(self) -> None:
        response = self.client.post(
            FORM_URL, form_data(qido_url="https://pacs.klinikum-münchen.de/dicom-web/")
        )
        self.assertEqual(response.status_code, 302)
        stored = OnboardingRequest.objects.latest("pk")
        self.assertEqual(
            stored.qido_url, "https://pacs.xn--klinikum-mnchen-8vb.de/dicom-web"
        )
        self.assertEqual(stored.wado_url, stored.qido_url)


class TheAdminForm(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.admin = get_user_model().objects.create_superuser("admin", "a@b.example")
        cls.hospital = make_institution()
        cls.server = make_server(cls.hospital)

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def data(self, **overrides: str) -> dict[str, str]:
        return {
            "institution": str(self.hospital.pk),
            "name": "Research PACS",
            "status": "active",
            "qido_url": "https://research.example.edu/dw",
            "wado_url": "https://research.example.edu/dw",
            "cors_mode": "direct",
            "add_emails": "",
            "notes": "",
            **overrides,
        }

    def test_adding_or_changing_a_server_refuses_each_hostile_url(self) -> None:
        add = "/admin/integrations/dicomwebserver/add/"
        change = f"/admin/integrations/dicomwebserver/{self.server.pk}/change/"
        for raw, named in HOSTILE_URLS:
            for url, field in ((add, "qido_url"), (change, "wado_url")):
                with self.subTest(raw=raw, url=url):
                    response = self.client.post(url, self.data(**{field: raw}))
                    self.assertEqual(response.status_code, 200)
                    errors = response.context["adminform"].form.errors
                    self.assertTrue(names(named, first_error(errors, field)))
        self.assertEqual(DicomWebServer.objects.count(), 1)
        self.server.refresh_from_db()
        self.assertEqual(self.server.wado_url, "https://pacs.example.edu/dicomweb")

    def test_a_good_url_is_stored_normalised(self) -> None:
        response = self.client.post(
            "/admin/integrations/dicomwebserver/add/",
            self.data(
                qido_url="http://[2001:DB8::1]:8042/dicom-web/",
                wado_url="https://pacs.klinikum-münchen.de/a%2Fb/!&()*+,=:@",
            ),
        )
        self.assertEqual(response.status_code, 302)
        stored = DicomWebServer.objects.get(name="Research PACS")
        self.assertEqual(stored.qido_url, "http://[2001:db8::1]:8042/dicom-web")
        self.assertEqual(
            stored.wado_url,
            "https://pacs.xn--klinikum-mnchen-8vb.de/a%2Fb/!&()*+,=:@",
        )


class TheManagementApi(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("deploy-bot", "manage")
        cls.hospital = make_institution()
        cls.server = make_server(cls.hospital)

    def send(self, method: str, path: str, data: dict):
        return getattr(self.client, method)(
            path,
            json.dumps(data),
            content_type="application/json",
            **key_header(self.raw),
        )

    def test_post_and_patch_refuse_each_hostile_url_and_write_nothing(self) -> None:
        for raw, named in HOSTILE_URLS:
            with self.subTest(raw=raw):
                created = self.send(
                    "post",
                    "/api/v1/servers/",
                    {
                        "institution": self.hospital.pk,
                        "name": "New",
                        "qido_url": raw,
                        "wado_url": "https://pacs.example.edu/dw",
                    },
                )
                self.assertEqual(created.status_code, 400)
                self.assertTrue(names(named, created.json()["qido_url"][0]))
                patched = self.send(
                    "patch", f"/api/v1/servers/{self.server.pk}/", {"wado_url": raw}
                )
                self.assertEqual(patched.status_code, 400)
                self.assertTrue(names(named, patched.json()["wado_url"][0]))
        self.assertEqual(DicomWebServer.objects.count(), 1)
        self.server.refresh_from_db()
        self.assertEqual(self.server.wado_url, "https://pacs.example.edu/dicomweb")

    def test_an_internationalised_host_and_an_ipv6_literal_are_accepted(
        self,
    ) -> None:
        created = self.send(
            "post",
            "/api/v1/servers/",
            {
                "institution": self.hospital.pk,
                "name": "New",
                "qido_url": "https://pacs.klinikum-münchen.de/dicom-web",
                "wado_url": "http://[2001:DB8::1]:8042/a%2Fb/",
            },
        )
        self.assertEqual(created.status_code, 201, created.content)
        stored = DicomWebServer.objects.get(name="New")
        self.assertEqual(
            stored.qido_url, "https://pacs.xn--klinikum-mnchen-8vb.de/dicom-web"
        )
        self.assertEqual(stored.wado_url, "http://[2001:db8::1]:8042/a%2Fb")
        self.assertEqual(created.json()["qido_url"], stored.qido_url)


class TheImporter(TestCase):
    """The JSON import (import_registry) checks every row with the model's
    rules before writing; the CSV import carries only emails, no URLs."""

    def test_it_refuses_each_hostile_url_and_writes_nothing(self) -> None:
        hospital = make_institution()
        make_server(hospital)
        out = io.StringIO()
        call_command("export_registry", stdout=out, stderr=io.StringIO())
        document = json.loads(out.getvalue())
        ApprovedUser.objects.all().delete()
        DicomWebServer.objects.all().delete()
        Institution.objects.all().delete()
        for raw, named in HOSTILE_URLS:
            for field in ("qido_url", "wado_url"):
                with self.subTest(raw=raw, field=field):
                    bad = json.loads(json.dumps(document))
                    bad["servers"][0][field] = raw
                    with self.assertRaises(CommandError) as caught:
                        self.import_text(json.dumps(bad))
                    message = str(caught.exception)
                    self.assertIn("servers #1:", message)
                    self.assertIn(named, message)
        self.assertFalse(Institution.objects.exists())
        self.assertFalse(DicomWebServer.objects.exists())

    def import_text(self, text: str) -> None:
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp()) / "registry.json"
        path.write_text(text, encoding="utf-8")
        try:
            call_command("import_registry", str(path), stdout=io.StringIO())
        finally:
            path.unlink()
