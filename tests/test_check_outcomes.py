"""One outcome enum: the model, the probe, the API's validation and the
published schema all say the same outcomes."""

from __future__ import annotations

from django.test import TestCase

from integrations.connectivity import probe
from integrations.models import CheckOutcome, ConnectivityCheck


class OneOutcomeEnumTests(TestCase):
    def test_the_model_field_takes_exactly_the_enum(self) -> None:
        field = ConnectivityCheck._meta.get_field("outcome")
        assert [value for value, _label in field.choices] == CheckOutcome.values

    def test_the_probe_ranks_every_outcome_of_the_enum(self) -> None:
        assert sorted(probe.SEVERITY) == sorted(CheckOutcome)

    def test_the_published_schema_lists_the_enum(self) -> None:
        response = self.client.get("/api/schema/", HTTP_ACCEPT="application/json")
        schemas = response.json()["components"]["schemas"]
        enums = [
            schema["enum"]
            for schema in schemas.values()
            if "enum" in schema and "cors_missing" in schema["enum"]
        ]
        assert enums == [CheckOutcome.values]
