"""Staff single sign-on: OpenID Connect for the admin (mozilla-django-oidc).

On when OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are set. The
provider's endpoints come from its discovery document, fetched when a sign-in
first needs them and remembered for an hour; the protocol itself (state,
nonce, PKCE, the code exchange, the ID token's signature) is the library's.

Who gets in is decided here, in ``sign_in_staff``: the ``email`` claim finds
the account (or creates a staff account), the groups claim sets the account's
Django groups to those of the same names that exist in the registry, and
nobody without one such group gets in. Whatever the provider answers, the
staffer sees a page that says why, never a 500.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.db import DatabaseError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
# A provider that does not answer within this many seconds is reported as
# unreachable instead of holding a worker.
DISCOVERY_TIMEOUT = 5.0
DISCOVERY_MAX_BYTES = 256 * 1024
DISCOVERY_KEEP_SECONDS = 3600
# Token, user info and signing keys: the library's requests calls.
PROVIDER_TIMEOUT = 10
# Group names read from one claim: more is not a staffer's group list.
MAX_GROUP_NAMES = 500


class ProviderError(Exception):
    """The provider cannot be used (unreachable, or an answer that is not
    OpenID Connect); the message says which, for staff and logs."""


class Refused(Exception):
    """The provider vouched for someone who may not enter; the message says
    why."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    signing_algorithm: str
    # client_secret_basic (the default of the specification), else _post.
    basic_auth: bool


def configured() -> bool:
    return bool(settings.OIDC_ISSUER)


def password_form_shown() -> bool:
    return not (configured() and settings.OIDC_ONLY)


def password_login_allowed(user: AbstractBaseUser) -> bool:
    """With single sign-on, a password opens the admin only to a superuser
    (the way back in when the provider is down), and with OIDC_ONLY to nobody."""
    if not configured():
        return True
    return not settings.OIDC_ONLY and bool(getattr(user, "is_superuser", False))


def callback_url(request: HttpRequest) -> str:
    """The redirect URI registered with the provider: the public origin when
    the registry knows it (behind a proxy the request may not)."""
    path = reverse("oidc_authentication_callback")
    if settings.REGISTRY_PUBLIC_ORIGIN:
        return settings.REGISTRY_PUBLIC_ORIGIN + path
    return request.build_absolute_uri(path)


# Discovery -----------------------------------------------------------------

_http = urllib3.PoolManager(num_pools=2)
_known: dict[str, tuple[float, Provider]] = {}
_known_lock = threading.Lock()


def provider() -> Provider:
    """The configured provider's endpoints, from its discovery document
    (remembered for DISCOVERY_KEEP_SECONDS; a failure is never remembered)."""
    issuer = settings.OIDC_ISSUER
    with _known_lock:
        known = _known.get(issuer)
    if known and time.monotonic() - known[0] < DISCOVERY_KEEP_SECONDS:
        return known[1]
    found = provider_from(read_discovery(issuer), issuer)
    with _known_lock:
        _known[issuer] = (time.monotonic(), found)
    return found


def forget_provider() -> None:
    with _known_lock:
        _known.clear()


def read_discovery(issuer: str) -> dict[str, Any]:
    url = issuer + DISCOVERY_PATH
    try:
        response = _http.request(
            "GET",
            url,
            headers={"Accept": "application/json"},
            timeout=urllib3.Timeout(total=DISCOVERY_TIMEOUT),
            retries=False,
            redirect=False,
            preload_content=False,
        )
        try:
            body = response.read(DISCOVERY_MAX_BYTES + 1)
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise ProviderError(
            f"The sign-on provider {issuer} cannot be reached ({type(exc).__name__})."
        ) from None
    if response.status != 200:
        raise ProviderError(
            f"The sign-on provider answered {response.status} to {url}."
        )
    if len(body) > DISCOVERY_MAX_BYTES:
        raise ProviderError(f"The discovery document at {url} is too large.")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProviderError(f"The discovery document at {url} is not JSON.") from None
    if not isinstance(document, dict):
        raise ProviderError(f"The discovery document at {url} is not a JSON object.")
    return document


def _endpoint(document: Mapping[str, Any], name: str, issuer: str) -> str:
    value = document.get(name)
    parts = urlsplit(value) if isinstance(value, str) else None
    # The issuer's own scheme: http only where the issuer is (loopback tests).
    scheme = urlsplit(issuer).scheme
    if parts is None or parts.scheme not in ("https", scheme) or not parts.hostname:
        raise ProviderError(
            f"The provider's discovery document has no usable {name} "
            f"(got {str(value)[:200]!r})."
        )
    return str(value)


def provider_from(document: Mapping[str, Any], issuer: str) -> Provider:
    """The endpoints and choices of a discovery document, checked: the
    issuer it names must be the one configured (OpenID Connect Discovery 4.3)."""
    named = document.get("issuer")
    if not isinstance(named, str) or named.rstrip("/") != issuer:
        raise ProviderError(
            f"The provider's discovery document names the issuer "
            f"{str(named)[:200]!r}, not {issuer!r} (OIDC_ISSUER)."
        )
    algorithms = document.get("id_token_signing_alg_values_supported", ["RS256"])
    if not isinstance(algorithms, list):
        algorithms = []
    # Asymmetric signatures checked with the provider's keys; HS256 (signed
    # with the client secret) only for a provider that offers nothing else.
    usable = [a for a in algorithms if isinstance(a, str) and a[:2] in ("RS", "ES")]
    if "RS256" in usable:
        algorithm = "RS256"
    elif usable:
        algorithm = usable[0]
    elif "HS256" in algorithms:
        algorithm = "HS256"
    else:
        raise ProviderError(
            "The provider signs ID tokens with none of RS*, ES* or HS256 "
            f"(it offers {str(algorithms)[:200]})."
        )
    methods = document.get(
        "token_endpoint_auth_methods_supported", ["client_secret_basic"]
    )
    if not isinstance(methods, list) or not (
        {"client_secret_basic", "client_secret_post"} & set(map(str, methods))
    ):
        raise ProviderError(
            "The provider takes the client secret neither as client_secret_basic "
            f"nor as client_secret_post (it offers {str(methods)[:200]})."
        )
    return Provider(
        issuer=named,
        authorization_endpoint=_endpoint(document, "authorization_endpoint", issuer),
        token_endpoint=_endpoint(document, "token_endpoint", issuer),
        userinfo_endpoint=_endpoint(document, "userinfo_endpoint", issuer),
        jwks_uri=_endpoint(document, "jwks_uri", issuer),
        signing_algorithm=algorithm,
        basic_auth="client_secret_basic" in methods,
    )


# Who gets in ----------------------------------------------------------------


def _group_names(value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return []
    return [name for name in value[:MAX_GROUP_NAMES] if isinstance(name, str)]


@transaction.atomic
def sign_in_staff(claims: Mapping[str, Any]) -> AbstractBaseUser:
    """The staff account for a provider's claims, its groups set to the
    registry's groups named in the groups claim; Refused when there is none.

    An email no account has gets a new staff account (user name = the email,
    no password): a staffer the provider puts in a registry group is who the
    operator meant to let in."""
    User = get_user_model()
    email = claims.get("email")
    longest = User._meta.get_field("username").max_length or 150
    if (
        not isinstance(email, str)
        or "@" not in email
        or email != email.strip()
        or len(email) > longest
    ):
        raise Refused(
            "The sign-on provider sent no usable email claim "
            f"(got {str(email)[:80]!r})."
        )
    if claims.get("email_verified") is False:
        raise Refused(f"The sign-on provider has not verified the address {email}.")
    claim = settings.OIDC_GROUPS_CLAIM
    names = _group_names(claims.get(claim))
    groups = list(Group.objects.filter(name__in=names))
    if not groups:
        sent = ", ".join(names[:10]) or "none"
        raise Refused(
            f"{email} is in no group of this registry (the provider's "
            f"{claim!r} claim names: {sent}). Ask an administrator."
        )
    accounts = list(User.objects.filter(email__iexact=email)[:2])
    if len(accounts) > 1:
        raise Refused(
            f"Several accounts have the address {email}: an administrator must "
            "keep only one."
        )
    if accounts:
        user: Any = accounts[0]
        if not user.is_active:
            raise Refused(f"The account of {email} is deactivated.")
    else:
        if User.objects.filter(username__iexact=email).exists():
            raise Refused(
                f"An account named {email} has another address: an administrator "
                "must correct it."
            )
        user = User(username=email, email=email)
        user.set_unusable_password()
    user.is_staff = True
    user.save()
    user.groups.set(groups)
    logger.info(
        "single sign-on: %s signed in with groups %s",
        email,
        ", ".join(sorted(group.name for group in groups)),
    )
    return user


# mozilla-django-oidc, configured from our settings and the discovery --------

_OUR_SETTINGS = {
    "OIDC_RP_CLIENT_ID": lambda: settings.OIDC_CLIENT_ID,
    "OIDC_RP_CLIENT_SECRET": lambda: settings.OIDC_CLIENT_SECRET,
    "OIDC_RP_SCOPES": lambda: settings.OIDC_SCOPES,
    "OIDC_TIMEOUT": lambda: PROVIDER_TIMEOUT,
    "OIDC_USE_PKCE": lambda: True,
    "OIDC_TOKEN_USE_BASIC_AUTH": lambda: provider().basic_auth,
    # Users are found and created by sign_in_staff alone.
    "OIDC_CREATE_USER": lambda: False,
}


def _library_setting(attr: str, *default: Any) -> Any:
    if attr in _OUR_SETTINGS:
        return _OUR_SETTINGS[attr]()
    return import_from_settings(attr, *default)


class PasswordBackend(ModelBackend):
    """Django's password login, kept for superusers only once single sign-on
    is on, and for nobody with OIDC_ONLY."""

    def user_can_authenticate(self, user: Any) -> bool:
        return super().user_can_authenticate(user) and (
            isinstance(user, AbstractBaseUser) and password_login_allowed(user)
        )


class StaffOIDCBackend(OIDCAuthenticationBackend):
    get_settings = staticmethod(_library_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The library reads the endpoints here; ours come from the discovery
        # document, and Django builds every backend for every login (password
        # ones too), so they are read only when a sign-on callback needs them.
        self.UserModel = get_user_model()

    def authenticate(
        self, request: HttpRequest | None, **kwargs: Any
    ) -> AbstractBaseUser | None:
        # Only the callback view passes a nonce: a password login that
        # carries ?code=&state= in its URL is never a sign-on.
        if request is None or "nonce" not in kwargs or not configured():
            return None
        found = provider()
        self.provider = found
        self.OIDC_OP_TOKEN_ENDPOINT = found.token_endpoint
        self.OIDC_OP_USER_ENDPOINT = found.userinfo_endpoint
        self.OIDC_OP_JWKS_ENDPOINT = found.jwks_uri
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = found.signing_algorithm
        self.OIDC_RP_IDP_SIGN_KEY = None
        user: AbstractBaseUser | None = super().authenticate(request, **kwargs)
        return user

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        payload["redirect_uri"] = callback_url(self.request)
        answer = super().get_token(payload)
        if not isinstance(answer, dict) or not isinstance(answer.get("id_token"), str):
            raise ProviderError("The provider's token answer holds no ID token.")
        return answer

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        claims = super().verify_token(token, **kwargs)
        if not isinstance(claims, dict):
            raise SuspiciousOperation("The ID token holds no claims.")
        # The library leaves the audience and issuer unchecked.
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if settings.OIDC_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token is for another client.")
        if claims.get("iss") != self.provider.issuer:
            raise SuspiciousOperation("The ID token is from another issuer.")
        return claims

    def get_userinfo(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """The ID token's claims and the user info endpoint's together (some
        providers put the groups in only one of them)."""
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if not isinstance(userinfo, dict):
            raise ProviderError("The provider's user info is not a JSON object.")
        if userinfo.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("The user info is about someone else.")
        return {**payload, **userinfo}

    def get_or_create_user(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> AbstractBaseUser | None:
        claims = self.get_userinfo(access_token, id_token, payload)
        try:
            return sign_in_staff(claims)
        except Refused as refusal:
            logger.warning("single sign-on refused: %s", refusal)
            self.request.sso_refusal = str(refusal)
            return None


# Views ------------------------------------------------------------------------


def refusal(request: HttpRequest, message: str, status: int) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Single sign-on refused",
        # Nobody signed in here: the admin's sidebar would only say so.
        "is_nav_sidebar_enabled": False,
        "message": message,
    }
    return render(request, "admin/sso_refused.html", context, status=status)


class StartView(OIDCAuthenticationRequestView):
    """``/oidc/authenticate/``: off to the provider's login page."""

    get_settings = staticmethod(_library_setting)

    def __init__(self, **kwargs: Any) -> None:
        # Not the library's __init__: it reads the endpoint before get() can
        # answer an unreachable provider with a page.
        View.__init__(self, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not configured():
            raise Http404("Single sign-on is not configured.")
        try:
            found = provider()
        except ProviderError as exc:
            logger.warning("single sign-on unavailable: %s", exc)
            return refusal(request, str(exc), 502)
        self.OIDC_OP_AUTH_ENDPOINT = found.authorization_endpoint
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        response: HttpResponse = super().get(request)
        return response

    def get_extra_params(self, request: HttpRequest) -> dict[str, str]:
        return {"redirect_uri": callback_url(request)}


class CallbackView(OIDCAuthenticationCallbackView):
    """``/oidc/callback/``: where the provider sends the staffer back."""

    get_settings = staticmethod(_library_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not configured():
            raise Http404("Single sign-on is not configured.")
        try:
            response: HttpResponse = super().get(request)
        except ProviderError as exc:
            logger.warning("single sign-on failed: %s", exc)
            return refusal(request, str(exc), 502)
        except SuspiciousOperation as exc:
            logger.warning("single sign-on failed: %s", exc)
            return refusal(
                request,
                "This sign-in could not be verified (it may be stale or already "
                "used): start again from the login page.",
                400,
            )
        except DatabaseError:
            raise
        except Exception as exc:  # whatever a broken provider answers
            logger.warning("single sign-on failed", exc_info=True)
            return refusal(
                request,
                f"The sign-on provider's answer could not be used "
                f"({type(exc).__name__}).",
                502,
            )
        return response

    def login_failure(self) -> HttpResponse:
        request = self.request
        error = request.GET.get("error")
        if error:
            detail = request.GET.get("error_description", "")
            message = f"The sign-on provider answered {error[:100]!r}"
            message += f": {detail[:300]}" if detail else "."
        else:
            message = getattr(request, "sso_refusal", None) or (
                "Sign-in was not completed: start again from the login page."
            )
        return refusal(request, message, 403)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login page with the single sign-on button; its password
    form only while password login is allowed."""
    shown = password_form_shown()
    if request.method == "POST" and not shown:
        return refusal(
            request,
            "Password login is off (OIDC_ONLY=1): sign in with single sign-on.",
            403,
        )
    start = reverse("oidc_authentication_init")
    next_page = request.GET.get("next")
    if next_page:
        start += "?" + urlencode({"next": next_page})
    context = {
        "sso_configured": configured(),
        "sso_start": start,
        "password_form": shown,
    }
    response: HttpResponse = admin.site.login(request, extra_context=context)
    return response
