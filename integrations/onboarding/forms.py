"""The public forms. Every value goes through the registry's own validators
(``normalize_dicomweb_url``, ``normalize_email``, ``parse_email_list``), so a
submission that passes here also passes the admin and the API."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from integrations import expiry
from integrations.forms import (
    PROXY_FIELDS,
    EmailPasteField,
    ProxyFieldsForm,
    proxy_initial,
)
from integrations.inputs import escaped
from integrations.models import DicomWebServer, OnboardingRequest, check_pacsbin_proxy
from integrations.onboarding.abuse import MAX_EMAILS
from integrations.validators import (
    PROXY_KEYS,
    PROXY_MODE_DICOMWEB,
    PROXY_MODE_DIMSE,
    count_email_entries,
    email_key,
    normalize_dicomweb_url,
    normalize_email,
    normalize_pacsbin_proxy,
    printable,
    split_dicomweb_url,
    validate_single_line,
)

CORS_CHOICES = [
    (
        DicomWebServer.CorsMode.DIRECT,
        "The archive sends the CORS headers itself (or I will configure it to)",
    ),
    (
        DicomWebServer.CorsMode.REVERSE_PROXY,
        "A reverse proxy in front of the archive (nginx, Apache, Caddy) adds them",
    ),
    (
        DicomWebServer.CorsMode.DIMSE_PROXY,
        "Pacsbin's own proxy in front of the archive's DICOMweb "
        '("proxyMode": "dicomweb")',
    ),
    ("unsure", "I don't know yet: please help me choose"),
]


class CappedEmailPasteField(EmailPasteField):
    """Pasted emails, refused whole above the per-submission cap (counted
    before any address is validated, so an oversized paste costs little)."""

    def to_python(self, value: object) -> list[str]:  # type: ignore[override]
        text = value if isinstance(value, str) else ""
        count = count_email_entries(text)
        if count > MAX_EMAILS:
            raise ValidationError(
                f"You pasted {count:,} addresses; one submission takes at most "
                f"{MAX_EMAILS:,}. Send the first {MAX_EMAILS:,} now and the rest "
                "as a change from your status page once this one is approved.",
                code="too_many",
            )
        return super().to_python(value)


ARCHIVE_SPEAKS_CHOICES = [
    (
        PROXY_MODE_DICOMWEB,
        "DICOMweb: it answers QIDO-RS and WADO-RS at a web address",
    ),
    (
        PROXY_MODE_DIMSE,
        "Only DIMSE (C-FIND, C-GET or C-MOVE): Pacsbin's proxy will translate for it",
    ),
]


class DicomWebUrlsForm(forms.Form):
    """A QIDO-RS URL and a WADO-RS URL ("same as QIDO-RS" by default), each
    through the one URL rule: the public form's archive URLs, and the status
    page's "Your proxy's URLs"."""

    qido_url = forms.CharField(
        label="QIDO-RS URL (search)",
        max_length=2000,
        required=False,
        help_text="The DICOMweb address the uploader searches for studies, "
        "for example https://pacs.example.edu/dicomweb. We add /studies "
        "ourselves. No user name or password in the address.",
        widget=forms.URLInput(attrs={"inputmode": "url", "spellcheck": "false"}),
    )
    wado_same = forms.BooleanField(
        label="WADO-RS uses the same address as QIDO-RS",
        required=False,
        initial=True,
        help_text="Most archives answer both at one address. Untick to give a "
        "different one.",
    )
    wado_url = forms.CharField(
        label="WADO-RS URL (retrieve)",
        max_length=2000,
        required=False,
        help_text="The DICOMweb address the uploader downloads images from.",
        widget=forms.URLInput(attrs={"inputmode": "url", "spellcheck": "false"}),
    )
    # The words of a missing QIDO-RS URL (whose URL the form asks for).
    qido_required = "Enter the archive's QIDO-RS URL."

    def _clean_archive_urls(self, data: dict[str, Any]) -> None:
        raw = data.get("qido_url", "")
        if not raw.strip():
            self.add_error(
                "qido_url",
                ValidationError(self.qido_required, code="required"),
            )
        else:
            try:
                data["qido_url"] = normalize_dicomweb_url(raw)
            except ValidationError as exc:
                self.add_error("qido_url", exc)
        if data.get("wado_same"):
            if "qido_url" in data:
                data["wado_url"] = data["qido_url"]
            return
        raw = data.get("wado_url", "")
        if not raw.strip():
            self.add_error(
                "wado_url",
                ValidationError(
                    "Enter the WADO-RS URL, or tick “same address as QIDO-RS”.",
                    code="required",
                ),
            )
            return
        try:
            data["wado_url"] = normalize_dicomweb_url(raw)
        except ValidationError as exc:
            self.add_error("wado_url", exc)


class ServerDetailsForm(ProxyFieldsForm, DicomWebUrlsForm):
    """The fields a new server and a change to one have in common."""

    archive_speaks = forms.ChoiceField(
        label="How does your archive speak?",
        choices=ARCHIVE_SPEAKS_CHOICES,
        initial=PROXY_MODE_DICOMWEB,
        required=False,
        widget=forms.RadioSelect,
        help_text="Pacsbin's uploader speaks DICOMweb. Many archives (PACS) "
        "speak only the older DICOM network protocol, DIMSE: then Pacsbin's "
        "proxy, run inside your network, answers the uploader in DICOMweb and "
        "asks your archive in DIMSE.",
    )
    proxy_url = forms.CharField(
        label="Where will Pacsbin's proxy answer? (its public address)",
        max_length=2000,
        required=False,
        help_text="The https address at which your radiologists' browsers will "
        "reach the proxy, for example https://pacs-proxy.hospital.example. The "
        "proxy answers at the root of that address (no path after the host): "
        "this is the QIDO and WADO URL the uploader will use.",
        widget=forms.URLInput(attrs={"inputmode": "url", "spellcheck": "false"}),
    )

    contact_name = forms.CharField(
        label="Your name",
        max_length=200,
        validators=[validate_single_line],
        help_text="The person we contact about this integration.",
    )
    contact_email = forms.CharField(
        label="Your email",
        max_length=320,
        help_text="We send a confirmation link here first, then the review "
        "decision. It is not added to the approved users unless you list it "
        "below too.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    server_name = forms.CharField(
        label="Server name",
        max_length=200,
        help_text="How radiologists will see this archive in Pacsbin's uploader, "
        "for example “Main PACS” or “Research archive”.",
    )
    cors_mode = forms.ChoiceField(
        label="How will the browser be allowed to read from the archive?",
        choices=CORS_CHOICES,
        initial=DicomWebServer.CorsMode.DIRECT,
        # Required for a DICOMweb archive (see clean); a DIMSE-only one is
        # always behind Pacsbin's proxy.
        required=False,
        widget=forms.RadioSelect,
        help_text="The uploader runs in the radiologist's browser on "
        "pacsbin.com. Browsers only let it read your archive's answers when the "
        "archive sends CORS headers (“Access-Control-Allow-Origin”). Your "
        "status page shows exactly which headers, for the option you pick.",
    )
    needs_credentials = forms.BooleanField(
        label="Users must be logged in to the archive in their browser",
        required=False,
        help_text="Tick if the archive asks for a login (a cookie or a password "
        "prompt) before answering. Then the CORS headers must name "
        "https://pacsbin.com exactly; a “*” is refused by browsers.",
    )
    edge_enforced = forms.BooleanField(
        label="Only let approved users read the archive (the gate)",
        required=False,
        help_text="Without this, the list of approved users only tells "
        "Pacsbin's uploader whom to show the archive to: anyone who can reach "
        "your proxy still gets images. With it, your reverse proxy (nginx or "
        "Caddy; we give you the configuration) asks this registry about every "
        "request and refuses anyone not approved here, within 30 seconds of "
        "their removal.",
    )
    notes = forms.CharField(
        label="Anything else we should know",
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional: maintenance windows, who runs the proxy, questions.",
    )
    # Hidden from people by CSS and from assistive technology; bots fill it.
    leave_blank = forms.CharField(
        label="Leave this field empty",
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )

    def clean_contact_email(self) -> str:
        return normalize_email(self.cleaned_data["contact_email"])

    # Labels for the contact (the admin's are terser).
    PROXY_LABELS = {
        "archive_ae_title": (
            "The archive's AE title",
            "Its DICOM application entity title, as your PACS administrators "
            "know it, for example PACS_SERVER (1-16 characters).",
        ),
        "archive_host": (
            "The archive's host name or IP address",
            "As the proxy will reach it inside your network, for example "
            "10.1.2.3 or pacs.hospital.local.",
        ),
        "archive_port": (
            "The archive's DICOM port",
            "Often 104 or 11112.",
        ),
        "proxy_ae_title": (
            "The proxy's AE title",
            "The name your archive will know the proxy by; your PACS "
            "administrators register it (we give them a short sheet).",
        ),
        "proxy_dimse_port": (
            "The proxy's DICOM port",
            "Where the proxy listens for DICOM (used when the archive sends "
            "images by C-MOVE), for example 8888.",
        ),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The mode and the forwarding URLs follow from the answers above.
        for name in ("proxy_mode", "forward_qido_url", "forward_wado_url"):
            del self.fields[name]
        for name, (label, help_text) in self.PROXY_LABELS.items():
            self.fields[name].label = label
            self.fields[name].help_text = help_text
        self.fields["proxy_ae_title"].initial = "PACSBIN_PROXY"
        self.fields["proxy_dimse_port"].initial = "8888"
        # Not required by the form (the other branch leaves them empty) but
        # required in their own: never labelled "(optional)".
        for name in ("qido_url", "proxy_url", *self.PROXY_LABELS):
            self.fields[name].required_in_branch = True  # type: ignore[attr-defined]

    @property
    def speaks_dimse(self) -> bool:
        return (self.cleaned_data.get("archive_speaks") or "") == PROXY_MODE_DIMSE

    def clean_server_name(self) -> str:
        return " ".join(self.cleaned_data["server_name"].split())

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what Form.clean() answers, never None
        data["pacsbin_proxy"] = None
        if self.speaks_dimse:
            self._clean_dimse(data)
            return data
        if not data.get("cors_mode") and not self.has_error("cors_mode"):
            self.add_error(
                "cors_mode",
                ValidationError("This field is required.", code="required"),
            )
        self._clean_archive_urls(data)
        if data.get("cors_mode") == DicomWebServer.CorsMode.DIMSE_PROXY:
            self._clean_dicomweb_proxy(data)
        return data

    def _proxy_origin(self, data: dict[str, Any]) -> str | None:
        raw = data.get("proxy_url", "")
        if not raw.strip():
            self.add_error(
                "proxy_url",
                ValidationError(
                    "Enter the address where Pacsbin's proxy will answer, for "
                    "example https://pacs-proxy.hospital.example.",
                    code="required",
                ),
            )
            return None
        try:
            url = normalize_dicomweb_url(raw)
        except ValidationError as exc:
            self.add_error("proxy_url", exc)
            return None
        path = split_dicomweb_url(url).path
        if path:
            self.add_error(
                "proxy_url",
                ValidationError(
                    "“%(value)s”: Pacsbin's proxy answers at the root of its "
                    "address, so give it without “%(path)s” (%(origin)s).",
                    code="proxy_path",
                    params={"value": printable(raw, 120), **_path_params(url, path)},
                ),
            )
            return None
        return url

    def _clean_dimse(self, data: dict[str, Any]) -> None:
        """A DIMSE-only archive: Pacsbin's proxy in dimse mode; the uploader's
        URLs are the proxy's origin."""
        data["cors_mode"] = DicomWebServer.CorsMode.DIMSE_PROXY
        origin = self._proxy_origin(data)
        settings: dict[str, Any] = {"mode": PROXY_MODE_DIMSE}
        for key in PROXY_KEYS[PROXY_MODE_DIMSE][1:]:
            value = data.get(PROXY_FIELDS[key], "")
            settings[key] = value.strip() if isinstance(value, str) else value
        try:
            data["pacsbin_proxy"] = normalize_pacsbin_proxy(settings)
        except ValidationError as exc:
            for key, errors in exc.error_dict.items():
                self.add_error(PROXY_FIELDS.get(key), errors)
        if origin is not None:
            data["qido_url"] = data["wado_url"] = origin
            self._cross_check(data)

    def _clean_dicomweb_proxy(self, data: dict[str, Any]) -> None:
        """A DICOMweb archive behind Pacsbin's proxy (dicomweb mode): the
        typed URLs are where the proxy forwards; the uploader's are the
        proxy's origin. The proxy drops the forwarding URL's path, so an
        archive whose DICOMweb root has one is refused in plain words."""
        origin = self._proxy_origin(data)
        if self.has_error("qido_url") or self.has_error("wado_url"):
            return
        forward = {"qido": data.get("qido_url", ""), "wado": data.get("wado_url", "")}
        for url in forward.values():
            path = split_dicomweb_url(url).path
            if path:
                self.add_error(
                    "cors_mode",
                    ValidationError(
                        "Pacsbin's proxy cannot forward to %(url)s: in its dicomweb "
                        "mode it drops the path (“%(path)s”) and would ask "
                        "%(origin)s/studies, which your archive does not answer. "
                        "Choose instead: “Only DIMSE” above, if the archive also "
                        "speaks DIMSE; or a reverse proxy (nginx, Apache, Caddy), "
                        "whose ready-made configuration keeps the path.",
                        code="proxy_drops_path",
                        params={"url": printable(url, 120), **_path_params(url, path)},
                    ),
                )
                return
        data["pacsbin_proxy"] = {
            "mode": PROXY_MODE_DICOMWEB,
            "forward_qido_url": forward["qido"],
            "forward_wado_url": forward["wado"],
        }
        if origin is not None:
            data["qido_url"] = data["wado_url"] = origin
            self._cross_check(data)

    def _cross_check(self, data: dict[str, Any]) -> None:
        """The model's own rule, as approval will apply it."""
        try:
            data["pacsbin_proxy"] = check_pacsbin_proxy(
                data["cors_mode"],
                data["qido_url"],
                data["wado_url"],
                data["pacsbin_proxy"],
            )
        except ValidationError as exc:
            for field, errors in exc.error_dict.items():
                target = {"qido_url": "proxy_url", "wado_url": "proxy_url"}.get(field)
                self.add_error(target, errors)

    @property
    def error_count(self) -> int:
        return sum(len(errors) for errors in self.errors.values())

    @property
    def honeypot_filled(self) -> bool:
        return bool(self.data.get("leave_blank", "").strip())

    def request_fields(self) -> dict[str, Any]:
        """The cleaned values, named as OnboardingRequest's fields."""
        data = self.cleaned_data
        cors_mode = data["cors_mode"]
        notes = data.get("notes", "")
        if cors_mode == "unsure":
            # Kept as 'direct' (the default) with a note the reviewer sees.
            cors_mode = DicomWebServer.CorsMode.DIRECT
            notes = ("[Contact is unsure how CORS is met.] " + notes).strip()
        return {
            **{name: data[name] for name in OnboardingRequest.LIVE_FIELDS},
            "pacsbin_proxy": data.get("pacsbin_proxy"),
            "contact_name": data["contact_name"].strip(),
            "cors_mode": cors_mode,
            "notes": notes,
        }


class EndDayField(forms.DateField):
    """ "Approved until": an optional last day (ISO 8601, as a browser's date
    input sends it), today at the earliest, expiry.MAX_DAYS ahead at most."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Approved until")
        kwargs.setdefault("input_formats", ["%Y-%m-%d"])
        kwargs.setdefault(
            "widget", forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
        )
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> date | None:
        try:
            return super().to_python(value)
        except ValidationError:
            raise ValidationError(
                "“%(value)s” is not a day: give it as YYYY-MM-DD, e.g. 2027-03-31.",
                code="invalid",
                params={"value": escaped(str(value).strip(), 40)},
            ) from None

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value is not None:
            expiry.check_end_day(value, timezone.localdate())


END_DAY_HELP = (
    "Optional: the last day these accounts may use the archive (the end of "
    "a study, say); the access ends when that day does, and you are told a "
    "week before. Leave empty for no end. At most ten years ahead."
)


class NewServerForm(ServerDetailsForm):
    institution_name = forms.CharField(
        label="Institution",
        max_length=200,
        help_text="Your hospital or organisation, as your radiologists know it.",
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    emails = CappedEmailPasteField(
        label="Approved users' Pacsbin emails",
        required=True,
        error_messages={"required": "Paste at least one Pacsbin account email."},
        help_text="The email addresses of the Pacsbin accounts that may use "
        "this archive: one per line, or separated by commas or semicolons; "
        "a line copied from your mail program (Jane Doe <jane@hospital.org>) "
        "works too. "
        "Duplicates are folded. Only these accounts will see the server. "
        f"At most {MAX_EMAILS:,} per submission.",
    )
    emails_end_on = EndDayField(help_text=END_DAY_HELP)

    field_order = [
        "institution_name",
        "contact_name",
        "contact_email",
        "server_name",
        "archive_speaks",
        "archive_ae_title",
        "archive_host",
        "archive_port",
        "proxy_url",
        "proxy_ae_title",
        "proxy_dimse_port",
        "qido_url",
        "wado_same",
        "wado_url",
        "cors_mode",
        "needs_credentials",
        "edge_enforced",
        "emails",
        "emails_end_on",
        "notes",
        "leave_blank",
    ]

    def clean_institution_name(self) -> str:
        return " ".join(self.cleaned_data["institution_name"].split())

    def request_fields(self) -> dict[str, Any]:
        return {
            **super().request_fields(),
            "institution_name": self.cleaned_data["institution_name"],
            "emails_to_add": self.cleaned_data["emails"],
            "emails_end_on": self.cleaned_data.get("emails_end_on"),
            "emails_to_remove": [],
        }


class UpdateServerForm(ServerDetailsForm):
    emails_to_add = CappedEmailPasteField(
        label="Emails to add",
        help_text="Pacsbin account emails that should get access: one per line, "
        "or separated by commas or semicolons. Leave empty for none.",
    )
    emails_end_on = EndDayField(
        help_text=END_DAY_HELP.replace("these accounts", "the accounts to add")
        + " Accounts already approved that you list get this end too."
    )
    emails_to_remove = CappedEmailPasteField(
        label="Emails to remove",
        help_text="Accounts that should lose access (people who left, for "
        "example). Leave empty for none.",
    )

    field_order = [
        "contact_name",
        "contact_email",
        "server_name",
        "archive_speaks",
        "archive_ae_title",
        "archive_host",
        "archive_port",
        "proxy_url",
        "proxy_ae_title",
        "proxy_dimse_port",
        "qido_url",
        "wado_same",
        "wado_url",
        "cors_mode",
        "needs_credentials",
        "edge_enforced",
        "emails_to_add",
        "emails_end_on",
        "emails_to_remove",
        "notes",
        "leave_blank",
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["contact_email"].help_text = (
            "Where the decision goes once the change is approved. The "
            "confirmation link for this change goes to the contact address "
            "on record."
        )

    @classmethod
    def initial_for(cls, server: DicomWebServer) -> dict[str, Any]:
        initial = {
            **OnboardingRequest.values_describing(server),
            "wado_same": server.wado_url == server.qido_url,
            "archive_speaks": PROXY_MODE_DICOMWEB,
        }
        settings = server.pacsbin_proxy
        if isinstance(settings, dict):
            initial.update(proxy_initial(settings))
            initial["proxy_url"] = server.qido_url
            if settings.get("mode") == PROXY_MODE_DIMSE:
                initial.update(archive_speaks=PROXY_MODE_DIMSE, qido_url="")
                initial["wado_url"] = ""
            else:
                initial["qido_url"] = settings.get("forward_qido_url", "")
                initial["wado_url"] = settings.get("forward_wado_url", "")
                initial["wado_same"] = initial["qido_url"] == initial["wado_url"]
        return initial

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        add = data.get("emails_to_add") or []
        remove = data.get("emails_to_remove") or []
        if len(add) + len(remove) > MAX_EMAILS:
            raise ValidationError(
                f"Together the two lists hold {len(add) + len(remove):,} "
                f"addresses; one change takes at most {MAX_EMAILS:,}."
            )
        both = {email_key(e) for e in add} & {email_key(e) for e in remove}
        if both:
            self.add_error(
                "emails_to_remove",
                "These addresses are in both lists: "
                + ", ".join(sorted(both)[:20])
                + ". Keep each in one list only.",
            )
        return data

    def request_fields(self) -> dict[str, Any]:
        return {
            **super().request_fields(),
            "emails_to_add": self.cleaned_data["emails_to_add"],
            "emails_end_on": self.cleaned_data.get("emails_end_on"),
            "emails_to_remove": self.cleaned_data["emails_to_remove"],
        }


def _path_params(url: str, path: str) -> dict[str, str]:
    """A message's words for a URL whose path Pacsbin's proxy cannot keep:
    the path, and the origin the proxy would ask instead."""
    return {"path": printable(path, 80), "origin": url[: len(url) - len(path)]}


class ProxyUrlsForm(DicomWebUrlsForm):
    """The status page's "Your proxy's URLs": where the reverse proxy the
    contact put in front of the archive answers, given before review."""

    qido_required = "Enter your proxy's QIDO-RS URL."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "proxy")
        super().__init__(*args, **kwargs)
        fields = self.fields
        fields["qido_url"].label = "Your proxy's QIDO-RS URL"
        fields["qido_url"].help_text = (
            "Where your reverse proxy answers searches, for example "
            "https://pacs-proxy.hospital.example/dicomweb (the QIDO URL line "
            "at the top of the configuration you installed)."
        )
        for name in ("qido_url", "wado_url"):
            fields[name].required_in_branch = True  # type: ignore[attr-defined]
        fields["wado_same"].label = "WADO-RS uses the same address"
        fields["wado_url"].label = "Your proxy's WADO-RS URL"
        fields["wado_url"].help_text = "Where your reverse proxy serves images."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        self._clean_archive_urls(data)
        return data
