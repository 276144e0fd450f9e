"""The public pages: the form, the confirmation, the private status page and
the change form reached from it. Thin: guards, a form, one flow call."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from integrations.clientip import client_ip
from integrations.connectivity import proxyconfig, reports, runs
from integrations.models import OnboardingRequest
from integrations.onboarding import abuse, cors, lifecycle, links, status_checks
from integrations.onboarding.forms import (
    NewServerForm,
    ProxyUrlsForm,
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
    return _status_page(request, link, links.request_for_link(link))


def _status_page(
    request: HttpRequest,
    link: str,
    r: OnboardingRequest,
    proxy_form: ProxyUrlsForm | None = None,
    status_code: int = 200,
) -> HttpResponse:
    checked = status_checks.server_for(r)
    archive = status_checks.archive_server_for(r)
    configs, configs_refused = status_checks.fixit_configs(archive)
    takes_proxy_urls = not lifecycle.proxy_urls_refusal(r)
    if proxy_form is None and takes_proxy_urls:
        initial = {"qido_url": r.qido_url, "wado_url": r.wado_url}
        if not r.gave_proxy_urls:
            initial = {}
        proxy_form = ProxyUrlsForm(
            initial={**initial, "wado_same": r.wado_url == r.qido_url}
        )
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
            "archive": archive,
            "page_origin": page_origin,
            "origin_is_exact": status_checks.origin_is_exact(page_origin),
            "uploader_origins": settings.UPLOADER_ORIGINS,
            "registry_origin": settings.REGISTRY_PUBLIC_ORIGIN,
            "checks": status_checks.recent_checks(r),
            "configs": configs,
            "configs_refused": configs_refused,
            "config_origins": proxyconfig.allowed_origins(),
            "pacsbin": status_checks.pacsbin_view(r),
            "proxy_form": proxy_form if takes_proxy_urls else None,
        },
        status=status_code,
    )
    # The browser check fetch()es the archive: its origin, and only it, joins
    # connect-src; the rest of the public pages' policy stays as it is.
    target = abuse.origin_of(checked.qido_url)
    response["Content-Security-Policy"] = abuse.content_security_policy(
        [target] if target else []
    )
    return response


PROXY_URLS_LIMITED = (
    "Too many changes of URLs from your network in the last hour (at most "
    f"{abuse.PROXY_URL_CHANGES_PER_HOUR}); nothing was changed. Please try "
    "again later."
)


@never_cache
@require_POST
def proxy_urls(request: HttpRequest, link: str) -> HttpResponse:
    """ "Your proxy's URLs" on the status page of a request before review:
    the reverse proxy's URLs replace the request's (the archive's are kept for
    the reviewer), then the registry checks them. CSRF-protected like every
    POST; counted before the link is looked at, like the browser check."""
    allowed = abuse.count_proxy_urls(request)
    r = links.request_for_link(link)
    form = ProxyUrlsForm(request.POST)
    if not allowed:
        form.is_valid()  # to show the typed values back
        form.add_error(None, PROXY_URLS_LIMITED)
        return _status_page(request, link, r, form, status_code=429)
    if not form.is_valid():
        return _status_page(request, link, r, form, status_code=400)
    try:
        r = lifecycle.give_proxy_urls(
            r, form.cleaned_data["qido_url"], form.cleaned_data["wado_url"]
        )
    except lifecycle.ReviewError as exc:
        return render(
            request,
            "onboarding/refused.html",
            {
                "title": "URLs not changed",
                "message": exc.message,
                "back_url": reverse(
                    "integrations:onboarding_status", kwargs={"link": link}
                ),
            },
            status=409,
        )
    runs.run_request_check(r)
    url = reverse("integrations:onboarding_status", kwargs={"link": link})
    return redirect(f"{url}#proxy-urls")


@never_cache
@require_http_methods(["GET"])
def mailed_status(request: HttpRequest, link: str) -> HttpResponse:
    """The status link of the confirmation email. Its address may belong to
    anyone (a submitter types it): until that address confirmed, the page
    shows nothing the submitter typed; then it opens the status page."""
    r = links.request_for_mailed_link(link)
    if r.is_address_confirmed:
        return redirect("integrations:onboarding_status", link=links.status_link(r))
    return render(
        request,
        "onboarding/mailed_status.html",
        {
            "title": f"Request {r.reference}",
            "r": r,
            "confirm_hours": settings.ONBOARDING_CONFIRM_HOURS,
        },
    )


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


@never_cache
@require_http_methods(["GET"])
def pacsbin_config_download(request: HttpRequest, link: str) -> HttpResponse:
    """The status page's config.jsonc for Pacsbin's proxy, as a file to save
    beside the proxy (the same text the page shows)."""
    r = links.request_for_link(link)
    pacsbin = status_checks.pacsbin_view(r)
    if pacsbin is None or not pacsbin.config:
        raise Http404("No configuration for Pacsbin's proxy on this request.")
    response = HttpResponse(pacsbin.config, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="config.jsonc"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
