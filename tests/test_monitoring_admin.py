"""The admin's monitoring: servers by state, and the server page's health,
7-day timeline (inline SVG) and capability table."""

from __future__ import annotations

from datetime import timedelta
from xml.etree import ElementTree

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import TestCase
from django.utils import timezone

from integrations.models import ConnectivityCheck, ServerHealth
from tests.factories import make_institution, make_server

SVG = "http://www.w3.org/2000/svg"


class MonitoringAdminTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        institution = make_institution()
        now = timezone.now()
        cls.ok = make_server(institution, "Fine PACS")
        cls.failing = make_server(institution, "Broken <b>PACS</b>")
        cls.inside = make_server(institution, "Inside PACS")
        ServerHealth.objects.create(
            server=cls.ok,
            state="ok",
            since=now - timedelta(days=2),
            last_ok_at=now,
            tls_expires_at=now + timedelta(days=20, hours=1),
            capabilities={"includefield_tag": True, "fuzzy_matching": False},
            capabilities_learnt_at=now,
        )
        ServerHealth.objects.create(
            server=cls.failing, state="failing", since=now - timedelta(hours=3)
        )
        ServerHealth.objects.create(
            server=cls.inside, state="unmonitored", out_of_reach=True
        )
        for hours, outcome in ((50, "ok"), (30, "cors_missing"), (2, "ok")):
            check = ConnectivityCheck.objects.create(
                server=cls.ok,
                source="server",
                origin="https://pacsbin.com",
                outcome=outcome,
            )
            ConnectivityCheck.objects.filter(pk=check.pk).update(
                created_at=now - timedelta(hours=hours)
            )
        cls.admin = get_user_model().objects.create_superuser(
            "root", "root@x.example", "pw"
        )

    def setUp(self) -> None:
        self.client.force_login(self.admin)

    def test_the_list_shows_failing_servers_first(self) -> None:
        response = self.client.get("/admin/integrations/serverhealth/")
        assert response.status_code == 200
        page = response.content.decode()
        assert "Servers by monitoring state" in page
        failing = page.index("Broken &lt;b&gt;PACS&lt;/b&gt;")
        assert failing < page.index("Fine PACS") < page.index("Inside PACS")
        assert ">20<" in page  # TLS days left

    def test_the_list_filters_never_fail(self) -> None:
        for query in ("state=failing", "state=bogus", "out_of_reach__exact=9"):
            response = self.client.get(f"/admin/integrations/serverhealth/?{query}")
            assert response.status_code in (200, 302), query

    def test_the_server_page_shows_health_timeline_and_capabilities(self) -> None:
        url = f"/admin/integrations/dicomwebserver/{self.ok.pk}/change/"
        page = self.client.get(url).content.decode()
        assert "pi-state-ok" in page
        assert '<svg xmlns="http://www.w3.org/2000/svg" class="pi-timeline"' in page
        assert page.count('class="pi-tl-failed"') == 1
        assert page.count('class="pi-tl-ok"') == 2
        assert "3 scheduled check(s), 1 not ok" in page
        start = page.index('class="pi-timeline"') - len('<svg xmlns="' + SVG + '" ')
        svg = page[start : page.index("</svg>", start) + len("</svg>")]
        root = ElementTree.fromstring(svg)  # well-formed, drawn server-side
        assert root.tag == "{" + SVG + "}svg"
        assert "<script" not in svg
        assert '<th scope="row">Fuzzy matching of names</th><td>no</td>' in page
        assert (
            '<th scope="row">includefield with a named attribute</th><td>yes</td>'
            in page
        )
        assert '<th scope="row">Thumbnails (/thumbnail)</th><td>unknown</td>' in page

    def test_an_unmonitored_server_says_so(self) -> None:
        url = f"/admin/integrations/dicomwebserver/{self.inside.pk}/change/"
        page = self.client.get(url).content.decode()
        assert "The registry cannot reach this archive" in page
        assert "Not learnt yet" in page

    def test_staff_edit_only_the_opt_ins(self) -> None:
        url = f"/admin/integrations/serverhealth/{self.failing.pk}/change/"
        response = self.client.post(
            url, {"out_of_reach": "on", "alert_contact": "on", "state": "ok"}
        )
        assert response.status_code == 302
        health = ServerHealth.objects.get(pk=self.failing.pk)
        assert health.out_of_reach and health.alert_contact
        assert health.state == "failing"

    def test_flapping_is_shown_and_only_monitoring_sets_it(self) -> None:
        since = timezone.now() - timedelta(minutes=30)
        ServerHealth.objects.filter(pk=self.failing.pk).update(flapping_since=since)
        url = f"/admin/integrations/serverhealth/{self.failing.pk}/change/"
        assert "Flapping since" in self.client.get(url).content.decode()
        response = self.client.post(
            url, {"flapping_since": "", "recent_changes": "[]", "alert_contact": "on"}
        )
        assert response.status_code == 302
        assert ServerHealth.objects.get(pk=self.failing.pk).flapping_since == since

    def test_without_permission_the_list_is_refused(self) -> None:
        user = get_user_model().objects.create_user("s", "s@x.example", "pw")
        user.is_staff = True
        user.save()
        self.client.force_login(user)
        assert self.client.get("/admin/integrations/serverhealth/").status_code == 403
        user.user_permissions.add(Permission.objects.get(codename="view_serverhealth"))
        assert self.client.get("/admin/integrations/serverhealth/").status_code == 200
        url = f"/admin/integrations/serverhealth/{self.failing.pk}/change/"
        response = self.client.post(url, {"out_of_reach": "on"})
        assert response.status_code == 403
        assert not ServerHealth.objects.get(pk=self.failing.pk).out_of_reach
