"""The public pages: the form, the confirmation, the private status page and
the change form reached from it. Thin: guards, a form, one flow call."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from integrations.clientip import client_ip
from integrations.connectivity import proxyconfig, reports
from integrations.models import OnboardingRequest
from integrations.onboarding import abuse, cors, lifecycle, links, status_checks
from integrations.onboarding.forms import (
    NewServerForm,
    ServerDetailsForm,
    UpdateServerForm,
)
from integrations.publicurls import public_origin

RATE_LIMITED = (
    "Too many submissions from your network in the last hour. Nothing was "
    "lost: what you typed is still below. Please try again later, or write "
    "to us if you need to send more."
)


def site_url(request: HttpRequest) -> str:
    """The base of links in emails: REGISTRY_PUBLIC_ORIGIN (the request's
    host only in the debug demo, see ``publicurls``)."""
    return public_origin(request)


def _refused(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "onboarding/refused.html",
        {
            "title": "Submission not accepted",
            "message": "This submission could not be accepted. If you are a "
            "person filling in the form, please reload the page and try again.",
        },
        status=400,
    )


def _submit(
    request: HttpRequest,
    form: ServerDetailsForm,
    context: dict[str, Any],
    **submit_kwargs: Any,
) -> HttpResponse:
    """The guards, then the form, then one flow call; the form is shown again
    with what was typed whenever the submission is not stored."""
    if not abuse.count_submission(request):
        form.is_valid()  # to show the typed values back
        form.add_error(None, RATE_LIMITED)
        return render(request, "onboarding/form.html", context, status=429)
    if form.honeypot_filled:
        return _refused(request)
    if not form.is_valid():
        return render(request, "onboarding/form.html", context, status=400)
    created = lifecycle.submit_request(
        form.request_fields(),
        client_address=client_ip(request),
        site_url=site_url(request),
        **submit_kwargs,
    )
    return redirect(
        "integrations:onboarding_submitted", link=links.status_link(created)
    )


@never_cache
@require_http_methods(["GET", "POST"])
def new_request(request: HttpRequest) -> HttpResponse:
    form = NewServerForm(request.POST if request.method == "POST" else None)
    context = {"form": form, "title": "Connect your archive to Pacsbin"}
    if request.method == "POST":
        return _submit(request, form, context)
    return render(request, "onboarding/form.html", context)


@never_cache
def submitted(request: HttpRequest, link: str) -> HttpResponse:
    onboarding_request = links.request_for_link(link)
    # Shown to this visitor on the host they came to (mail uses publicurls).
    status_url = request.build_absolute_uri(
        reverse("integrations:onboarding_status", kwargs={"link": link})
    )
    return render(
        request,
        "onboarding/submitted.html",
        {
            "title": "Check your mailbox",
            "r": onboarding_request,
            "link": link,
            "status_url": status_url,
            "confirm_hours": settings.ONBOARDING_CONFIRM_HOURS,
        },
    )


def _link_expired(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "onboarding/refused.html",
        {
            "title": "This link has expired",
            "message": "This confirmation link is more than "
            f"{settings.ONBOARDING_CONFIRM_HOURS} hours old, so it no longer "
            "works and the request it was for has expired unreviewed. Please "
            "send the request again.",
        },
        status=410,
    )


@never_cache
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, link: str) -> HttpResponse:
    """The link emailed to the confirmation address. GET only shows what is
    confirmed and a button: mail scanners open links on their own, and must
    not confirm anything. The POST (CSRF-protected) confirms."""
    return _confirm(request, link, lifecycle.Confirming.ADDRESS)


@never_cache
@require_http_methods(["GET", "POST"])
def confirm_contact(request: HttpRequest, link: str) -> HttpResponse:
    """The link emailed to the new contact address a confirmed change names;
    as harmless to open as ``confirm``."""
    return _confirm(request, link, lifecycle.Confirming.NEW_CONTACT)


def _confirm(request: HttpRequest, link: str, via: str) -> HttpResponse:
    new_contact = via == lifecycle.Confirming.NEW_CONTACT
    try:
        r = (
            links.request_for_new_contact_link(link)
            if new_contact
            else links.request_for_confirmation_link(link)
        )
    except links.LinkExpired:
        return _link_expired(request)
    error = ""
    if request.method == "POST" and not r.is_confirmed:
        try:
            lifecycle.confirm_request(r, site_url(request), via)
        except lifecycle.ConfirmationError as exc:
            error = exc.message
    elif not r.is_confirmed and r.confirmation_expired:
        error = lifecycle.expired_message(r)
    if error:
        return render(
            request,
            "onboarding/refused.html",
            {"title": "This request has expired", "message": error},
            status=410,
        )
    done = r.new_contact_confirmed_at if new_contact else r.address_confirmed_at
    is_update = r.kind == OnboardingRequest.Kind.UPDATE
    return render(
        request,
        "onboarding/confirm.html",
        {
            "title": f"Request {r.reference} is confirmed"
            if done
            else f"Confirm request {r.reference}",
            "r": r,
            "done": done,
            "new_contact": new_contact,
            # A change is shown before its button (what a new request says
            # stays off this page: its link may reach anyone).
            "summary": lifecycle.change_summary(r) if is_update else None,
            "status_url": reverse(
                "integrations:onboarding_status",
                kwargs={"link": links.status_link(r)},
            ),
        },
    )


@never_cache
@require_POST
def resend_confirmation(request: HttpRequest, link: str) -> HttpResponse:
    # Counted before the link is looked at, like the browser check.
    if not abuse.count_confirmation_resend(request):
        message = (
            "Too many confirmation emails asked for from your network in the "
            "last hour; please try again later."
        )
        status_code = 429
    else:
        r = links.request_for_link(link)
        try:
            lifecycle.resend_confirmation(r, site_url(request))
        except lifecycle.ConfirmationError as exc:
            message, status_code = exc.message, 409
        else:
            message, status_code = "", 200
    if status_code != 200:
        return render(
            request,
            "onboarding/refused.html",
            {
                "title": "Not sent again",
                "message": message,
                "back_url": reverse(
                    "integrations:onboarding_status", kwargs={"link": link}
                ),
            },
            status=status_code,
        )
    return redirect("integrations:onboarding_submitted", link=link)


@never_cache
def status(request: HttpRequest, link: str) -> HttpResponse:
    onboarding_request = links.request_for_link(link)
    r = onboarding_request
    checked = status_checks.server_for(r)
    configs, configs_refused = status_checks.fixit_configs(checked)
    # What a browser on this page will send as Origin (a GET carries none).
    page_origin = f"{request.scheme}://{request.get_host()}"
    response = render(
        request,
        "onboarding/status.html",
        {
            "title": f"Request {r.reference}",
            "r": r,
            "link": link,
            "guidance": cors.guidance_for(r.cors_mode, r.needs_credentials),
            "can_update": r.server_id is not None,
            "updates": r.updates.order_by("-created_at")[:20],
            "checked": checked,
            "page_origin": page_origin,
            "origin_is_exact": status_checks.origin_is_exact(page_origin),
            "uploader_origins": settings.UPLOADER_ORIGINS,
            "registry_origin": settings.REGISTRY_PUBLIC_ORIGIN,
            "checks": status_checks.recent_checks(r),
            "configs": configs,
            "configs_refused": configs_refused,
            "config_origins": proxyconfig.allowed_origins(),
            "pacsbin": status_checks.pacsbin_view(r),
        },
    )
    # The browser check fetch()es the archive: its origin, and only it, joins
    # connect-src; the rest of the public pages' policy stays as it is.
    archive = abuse.origin_of(checked.qido_url)
    response["Content-Security-Policy"] = abuse.content_security_policy(
        [archive] if archive else []
    )
    return response


@never_cache
@require_POST
def browser_check(request: HttpRequest, link: str) -> HttpResponse:
    """Record what the contact's browser saw (CSRF-protected like every POST)."""
    # Counted before the link is looked at: a flood of bad links costs the
    # same as a flood of good ones.
    if not abuse.count_browser_check(request):
        return JsonResponse(
            {
                "detail": "Too many checks from your network in the last hour "
                f"(at most {abuse.BROWSER_CHECKS_PER_HOUR}); please try later."
            },
            status=429,
        )
    r = links.request_for_link(link)
    return reports.record_from_request(
        request,
        server=status_checks.live_server(r),
        onboarding_request=r,
        user=request.user,
    )


@never_cache
@require_http_methods(["GET", "POST"])
def update_request(request: HttpRequest, link: str) -> HttpResponse:
    origin = links.request_for_link(link)
    server = origin.server
    if server is None:
        return render(
            request,
            "onboarding/refused.html",
            {
                "title": "Not yet possible",
                "message": "Changes can be sent once this request has been "
                "approved and the server exists in the registry.",
                "back_url": reverse(
                    "integrations:onboarding_status", kwargs={"link": link}
                ),
            },
            status=409,
        )
    if request.method == "POST":
        form = UpdateServerForm(request.POST)
    else:
        form = UpdateServerForm(initial=UpdateServerForm.initial_for(server))
    context = {
        "form": form,
        "title": f"Change “{server.name}”",
        "r": origin,
        "server": server,
        "link": link,
        "is_update": True,
    }
    if request.method == "POST":
        return _submit(request, form, context, server=server, submitted_from=origin)
    return render(request, "onboarding/form.html", context)
