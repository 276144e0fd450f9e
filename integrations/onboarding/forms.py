"""The public forms. Every value goes through the registry's own validators
(``normalize_dicomweb_url``, ``normalize_email``, ``parse_email_list``), so a
submission that passes here also passes the admin and the API."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from integrations.forms import EmailPasteField
from integrations.models import DicomWebServer, OnboardingRequest
from integrations.onboarding.abuse import MAX_EMAILS
from integrations.validators import (
    count_email_entries,
    email_key,
    normalize_dicomweb_url,
    normalize_email,
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
        'We use Pacsbin\'s DIMSE proxy with "proxyMode": "dicomweb"',
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


class ServerDetailsForm(forms.Form):
    """The fields a new server and a change to one have in common."""

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
    qido_url = forms.CharField(
        label="QIDO-RS URL (search)",
        max_length=2000,
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
    cors_mode = forms.ChoiceField(
        label="How will the browser be allowed to read from the archive?",
        choices=CORS_CHOICES,
        initial=DicomWebServer.CorsMode.DIRECT,
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

    def clean_qido_url(self) -> str:
        return normalize_dicomweb_url(self.cleaned_data["qido_url"])

    def clean_server_name(self) -> str:
        return " ".join(self.cleaned_data["server_name"].split())

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what Form.clean() answers, never None
        if data.get("wado_same"):
            if "qido_url" in data:
                data["wado_url"] = data["qido_url"]
        else:
            raw = data.get("wado_url", "")
            if not raw.strip():
                self.add_error(
                    "wado_url",
                    ValidationError(
                        "Enter the WADO-RS URL, or tick “same address as QIDO-RS”.",
                        code="required",
                    ),
                )
                return data
            try:
                data["wado_url"] = normalize_dicomweb_url(raw)
            except ValidationError as exc:
                self.add_error("wado_url", exc)
        return data

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
            "contact_name": data["contact_name"].strip(),
            "cors_mode": cors_mode,
            "notes": notes,
        }


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
        "this archive: one per line, or separated by commas or semicolons. "
        "Duplicates are folded. Only these accounts will see the server. "
        f"At most {MAX_EMAILS:,} per submission.",
    )

    field_order = [
        "institution_name",
        "contact_name",
        "contact_email",
        "server_name",
        "qido_url",
        "wado_same",
        "wado_url",
        "cors_mode",
        "needs_credentials",
        "emails",
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
            "emails_to_remove": [],
        }


class UpdateServerForm(ServerDetailsForm):
    emails_to_add = CappedEmailPasteField(
        label="Emails to add",
        help_text="Pacsbin account emails that should get access: one per line, "
        "or separated by commas or semicolons. Leave empty for none.",
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
        "qido_url",
        "wado_same",
        "wado_url",
        "cors_mode",
        "needs_credentials",
        "emails_to_add",
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
        return {
            **OnboardingRequest.values_describing(server),
            "wado_same": server.wado_url == server.qido_url,
        }

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
            "emails_to_remove": self.cleaned_data["emails_to_remove"],
        }
