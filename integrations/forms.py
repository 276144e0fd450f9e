"""Forms shared by the admin (and, later, the public pages)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from integrations.models import DicomWebServer
from integrations.validators import parse_email_list

PASTE_HELP = (
    "One address per line, or separated by commas or semicolons. Duplicates are "
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


class DicomWebServerAdminForm(forms.ModelForm):
    add_emails = EmailPasteField(label="Approve emails")

    class Meta:
        model = DicomWebServer
        fields = ["institution", *DicomWebServer.EDITABLE_FIELDS]
        widgets = {
            "qido_url": forms.URLInput(attrs={"size": 80}),
            "wado_url": forms.URLInput(attrs={"size": 80}),
        }


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


class AccessLookupForm(forms.Form):
    email = forms.CharField(label="Email", max_length=320)

    def clean_email(self) -> str:
        from integrations.validators import normalize_email

        return normalize_email(self.cleaned_data["email"])
