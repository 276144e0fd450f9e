"""System checks for misconfiguration, with stable ids."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register()
def check_uploader_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.DEBUG and not settings.UPLOADER_ORIGINS:
        problems.append(
            Error(
                "UPLOADER_ORIGINS is empty: no browser may call the access API.",
                hint="Set UPLOADER_ORIGINS=https://pacsbin.com (comma-separated).",
                id="integrations.E001",
            )
        )
    plain_http = any(o.startswith("http://") for o in settings.UPLOADER_ORIGINS)
    if plain_http and not settings.DEBUG:
        problems.append(
            Warning(
                "UPLOADER_ORIGINS contains a plain http:// origin.",
                hint="The uploader is served over HTTPS; list https:// origins.",
                id="integrations.W001",
            )
        )
    secret = settings.UPLOADER_JWT_SECRET
    if secret and len(secret) < 32:
        problems.append(
            Error(
                "UPLOADER_JWT_SECRET is shorter than 32 characters.",
                hint="HS256 needs a long random secret shared with the uploader.",
                id="integrations.E002",
            )
        )
    return problems


# /metrics tells whoever holds the token which archives exist and which are
# down; with failed attempts limited per client, a token this long is out of
# reach of guessing.
METRICS_TOKEN_MIN_LENGTH = 32


@register()
def check_metrics_token(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    token = settings.METRICS_TOKEN
    if token and len(token) < METRICS_TOKEN_MIN_LENGTH:
        return [
            Error(
                f"METRICS_TOKEN is {len(token)} characters long; it must be at "
                f"least {METRICS_TOKEN_MIN_LENGTH}.",
                hint="Use a long random token, e.g. the output of "
                "`openssl rand -hex 32`, and give Prometheus the same one.",
                id="integrations.E020",
            )
        ]
    return []


@register()
def check_onboarding_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from django.core.exceptions import ValidationError

    from integrations.validators import normalize_email

    problems: list[Any] = []
    for address in settings.ONBOARDING_NOTIFY_EMAILS:
        try:
            normalize_email(address)
        except ValidationError as exc:
            problems.append(
                Error(
                    f"ONBOARDING_NOTIFY_EMAILS: {exc.messages[0]}",
                    hint="A comma-separated list of staff email addresses.",
                    id="integrations.E010",
                )
            )
    return problems


COLLECTSTATIC_MISSING = (
    "The static files manifest is missing: with debug off every HTML page "
    "would be a 500 (its stylesheets have no hashed name). Run "
    "`python manage.py collectstatic --no-input` before serving."
)


def static_manifest_missing() -> bool:
    """True when the hashed-name storage is in use (debug off,
    DJANGO_STATIC_MANIFEST on) and ``collectstatic`` has not written its
    manifest: every page that names a static file would fail."""
    from django.contrib.staticfiles.storage import ManifestFilesMixin
    from django.core.files.storage import storages

    storage = storages["staticfiles"]
    if not isinstance(storage, ManifestFilesMixin):
        return False
    return storage.read_manifest() is None


# Deploy only: `migrate` runs the ordinary checks, and comes before
# collectstatic in the production steps. The WSGI application refuses to
# start on the same test (pacsbin_integrations/wsgi.py).
@register(Tags.staticfiles, deploy=True)
def check_static_manifest(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    if not static_manifest_missing():
        return []
    return [
        Error(
            COLLECTSTATIC_MISSING,
            hint="Run manage.py collectstatic --no-input.",
            id="integrations.E021",
        )
    ]


@register(Tags.database)
def check_stored_urls(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[Any]:
    """Rows stored before the URL rule that break it: their fix-it
    configurations are refused until they are corrected. A database check:
    ``manage.py check --database default`` (and ``migrate``) run it."""
    if not databases or "default" not in databases:
        return []
    from django.db import DatabaseError, connection

    from integrations.models import DicomWebServer, OnboardingRequest

    # ``migrate`` runs database checks before it migrates: on a fresh database
    # the tables are not there yet, and there is nothing to report.
    wanted = {DicomWebServer._meta.db_table, OnboardingRequest._meta.db_table}
    try:
        if not wanted <= set(connection.introspection.table_names()):
            return []
    except DatabaseError:
        return []
    servers = DicomWebServer.objects.order_by("pk")
    requests = OnboardingRequest.objects.filter(
        status=OnboardingRequest.Status.SUBMITTED
    ).order_by("pk")
    return [
        *_bad_urls(
            servers.values_list("pk", "pk", "qido_url", "wado_url"),
            "DICOMweb server {}",
            "Correct it in the admin or through the API; its proxy "
            "configurations are refused until then.",
            "DicomWebServer",
            "integrations.W002",
        ),
        *_bad_urls(
            requests.values_list("pk", "reference", "qido_url", "wado_url"),
            "Onboarding request {} (id {})",
            "Reject it and ask the contact to send it again with a corrected URL.",
            "OnboardingRequest",
            "integrations.W003",
        ),
        *_unproxied_servers(),
    ]


def _unproxied_servers() -> list[Warning]:
    """Servers whose Pacsbin's proxy settings break the rule: above all rows
    marked "dimse_proxy" before the settings existed (then the mode meant the
    proxy's dicomweb mode, with the archive's own URLs). Their config.jsonc is
    refused until a staffer gives the settings and the proxy's URLs."""
    from django.core.exceptions import ValidationError
    from django.db.models import Q

    from integrations.models import DicomWebServer, check_pacsbin_proxy

    rows = DicomWebServer.objects.filter(
        Q(cors_mode=DicomWebServer.CorsMode.DIMSE_PROXY)
        | Q(pacsbin_proxy__isnull=False)
    ).order_by("pk")
    problems = []
    for pk, name, cors_mode, qido, wado, proxy in rows.values_list(
        "pk", "name", "cors_mode", "qido_url", "wado_url", "pacsbin_proxy"
    ).iterator():
        try:
            check_pacsbin_proxy(cors_mode, qido, wado, proxy)
        except ValidationError as exc:
            problems.append(
                Warning(
                    f"DICOMweb server {pk} ({name}): " + " ".join(exc.messages),
                    hint="Give Pacsbin's proxy settings (the server's admin page, "
                    "section “Pacsbin's proxy”) and the proxy's public origin as "
                    "QIDO and WADO URL, or choose another way CORS is met.",
                    obj=f"DicomWebServer {pk}",
                    id="integrations.W004",
                )
            )
    return problems


def _bad_urls(
    rows: Any, label: str, hint: str, model: str, check_id: str
) -> list[Warning]:
    """A warning for each stored URL in ``rows`` (pk, name, qido, wado) that
    breaks the URL rule."""
    from integrations.validators import dicomweb_url_problem

    problems = []
    for pk, name, *urls in rows.iterator():
        for field, url in zip(("qido_url", "wado_url"), urls, strict=True):
            problem = dicomweb_url_problem(url)
            if problem:
                problems.append(
                    Warning(
                        f"{label.format(name, pk)}, {field}: {problem}",
                        hint=hint,
                        obj=f"{model} {pk}",
                        id=check_id,
                    )
                )
    return problems
