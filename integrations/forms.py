"""Forms shared by the admin (and, later, the public pages)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import escape, format_html

from integrations.expiry import MAX_DAYS, Expiry
from integrations.models import ApiKey, ApprovedUser, DicomWebServer
from integrations.validators import (
    PROXY_KEYS,
    PROXY_MODE_DICOMWEB,
    PROXY_MODE_DIMSE,
    normalize_pacsbin_proxy,
    parse_email_list,
)

# Escaped once here: the admin renders help texts as HTML, where a bare
# "<address>" is a tag that eats the words after it.
PASTE_HELP = escape(
    "One address per line, or separated by commas or semicolons; Name <address> "
    "as mail programs copy it works too. Duplicates are "
    "folded and already-approved addresses are reported. If any line is bad, "
    "nothing is added and every bad line is listed."
)


class EmailPasteField(forms.CharField):
    """A textarea of pasted emails, cleaned to a list of normalised addresses."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", PASTE_HELP)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 6, "cols": 60}))
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def to_python(self, value: object) -> list[str]:  # type: ignore[override]
        text = super().to_python(value)  # "" (empty_value) when empty, never None
        parsed = parse_email_list(text or "")
        if parsed.errors:
            raise ValidationError(
                [ValidationError(message) for message in parsed.error_messages()]
            )
        return parsed.emails


# The settings of Pacsbin's proxy as one input each (never a raw JSON box):
# the form field of each key of validators.PROXY_KEYS.
PROXY_FIELDS = {
    "mode": "proxy_mode",
    "archive_ae_title": "archive_ae_title",
    "archive_host": "archive_host",
    "archive_port": "archive_port",
    "proxy_ae_title": "proxy_ae_title",
    "proxy_dimse_port": "proxy_dimse_port",
    "forward_qido_url": "forward_qido_url",
    "forward_wado_url": "forward_wado_url",
}


def _text(label: str, help_text: str, size: int = 20, **attrs: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=2000,
        help_text=help_text,
        widget=forms.TextInput(attrs={"size": size, "spellcheck": "false", **attrs}),
    )


class ProxyFieldsForm(forms.Form):
    """The per-setting inputs, all optional: which are needed depends on the
    mode, and the one rule (normalize_pacsbin_proxy) says so by name. Mixed
    into the admin's server form and the public onboarding forms."""

    proxy_mode = forms.ChoiceField(
        label="Proxy mode",
        required=False,
        choices=[
            ("", "— (not behind Pacsbin's proxy)"),
            (PROXY_MODE_DIMSE, "dimse: the archive speaks only DIMSE"),
            (
                PROXY_MODE_DICOMWEB,
                "dicomweb: forwards to the archive's DICOMweb (root at /)",
            ),
        ],
        help_text="Only when CORS is met by Pacsbin's proxy; then required.",
    )
    archive_ae_title = _text(
        "Archive AE title", "dimse: the archive's AE title, e.g. PACS_SERVER."
    )
    archive_host = _text(
        "Archive host", "dimse: the archive's host name or IP address.", 40
    )
    archive_port = _text(
        "Archive DIMSE port",
        "dimse: the archive's DICOM port (1-65535), e.g. 11112.",
        8,
        inputmode="numeric",
    )
    proxy_ae_title = _text(
        "Proxy AE title",
        "dimse: the proxy's own AE title, which the archive must know, "
        "e.g. PACSBIN_PROXY.",
    )
    proxy_dimse_port = _text(
        "Proxy DIMSE port",
        "dimse: the proxy's DICOM port (for C-MOVE answers), e.g. 8888.",
        8,
        inputmode="numeric",
    )
    forward_qido_url = _text(
        "Forwarding QIDO URL",
        "dicomweb: the archive's own DICOMweb URL the proxy forwards to.",
        80,
    )
    forward_wado_url = _text(
        "Forwarding WADO URL",
        "dicomweb: the archive's own WADO URL (often the same).",
        80,
    )


def proxy_initial(settings: Any) -> dict[str, Any]:
    """A stored pacsbin_proxy as the inputs' initial values."""
    if not isinstance(settings, dict):
        return {}
    return {
        PROXY_FIELDS[key]: value
        for key, value in settings.items()
        if key in PROXY_FIELDS
    }


def compose_proxy(form: forms.BaseForm, *, wanted: bool) -> dict[str, Any] | None:
    """The proxy settings the inputs describe, normalised by the one rule,
    errors put under the input they are about; None when not ``wanted`` (a
    server not behind the proxy keeps none) or an input is wrong."""
    data = form.cleaned_data
    mode = data.get("proxy_mode") or ""
    if not wanted:
        return None
    if not mode:
        form.add_error(
            "proxy_mode",
            ValidationError(
                "Choose how Pacsbin's proxy reaches the archive: dimse or dicomweb.",
                code="required",
            ),
        )
        return None
    settings: dict[str, Any] = {"mode": mode}
    for key in PROXY_KEYS.get(mode, ())[1:]:
        value = data.get(PROXY_FIELDS[key])
        settings[key] = value.strip() if isinstance(value, str) else value
    try:
        return normalize_pacsbin_proxy(settings)
    except ValidationError as exc:
        for key, errors in exc.error_dict.items():
            form.add_error(PROXY_FIELDS.get(key), errors)
        return None


# The paste box's "Access lasts" choices: days, or "" for no end.
ACCESS_LASTS_CHOICES = [
    ("", "No end"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "365 days"),
]


class ApproveBox(forms.Textarea):
    """The paste box with a Save of its own beside it, so approving never
    needs the page's Save at the bottom. It saves the whole form and comes
    back to the server's page (the admin's "Save and continue editing")."""

    def render(
        self, name: str, value: Any, attrs: Any = None, renderer: Any = None
    ) -> Any:
        return format_html(
            '<div class="pi-approve-box" id="approve">{}'
            '<button type="submit" name="_continue" '
            'class="button default pi-approve-save">'
            "Save and approve</button></div>",
            super().render(name, value, attrs, renderer),
        )


class DicomWebServerAdminForm(ProxyFieldsForm, forms.ModelForm):
    add_emails = EmailPasteField(
        label="Approve emails", widget=ApproveBox(attrs={"rows": 5, "cols": 60})
    )
    access_lasts = forms.TypedChoiceField(
        label="Access lasts",
        choices=ACCESS_LASTS_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
        help_text="For the emails pasted below, the new ones and those already "
        "approved alike (their end is replaced: “No end” makes it permanent). "
        "Staff and the institution's contact are told a week before it ends.",
    )

    def access_expiry(self) -> Expiry:
        """The end the paste box gives every email in it."""
        days = self.cleaned_data.get("access_lasts")
        return Expiry(timezone.now() + timedelta(days=days) if days else None)

    class Meta:
        model = DicomWebServer
        fields = [
            "institution",
            *(f for f in DicomWebServer.EDITABLE_FIELDS if f != "pacsbin_proxy"),
        ]
        widgets = {
            "qido_url": forms.URLInput(attrs={"size": 80}),
            "wado_url": forms.URLInput(attrs={"size": 80}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            for name, value in proxy_initial(self.instance.pacsbin_proxy).items():
                self.initial.setdefault(name, value)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        wanted = data.get("cors_mode") == DicomWebServer.CorsMode.DIMSE_PROXY
        # Set before the model's clean(), which checks it with the URLs.
        self.instance.pacsbin_proxy = compose_proxy(self, wanted=wanted)
        return data

    def _update_errors(self, errors: ValidationError) -> None:
        # The model names its JSON field; this form shows it as inputs.
        if hasattr(errors, "error_dict") and "pacsbin_proxy" in errors.error_dict:
            moved = errors.error_dict.pop("pacsbin_proxy")
            errors.error_dict.setdefault("proxy_mode", []).extend(moved)
        super()._update_errors(errors)  # type: ignore[misc]


class InlineConstraintsForm(forms.ModelForm):
    """An inline's form that also checks the model's constraints on the
    parent's key. Django leaves an inline's key out of ``full_clean()`` (the
    parent may not exist yet) and puts it back for unique fields only, not for
    constraints such as a server name unique within its institution."""

    def validate_unique(self) -> None:
        super().validate_unique()
        try:
            self.instance.validate_constraints(
                # Private ModelForm API, not in django-stubs.
                exclude=self._get_validation_exclusions()  # type: ignore[attr-defined]
            )
        except ValidationError as exc:
            self._update_errors(exc)  # type: ignore[attr-defined]


class DicomWebServerInlineForm(InlineConstraintsForm):
    """A server in its institution's page: no inputs for Pacsbin's proxy
    there, so moving it off the proxy clears them (as the API does), and
    moving it onto the proxy is refused with a pointer to the server's page
    (never a 500 for an error about a field the row does not show)."""

    def clean(self) -> dict[str, Any]:
        super().clean()
        if self.cleaned_data.get("cors_mode") != DicomWebServer.CorsMode.DIMSE_PROXY:
            self.instance.pacsbin_proxy = None
        return self.cleaned_data

    def _update_errors(self, errors: ValidationError) -> None:
        if hasattr(errors, "error_dict") and "pacsbin_proxy" in errors.error_dict:
            moved = errors.error_dict.pop("pacsbin_proxy")
            errors.error_dict.setdefault("cors_mode", []).extend(
                [
                    *moved,
                    ValidationError(
                        "Give Pacsbin's proxy settings on the server's own page."
                    ),
                ]
            )
        super()._update_errors(errors)  # type: ignore[misc]


class ApprovedUserAdminForm(forms.ModelForm):
    """One approval's page: its end may be changed (or emptied: no end)."""

    class Meta:
        model = ApprovedUser
        fields = ["server", "email", "expires_at"]

    def clean_expires_at(self) -> Any:
        at = self.cleaned_data.get("expires_at")
        if at is None or "expires_at" not in self.changed_data:
            return at
        if at <= timezone.now():
            raise ValidationError(
                "%(value)s is in the past: give a later end, or delete the "
                "approval to end it now.",
                params={"value": f"{at:%Y-%m-%d %H:%M}"},
            )
        if at > timezone.now() + timedelta(days=MAX_DAYS):
            raise ValidationError(
                "%(value)s is more than %(max)s days away.",
                params={"value": f"{at:%Y-%m-%d %H:%M}", "max": MAX_DAYS},
            )
        return at


class AccessLookupForm(forms.Form):
    email = forms.CharField(label="Email", max_length=320)

    def clean_email(self) -> str:
        from integrations.validators import normalize_email

        return normalize_email(self.cleaned_data["email"])


class ApiKeyAdminForm(forms.ModelForm):
    """An API key's add and change form. Creating a key, or raising its
    scope, needs every permission the scope grants: a staffer holding only
    "add API key" must not mint a key that does what they may not do by hand.
    The admin sets ``granting_user`` to the staffer filling the form."""

    granting_user: Any = None

    class Meta:
        model = ApiKey
        fields = ["name", "scope", "expires_at"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        scope = cleaned.get("scope")
        old = self.instance.scope if self.instance.pk else None
        if scope and ApiKey.raises_scope(old, scope):
            if self.granting_user is None:
                raise ValidationError("Nobody to check the scope's permissions for.")
            try:
                ApiKey.check_may_grant(self.granting_user, scope)
            except ValidationError as exc:
                self.add_error("scope", exc)
        return cleaned
