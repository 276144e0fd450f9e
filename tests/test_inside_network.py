"""An archive address that only works inside the hospital (loopback, private,
.local …): said on the public pages, and not activated by default on review."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.test import SimpleTestCase, TestCase

from integrations.connectivity.ssrf import inside_network
from tests.factories import submitted_request
from tests.onboarding_helpers import FORM_URL, FreshRateLimit, form_data

INSIDE = [
    ("http://127.0.0.1:8042/dicom-web", "a loopback address"),
    ("http://localhost:8042/dicom-web", "a loopback name"),
    ("https://10.1.2.3/dicomweb", "a private address"),
    ("https://192.168.0.9/dicomweb", "a private address"),
    ("https://[fd00::5]/dicomweb", "a private address"),
    ("https://169.254.10.10/dicomweb", "a link-local address"),
    ("https://pacs.hospital.local/dicomweb", "a .local name"),
    ("https://pacs.corp.internal/dicomweb", "a .internal name"),
    ("https://pacs/dicomweb", "a name without a domain"),
]
OUTSIDE = ["https://pacs.university.edu/dicomweb", "https://8.8.4.4/dicomweb"]


class ClassificationTests(SimpleTestCase):
    def test_addresses_only_reachable_inside_are_named(self) -> None:
        for url, reason in INSIDE:
            assert inside_network(url) == reason, url

    def test_public_addresses_are_not(self) -> None:
        for url in OUTSIDE:
            assert inside_network(url) is None, url


def activate_box(html: str) -> str:
    box = re.search(r'<input type="checkbox" name="activate"[^>]*>', html)
    assert box, "the review page offers activation"
    return box.group(0)


class ReviewPageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.staff = get_user_model().objects.create_superuser(
            "boss", "boss@pacsbin.example", "pw"
        )

    def review(self, qido: str) -> str:
        r = submitted_request(qido_url=qido, wado_url=qido)
        self.client.force_login(self.staff)
        response = self.client.get(
            f"/admin/integrations/onboardingrequest/{r.pk}/change/"
        )
        assert response.status_code == 200
        return response.content.decode()

    def test_a_loopback_archive_is_not_activated_by_default(self) -> None:
        html = self.review("http://127.0.0.1:8042/dicom-web")
        assert "checked" not in activate_box(html)
        assert 'id="inside-network-warning"' in html
        assert "a loopback address" in html

    def test_a_public_archive_is_activated_by_default(self) -> None:
        html = self.review("https://pacs.university.edu/dicomweb")
        assert "checked" in activate_box(html)
        assert "inside-network-warning" not in html


class PublicPagesTests(FreshRateLimit, TestCase):
    def test_the_form_page_says_it_beside_the_address(self) -> None:
        html = self.client.get(FORM_URL).content.decode()
        note = re.search(r'<p class="note js-inside-network"[^>]*>', html)
        assert note and "hidden" in note.group(0)  # shown by the script as typed
        again = self.client.post(
            FORM_URL,
            form_data(qido_url="http://127.0.0.1:8042/dicom-web", emails=""),
        ).content.decode()
        note = re.search(r'<p class="note js-inside-network"[^>]*>(.*?)</p>', again)
        assert note and "hidden" not in note.group(0)
        assert "a loopback address" in note.group(1)

    def test_the_submitted_and_status_pages_say_it(self) -> None:
        response = self.client.post(
            FORM_URL, form_data(qido_url="https://pacs.hospital.local/dicomweb")
        )
        assert response.status_code == 302
        submitted = self.client.get(response["Location"]).content.decode()
        assert "a .local name" in submitted
        link = re.search(r'id="status-link" href="([^"]+)"', submitted)
        assert link
        status = self.client.get(link.group(1)).content.decode()
        assert 'id="inside-network-note"' in status
