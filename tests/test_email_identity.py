"""Who is the same user (contract): local parts equal ignoring case
(``str.lower``), domains equal in IDNA ASCII form ignoring case; nothing else
folds. Proven on the key, the access question, the database constraint, the
migration that recomputed the stored keys and the onboarding contact email."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import (
    SimpleTestCase,
    TestCase,
    TransactionTestCase,
    override_settings,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations import validators
from integrations.api import access
from integrations.models import ApprovedUser, DicomWebServer, Institution
from integrations.onboarding import approve_request
from integrations.validators import email_identity, email_key, normalize_email
from tests.api_helpers import (
    JWT_SECRET,
    bearer_header,
    key_header,
    user_token,
)
from tests.factories import (
    api_key,
    server,
    submitted_request,
)
from tests.onboarding_helpers import (
    FORM_URL,
    form_data,
)

STRASSE_SHARP = "dr.weber@klinikum-straße.de"
STRASSE_SS = "dr.weber@klinikum-strasse.de"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("JANE@Example.COM", "jane@example.com"),
        ("Jane.Doe@University.EDU", "jane.doe@university.edu"),
        ("DR.WEBER@KLINIKUM-STRASSE.DE", STRASSE_SS),
        ("Dr.Weber@Klinikum-Straße.DE", STRASSE_SHARP),
        (STRASSE_SHARP, "dr.weber@xn--klinikum-strae-dgb.de"),
        ("JOSÉ@bücher.example", "josé@BÜCHER.example"),
    ],
)
def test_these_are_the_same_user(one: str, other: str) -> None:
    assert email_key(one) == email_key(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (STRASSE_SHARP, STRASSE_SS),
        ("weber@σ.example", "weber@ς.example"),
        ("straße@example.com", "strasse@example.com"),
        ("ς@example.com", "σ@example.com"),
    ],
)
def test_nothing_else_folds(one: str, other: str) -> None:
    assert email_key(one) != email_key(other)


def test_the_key_holds_the_domain_in_its_ascii_form() -> None:
    normalised, key = email_identity(" Dr.Weber@Klinikum-Straße.DE ")
    assert normalised == "Dr.Weber@klinikum-straße.de"
    assert key == "dr.weber@xn--klinikum-strae-dgb.de"
    assert key == email_key(normalised) == email_key(normalize_email(normalised))


@override_settings(ACCESS_THROTTLE_RATE=None, UPLOADER_JWT_SECRET=JWT_SECRET)
class TheAccessQuestionUsesTheIdentityKey(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.key, cls.raw = api_key("uploader", "access")
        hospital = Institution.objects.create(name="Klinikum")
        cls.sharp = server(hospital, "Straße PACS", emails=[STRASSE_SHARP])
        cls.ss = server(hospital, "Strasse PACS", emails=[STRASSE_SS])
        cls.jane = server(hospital, "Jane PACS", emails=["jane@example.com"])
        cls.both = server(
            hospital, "Both", emails=[STRASSE_SHARP, STRASSE_SS, "weber@σ.example"]
        )

    def names(self, email: str) -> list[str]:
        response = self.client.get(
            "/api/v1/access", {"email": email}, **key_header(self.raw)
        )
        self.assertEqual(response.status_code, 200)
        return [s["name"] for s in response.json()["servers"]]

    def test_strasse_with_sharp_s_never_gets_the_ss_approvals(self) -> None:
        self.assertEqual(self.names(STRASSE_SHARP), ["Both", "Straße PACS"])
        self.assertEqual(
            self.names("DR.WEBER@KLINIKUM-STRAẞE.DE"), self.names(STRASSE_SHARP)
        )

    def test_strasse_with_ss_never_gets_the_sharp_s_approvals(self) -> None:
        self.assertEqual(self.names(STRASSE_SS), ["Both", "Strasse PACS"])
        self.assertEqual(
            self.names("Dr.Weber@Klinikum-STRASSE.de"), ["Both", "Strasse PACS"]
        )

    def test_final_sigma_is_not_sigma(self) -> None:
        self.assertEqual(self.names("weber@σ.example"), ["Both"])
        self.assertEqual(self.names("weber@ς.example"), [])

    def test_case_still_does_not_matter(self) -> None:
        self.assertEqual(self.names("JANE@Example.COM"), ["Jane PACS"])

    def test_the_registry_function_and_the_compiled_sql_agree(self) -> None:
        for email in [STRASSE_SHARP, STRASSE_SS, "JANE@Example.COM", "weber@ς.example"]:
            with self.subTest(email=email):
                normalised = normalize_email(email)
                self.assertEqual(
                    [row["id"] for row in access.rows(normalised)],
                    [s.pk for s in DicomWebServer.objects.approved_for(normalised)],
                )

    def test_a_bearer_token_for_straße_sees_only_its_own_servers(self) -> None:
        response = self.client.get(
            "/api/v1/access", **bearer_header(user_token(STRASSE_SHARP))
        )
        self.assertEqual(
            [s["name"] for s in response.json()["servers"]], ["Both", "Straße PACS"]
        )
        response = self.client.get(
            "/api/v1/access",
            {"email": STRASSE_SS},
            **bearer_header(user_token(STRASSE_SHARP)),
        )
        self.assertEqual(response.status_code, 403)

    def test_both_spellings_are_kept_apart_on_one_server(self) -> None:
        self.assertEqual(
            sorted(self.both.approved_users.values_list("email_key", flat=True)),
            [
                "dr.weber@klinikum-strasse.de",
                "dr.weber@xn--klinikum-strae-dgb.de",
                "weber@xn--4xa.example",
            ],
        )

    def test_the_database_still_refuses_the_same_user_twice(self) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic():
            ApprovedUser.objects.create(
                server=self.sharp,
                email="Dr.Weber@Klinikum-Straße.de",
                email_key=email_key("Dr.Weber@Klinikum-Straße.de"),
            )
        self.assertEqual(self.sharp.approved_users.count(), 1)


class TheContactEmailGoesThroughTheSameNormaliser(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.reviewer = get_user_model().objects.create_user(
            "reviewer", "reviewer@pacsbin.example", is_staff=True
        )

    def test_a_non_ascii_local_part_is_accepted_and_can_be_approved(self) -> None:
        response = self.client.post(
            FORM_URL, form_data(contact_email=" Jürgen.Müller@Klinikum-Straße.DE ")
        )
        self.assertEqual(response.status_code, 302, response.content[:2000])
        r = submitted_request(contact_email="jürgen.müller@klinikum-straße.de")
        approve_request(r, self.reviewer)
        institution = Institution.objects.get()
        self.assertEqual(institution.contact_email, "jürgen.müller@klinikum-straße.de")

    def test_a_bad_contact_email_is_refused_naming_it(self) -> None:
        response = self.client.post(
            FORM_URL, form_data(contact_email="jürgen@<script>")
        )
        self.assertContains(response, "jürgen@&lt;script&gt;", status_code=400)
        self.assertFalse(Institution.objects.exists())

    def test_the_model_normalises_the_contact_email_like_the_form(self) -> None:
        institution = Institution(name="X", contact_email=" Jürgen@Example.ORG ")
        institution.full_clean()
        self.assertEqual(institution.contact_email, "Jürgen@example.org")


class RecomputingTheStoredKeys(TransactionTestCase):
    """The data migration: every stored key recomputed, in batches, with the
    uniqueness constraint kept all along."""

    before = [("integrations", "0009_contact_email_any_valid_address")]
    after = [("integrations", "0010_recompute_email_keys")]

    def migrate(self, target: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(target)
        return executor.loader.project_state(target).apps

    def tearDown(self) -> None:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        super().tearDown()

    def test_old_casefolded_keys_become_identity_keys(self) -> None:
        apps = self.migrate(self.before)
        Institution = apps.get_model("integrations", "Institution")
        Server = apps.get_model("integrations", "DicomWebServer")
        Approved = apps.get_model("integrations", "ApprovedUser")
        institution = Institution.objects.create(name="Klinikum")

        def make(name: str):  # type: ignore[no-untyped-def]
            return Server.objects.create(
                institution=institution,
                name=name,
                qido_url=f"https://{name}.example/dicomweb",
                wado_url=f"https://{name}.example/dicomweb",
            )

        one, two = make("one"), make("two")
        rows = {
            # as the old code stored them: the whole address casefolded
            "sharp": Approved.objects.create(
                server=one, email=STRASSE_SHARP, email_key=STRASSE_SHARP.casefold()
            ),
            "ascii": Approved.objects.create(
                server=one, email="Jane@example.com", email_key="jane@example.com"
            ),
            # hand-made rows whose keys swap: refused midway without care
            "a": Approved.objects.create(
                server=two, email="a@example.com", email_key="b@example.com"
            ),
            "b": Approved.objects.create(
                server=two, email="b@example.com", email_key="a@example.com"
            ),
            # a hand-made duplicate of "ascii" under a key of its own
            "dup": Approved.objects.create(
                server=one, email="JANE@example.com", email_key="legacy"
            ),
        }

        apps = self.migrate(self.after)
        Approved = apps.get_model("integrations", "ApprovedUser")
        keys = dict(Approved.objects.values_list("pk", "email_key"))
        self.assertEqual(keys[rows["sharp"].pk], "dr.weber@xn--klinikum-strae-dgb.de")
        self.assertEqual(keys[rows["ascii"].pk], "jane@example.com")
        self.assertEqual(keys[rows["a"].pk], "a@example.com")
        self.assertEqual(keys[rows["b"].pk], "b@example.com")
        self.assertNotIn(rows["dup"].pk, keys)  # the oldest approval stays
        self.assertEqual(len(keys), 4)

    def test_going_back_restores_casefolded_keys(self) -> None:
        apps = self.migrate(self.after)
        Institution = apps.get_model("integrations", "Institution")
        Server = apps.get_model("integrations", "DicomWebServer")
        Approved = apps.get_model("integrations", "ApprovedUser")
        pacs = Server.objects.create(
            institution=Institution.objects.create(name="K"),
            name="pacs",
            qido_url="https://pacs.example/dicomweb",
            wado_url="https://pacs.example/dicomweb",
        )
        row = Approved.objects.create(
            server=pacs, email=STRASSE_SHARP, email_key=email_key(STRASSE_SHARP)
        )
        apps = self.migrate(self.before)
        Approved = apps.get_model("integrations", "ApprovedUser")
        self.assertEqual(
            Approved.objects.get(pk=row.pk).email_key, STRASSE_SHARP.casefold()
        )


# Characters that matter to email-validator's parsing: dots, quotes, brackets,
# comments, spaces, IDNA, upper case, mailbox names it lowers.
_TRICKY = "aAzZ09.-_+!#$%&'*/=?^`{|}~@\"<>()[]\\,;: \tßéσς\u00ad"
_PARTS = st.sampled_from(
    [
        "jane",
        "Jane.Doe",
        "POSTMASTER",
        "abuse",
        "x" * 64,
        "x" * 65,
        "xn--strae-oqa",
        "xn--zz",
        "example",
        "COM",
        "invalid",
        "localhost",
        "1",
        "-a",
        "a-",
        ".",
        "..",
        "@",
        "[127.0.0.1]",
        "d" * 63,
        "d" * 64,
    ]
)
_ADDRESSES = st.lists(
    st.one_of(_PARTS, st.text(alphabet=_TRICKY, min_size=1, max_size=6)),
    min_size=1,
    max_size=8,
).map("".join)


class ThePlainAddressShortcut(SimpleTestCase):
    """The common shape skips most of email-validator's work once its domain
    is known (validators._plain_identity); it must answer exactly what
    email-validator's own path does, and never take what that path refuses."""

    def assert_same(self, raw: str) -> None:
        plain = validators._plain_identity(raw)
        if plain is not None:
            self.assertEqual(plain, validators._validated_identity(raw), raw)

    @given(_ADDRESSES)
    @settings(max_examples=1000, deadline=None)
    def test_it_agrees_with_email_validator_on_any_input(self, raw: str) -> None:
        self.assert_same(raw)

    @given(_ADDRESSES, _ADDRESSES)
    @settings(max_examples=500, deadline=None)
    def test_it_agrees_on_local_part_and_domain_pairs(
        self, local: str, domain: str
    ) -> None:
        self.assert_same(f"{local}@{domain}")
        self.assert_same(f"{local}@{domain}.example.org")

    def test_it_serves_the_common_shape(self) -> None:
        for raw in [
            "jane@example.com",
            "Jane.Doe@University.EDU",
            "user123@site5.example.org",
            "a.b+tag@x-y.example.net",
            "o'brien@example.com",
            f"{'x' * 65}@example.com",  # over 64 is refused in strict mode only
            f"jane@{'d' * 63}.{'e' * 63}.{'f' * 63}.{'g' * 50}.com",
        ]:
            with self.subTest(raw):
                plain = validators._plain_identity(raw)
                self.assertIsNotNone(plain)
                self.assertEqual(plain, validators._validated_identity(raw))

    def test_it_leaves_everything_else_to_email_validator(self) -> None:
        for raw in [
            "POSTMASTER@example.com",  # email-validator lowers it
            "jane@xn--klinikum-strae-dgb.de",  # decoded to Unicode
            "jane@bücher.example",
            "jané@example.com",
            '"jane"@example.com',
            "Jane <jane@example.com>",
            "jane@[127.0.0.1]",
            "jane@example.com.",
            f"{'x' * 64}@{'d' * 63}.{'e' * 63}.{'f' * 63}.com",  # 260 long
            "jane@example.invalid",
            "ja..ne@example.com",
        ]:
            with self.subTest(raw):
                self.assertIsNone(validators._plain_identity(raw))
