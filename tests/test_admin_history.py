"""The change history page reads as words: who, when, what, old -> new."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase

from integrations import audit
from tests.factories import make_institution, make_server


class HistoryPageTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.boss = get_user_model().objects.create_superuser("boss", "b@x.org", "pw")
        with audit.acting_as(label="seed_demo"):
            cls.server = make_server(make_institution(), "Main PACS")
        with audit.acting_as(user=cls.boss):
            cls.server.notes = "Moved to the new data centre"
            cls.server.save()

    def test_it_names_the_actor_and_the_change_without_raw_names(self) -> None:
        self.client.force_login(self.boss)
        url = f"/admin/integrations/dicomwebserver/{self.server.pk}/history/"
        html = self.client.get(url).content.decode()
        assert "HISTORY_ACTOR" not in html.upper().replace("PI-HISTORY", "")
        assert ">None<" not in html
        assert '<th scope="col">Who</th>' in html
        assert "seed_demo" in html and "boss" in html
        assert "<em>(empty)</em> &rarr; Moved to the new data centre" in html
