"""Settings for Pacsbin Integrations, read from the environment.

Every variable is listed in README.md ("Configuration"); the names are a contract
with operators. Defaults are safe: debug off, SQLite for one machine, HTTPS on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured, ValidationError

from integrations.validators import (
    normalize_email,
    normalize_origin,
    signing_key_problem,
)
from pacsbin_integrations.env import Env

env = Env()
BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env.bool("DJANGO_DEBUG", False)
SECRET_KEY = env.secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off "
            "(set it, or DJANGO_SECRET_KEY_FILE, to a long random string)."
        )
    SECRET_KEY = "insecure-development-key-only-for-DJANGO_DEBUG=1"

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
INSECURE_HTTP = env.bool("DJANGO_INSECURE_HTTP", False)
# How many reverse proxies in front of the app append to X-Forwarded-For; the
# client address is read that many hops from the right (0: REMOTE_ADDR).
TRUSTED_PROXIES = env.int("DJANGO_TRUSTED_PROXIES", 0)


def _origins(name: str, default: str) -> list[str]:
    try:
        return [normalize_origin(origin) for origin in env.list(name, default)]
    except ValidationError as exc:
        raise ImproperlyConfigured(f"{name}: {exc.messages[0]}") from None


UPLOADER_ORIGINS = _origins("UPLOADER_ORIGINS", "https://pacsbin.com")
# The registry's own public origin: every link in an email is built on it (never
# on a request's Host, which only has to pass ALLOWED_HOSTS), and the browser-side
# check on the status page runs from here, so the fix-it configurations allow it.
# Required with debug off; the local demo (debug on) may leave it unset.
REGISTRY_PUBLIC_ORIGIN = (_origins("REGISTRY_PUBLIC_ORIGIN", "") or [""])[0]
if not DEBUG and not REGISTRY_PUBLIC_ORIGIN:
    raise ImproperlyConfigured(
        "REGISTRY_PUBLIC_ORIGIN is required when DJANGO_DEBUG is off: the "
        "registry's own https:// origin, e.g. https://registry.example.org "
        "(links in emails are built on it, never on a request's Host)."
    )
if not DEBUG and not INSECURE_HTTP and not REGISTRY_PUBLIC_ORIGIN.startswith("https:"):
    raise ImproperlyConfigured(
        f"REGISTRY_PUBLIC_ORIGIN={REGISTRY_PUBLIC_ORIGIN} must be an https:// "
        "origin (plain http only with DJANGO_INSECURE_HTTP=1)."
    )
UPLOADER_JWT_SECRET = env.secret("UPLOADER_JWT_SECRET")
# Seconds a Bearer token may live (exp - iat): a leaked token cannot be revoked.
UPLOADER_JWT_MAX_LIFETIME = env.int("UPLOADER_JWT_MAX_LIFETIME", 86400, minimum=1)
CONNECTIVITY_ALLOW_PRIVATE = env.bool("CONNECTIVITY_ALLOW_PRIVATE", False)


def _oidc_issuer(name: str) -> str:
    """The provider's issuer URL: https (plain http only on loopback, for a
    provider run beside the registry in tests), no query or fragment."""
    raw = env.str(name)
    if not raw:
        return ""
    parts = urlsplit(raw)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if (
        parts.scheme not in ("https", "http")
        or (parts.scheme == "http" and not loopback)
        or not parts.hostname
        or parts.query
        or parts.fragment
    ):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not an issuer URL: use https://host[/path] "
            "(the provider's issuer, as its discovery document names it)."
        )
    return raw.rstrip("/")


# Staff single sign-on (README "Staff single sign-on"): on when all three are
# set; a partial set would silently leave it off, so it stops start-up.
OIDC_ISSUER = _oidc_issuer("OIDC_ISSUER")
OIDC_CLIENT_ID = env.str("OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET = env.secret("OIDC_CLIENT_SECRET")
_oidc_given = {
    "OIDC_ISSUER": OIDC_ISSUER,
    "OIDC_CLIENT_ID": OIDC_CLIENT_ID,
    "OIDC_CLIENT_SECRET": OIDC_CLIENT_SECRET,
}
if any(_oidc_given.values()) and not all(_oidc_given.values()):
    raise ImproperlyConfigured(
        "Single sign-on needs OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET "
        "together; missing: "
        + ", ".join(name for name, value in _oidc_given.items() if not value)
        + "."
    )
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", "groups")
OIDC_SCOPES = env.str("OIDC_SCOPES", "openid email groups")
if "openid" not in OIDC_SCOPES.split() or "email" not in OIDC_SCOPES.split():
    raise ImproperlyConfigured(
        f"OIDC_SCOPES={OIDC_SCOPES!r} must include openid and email."
    )
# Without single sign-on configured OIDC_ONLY would lock everyone out.
OIDC_ONLY = env.bool("OIDC_ONLY", False)
if OIDC_ONLY and not OIDC_ISSUER:
    raise ImproperlyConfigured(
        "OIDC_ONLY=1 turns password login off, but single sign-on is not "
        "configured (set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET)."
    )
# Room for a bulk add of 100,000 emails in one JSON request (Django's default,
# 2.5 MB, holds about 60,000).
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# An access review posts one field per email marked for removal: Django's
# 1,000 would refuse a contact removing most of a large server's list. The
# body's size above still bounds what a request can make Django parse.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 100_000


_RATE_PERIODS = {
    **dict.fromkeys(["s", "sec", "second"], 1),
    **dict.fromkeys(["min", "minute"], 60),
    **dict.fromkeys(["h", "hour"], 3600),
    "day": 86400,
}


def _rate(name: str, default: str) -> tuple[int, int] | None:
    """A rate like ``600/min`` as (requests, seconds); ``off`` disables it."""
    raw = env.str(name, default).lower()
    if raw == "off":
        return None
    count, _, period = raw.partition("/")
    valid = count.isascii() and count.isdigit() and int(count) >= 1
    if not valid or period not in _RATE_PERIODS:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate: use e.g. 600/min "
            f"(periods: {', '.join(_RATE_PERIODS)}), or off."
        )
    return int(count), _RATE_PERIODS[period]


# Access questions per API key (or per Bearer email) and period, counted in the
# shared cache so every worker sees the same count.
ACCESS_THROTTLE_RATE = _rate("ACCESS_THROTTLE_RATE", "600/min")

INSTALLED_APPS = [
    "integrations.apps.RegistryAdminConfig",  # django.contrib.admin
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "axes",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Idle timeout and maximum age of signed-in sessions.
    "integrations.adminsession.AdminSessionTimeoutMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "integrations.audit.AuditActorMiddleware",
    # Body-size cap and CSP of the public onboarding pages.
    "integrations.onboarding.abuse.PublicPagesMiddleware",
    # JSON (500, or 503 with Retry-After when a backing service is down) for
    # what a view under /api/ raised, never Django's HTML page.
    "integrations.api.errors.ApiErrorsMiddleware",
    # Last, as django-axes asks: it turns lockouts into responses.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pacsbin_integrations.urls"
WSGI_APPLICATION = "pacsbin_integrations.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _sqlite(path: str) -> dict[str, Any]:
    """The embedded database's settings, whether it is named by SQLITE_PATH or
    by DATABASE_URL=sqlite:///path: without them 8 concurrent writers got
    hundreds of "database is locked" 500s and lost rows."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            # Waits up to 20 s for a writer instead of failing at once with
            # "database is locked".
            "timeout": 20,
            # Every transaction takes the write lock when it begins: one that
            # started as a read and then writes cannot wait for the lock (SQLite
            # fails it at once), so concurrent writers would get 500s.
            "transaction_mode": "IMMEDIATE",
            # WAL: readers never wait for a writer nor a writer for readers;
            # synchronous=NORMAL syncs at checkpoints, not at every commit
            # (a power cut may lose the last commits, never corrupts).
            # mmap_size: reads come from memory the OS shares between every
            # worker's connections instead of a 2 MB private cache each
            # (make bench at 1,000,000 users: see README, Performance).
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                "PRAGMA mmap_size=268435456"
            ),
        },
        # Reuse each worker thread's connection, as PostgreSQL's does: opening
        # one costs more than an access answer, and its page cache stays warm
        # (make bench: 2x the requests per second at 1,000,000 users).
        "CONN_MAX_AGE": 60,
    }


_database: dict[str, Any]
_database_url = env.str("DATABASE_URL")
if _database_url:
    try:
        _database = dict(
            dj_database_url.parse(
                _database_url, conn_max_age=60, conn_health_checks=True
            )
        )
    except (ValueError, dj_database_url.UnknownSchemeError) as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not usable: {exc}") from None
    if _database["ENGINE"] == "django.db.backends.sqlite3":
        _database = _sqlite(_database["NAME"])
else:
    _database = _sqlite(env.str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")))
if _database["ENGINE"] == "django.db.backends.postgresql":
    # psycopg binds parameters on the server and prepares a statement once a
    # connection has run it five times: the access question's query is then
    # planned once per connection, not per answer (Django turns preparing off
    # by default for transaction-mode poolers such as PgBouncer < 1.21).
    _database.setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=5
    )
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_cache_url = env.str("CACHE_URL")
CACHES: dict[str, dict[str, Any]]
if not _cache_url:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif urlsplit(_cache_url).scheme in ("redis", "rediss", "unix"):
    # Redis shares throttles and rate limits between workers; it is never a
    # hard dependency: when it fails the cache answers from per-process memory
    # (integrations/cache.py). Short socket timeouts, so a frozen Redis costs
    # a request at most CACHE_SOCKET_TIMEOUT (the client's default is none:
    # every request stalled), and only once per CACHE_RETRY_SECONDS.
    _cache_socket_timeout = env.number("CACHE_SOCKET_TIMEOUT", 0.25, minimum=0.01)
    CACHES = {
        "default": {
            "BACKEND": "integrations.cache.FaultTolerantRedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", "pacsbin"),
            "RETRY_SECONDS": env.number("CACHE_RETRY_SECONDS", 5.0, minimum=0.1),
            "OPTIONS": {
                "socket_connect_timeout": _cache_socket_timeout,
                "socket_timeout": _cache_socket_timeout,
            },
        }
    }
else:
    raise ImproperlyConfigured(
        f"CACHE_URL={_cache_url!r} is not supported: use redis://host:port/db."
    )

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, refusing passwords of staff who sign in with single
    # sign-on (integrations/sso.py).
    "integrations.sso.PasswordBackend",
    "integrations.sso.StaffOIDCBackend",
]
# Where the single sign-on callback sends a staffer without a ?next= page.
LOGIN_REDIRECT_URL = "admin:index"

# Brute-force protection of the admin login (django-axes).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = 0.25  # hours
# Per (user name, client: an IPv6 client is its /64) and, with a higher cap,
# per user name from anywhere: see integrations/lockout.py.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "username"]
AXES_USERNAME_FAILURE_LIMIT = env.int("AXES_USERNAME_FAILURE_LIMIT", 20, minimum=1)
AXES_HANDLER = "integrations.lockout.LoginLockoutHandler"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "integrations.lockout.login_client"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves collected, hashed, compressed files (run collectstatic). Debug
# and the test suite serve straight from the source folders instead.
_STATIC_MANIFEST = not DEBUG and env.bool("DJANGO_STATIC_MANIFEST", True)
STATIC_ROOT = BASE_DIR / "staticfiles" if _STATIC_MANIFEST else None
WHITENOISE_USE_FINDERS = not _STATIC_MANIFEST
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if _STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Email: printed to the console unless an SMTP host is set (README "Email").
EMAIL_HOST = env.str("DJANGO_EMAIL_HOST")
EMAIL_BACKEND = env.str(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
if env.str("DJANGO_EMAIL_FILE_PATH"):
    # For DJANGO_EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend
    # (tests that read mail sent by other processes).
    EMAIL_FILE_PATH = env.str("DJANGO_EMAIL_FILE_PATH")
EMAIL_PORT = env.int("DJANGO_EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env.str("DJANGO_EMAIL_USER")
EMAIL_HOST_PASSWORD = env.secret("DJANGO_EMAIL_PASSWORD")
EMAIL_USE_SSL = env.bool("DJANGO_EMAIL_USE_SSL", False)  # implicit TLS, port 465
EMAIL_USE_TLS = env.bool("DJANGO_EMAIL_USE_TLS", not EMAIL_USE_SSL)  # STARTTLS
if EMAIL_USE_SSL and EMAIL_USE_TLS:
    raise ImproperlyConfigured(
        "DJANGO_EMAIL_USE_SSL and DJANGO_EMAIL_USE_TLS are exclusive: SSL for "
        "port 465, TLS (STARTTLS) for port 587."
    )
EMAIL_TIMEOUT = env.int("DJANGO_EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "integrations@localhost")
# Who hears of new onboarding submissions (empty: every active staff user
# with an email address).
ONBOARDING_NOTIFY_EMAILS = env.list("ONBOARDING_NOTIFY_EMAILS")
# Public onboarding submissions allowed per client address per hour.
ONBOARDING_SUBMISSIONS_PER_HOUR = env.int(
    "ONBOARDING_SUBMISSIONS_PER_HOUR", 10, minimum=1
)
# How long the contact has to open the confirmation link emailed to them;
# an unconfirmed request never reaches the review queue and expires after this.
ONBOARDING_CONFIRM_HOURS = env.int("ONBOARDING_CONFIRM_HOURS", 48, minimum=1)

# Monitoring (README "Monitoring"): every active server the registry can reach
# is re-checked every MONITOR_INTERVAL_MINUTES (fractions allowed, e.g. 0.05 =
# 3 s for tests), on Celery workers when CELERY_BROKER_URL names a Redis, else
# in-process by `manage.py monitor` (the embedded default for one machine).
MONITOR_INTERVAL_MINUTES = env.number("MONITOR_INTERVAL_MINUTES", 15.0, minimum=0.01)
# How often the dispatcher looks for servers that are due (beat's one entry).
MONITOR_TICK_SECONDS = env.number(
    "MONITOR_TICK_SECONDS",
    min(60.0, max(1.0, MONITOR_INTERVAL_MINUTES * 60 / 5)),
    minimum=0.2,
)
# Consecutive failed checks before an ok server becomes failing (and alerts).
MONITOR_FAILING_AFTER = env.int("MONITOR_FAILING_AFTER", 2, minimum=1)
# Flap damping: MONITOR_FLAP_CHANGES state changes within
# MONITOR_FLAP_WINDOW_HOURS make one "flapping" email, then none until the state
# has held for MONITOR_FLAP_QUIET_INTERVALS intervals (one "settled" email).
MONITOR_FLAP_CHANGES = env.int("MONITOR_FLAP_CHANGES", 4, minimum=2)
MONITOR_FLAP_WINDOW_HOURS = env.number("MONITOR_FLAP_WINDOW_HOURS", 2.0, minimum=0.01)
MONITOR_FLAP_QUIET_INTERVALS = env.int("MONITOR_FLAP_QUIET_INTERVALS", 3, minimum=1)
# A later TLS expiry replaces the earliest one seen only when every check for
# this long saw it (two certificates behind one name warn once, not every
# other check).
MONITOR_TLS_WINDOW_HOURS = env.number("MONITOR_TLS_WINDOW_HOURS", 24.0, minimum=0.0)


def _emails(name: str) -> list[str]:
    try:
        return [normalize_email(address) for address in env.list(name)]
    except ValidationError as exc:
        raise ImproperlyConfigured(f"{name}: {exc.messages[0]}") from None


# Who hears of state changes (empty: active staff allowed to change servers).
MONITOR_ALERT_EMAILS = _emails("MONITOR_ALERT_EMAILS")
# Monitoring's check rows older than this are pruned (the timeline shows 7).
MONITOR_KEEP_DAYS = env.int("MONITOR_KEEP_DAYS", 8, minimum=7)
# Servers per task, and checks run at once inside one task.
MONITOR_BATCH_SIZE = env.int("MONITOR_BATCH_SIZE", 50, minimum=1)
MONITOR_CHECK_THREADS = env.int("MONITOR_CHECK_THREADS", 16, minimum=1)
# A task's hard limit in seconds (the worker kills it); the soft limit, 30 s
# earlier, records the checks already done.
MONITOR_TASK_TIME_LIMIT = env.int("MONITOR_TASK_TIME_LIMIT", 300, minimum=60)
MONITOR_QUEUE = env.str("MONITOR_QUEUE", "monitoring")
# Access reviews (README "Access reviews"): every ACCESS_REVIEW_DAYS (0: off)
# each active server's confirmed contact is asked to review its approved
# emails; ACCESS_REVIEW_GRACE_DAYS later an unanswered review is overdue
# (staff alerted) and, with ACCESS_REVIEW_ENFORCE=1, its approvals expire.
ACCESS_REVIEW_DAYS = env.int("ACCESS_REVIEW_DAYS", 180, minimum=0)
ACCESS_REVIEW_GRACE_DAYS = env.int("ACCESS_REVIEW_GRACE_DAYS", 30, minimum=1)
if ACCESS_REVIEW_DAYS and ACCESS_REVIEW_GRACE_DAYS >= ACCESS_REVIEW_DAYS:
    raise ImproperlyConfigured(
        f"ACCESS_REVIEW_GRACE_DAYS={ACCESS_REVIEW_GRACE_DAYS} must be shorter than "
        f"ACCESS_REVIEW_DAYS={ACCESS_REVIEW_DAYS}: a review must be overdue "
        "before the next one is due."
    )
ACCESS_REVIEW_ENFORCE = env.bool("ACCESS_REVIEW_ENFORCE", False)
# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset: 404.
METRICS_TOKEN = env.secret("METRICS_TOKEN")

# The gate (README "The gate"): seconds an edge token lives (exp - iat); how
# long an edge may cache a decision (so revocation reaches it within this);
# how long an edge may serve cached decisions while the registry is
# unreachable (0: closed at once).
EDGE_TOKEN_LIFETIME = env.int("EDGE_TOKEN_LIFETIME", 600, minimum=1)
if EDGE_TOKEN_LIFETIME > 3600:
    raise ImproperlyConfigured(
        f"EDGE_TOKEN_LIFETIME={EDGE_TOKEN_LIFETIME} must be at most 3600 (seconds)."
    )
EDGE_CACHE_SECONDS = env.int("EDGE_CACHE_SECONDS", 30, minimum=1)
EDGE_GRACE_SECONDS = env.int("EDGE_GRACE_SECONDS", 300, minimum=0)
# The ES256 (P-256) private key that signs edge tokens, PEM, or from the file
# EDGE_SIGNING_KEY_FILE. Unset: the embedded default, a key made on first use
# and kept in the database (`manage.py rotate_edge_signing_key` replaces it).
EDGE_SIGNING_KEY = env.secret("EDGE_SIGNING_KEY")
if EDGE_SIGNING_KEY:
    _problem = signing_key_problem(EDGE_SIGNING_KEY)
    if _problem:
        raise ImproperlyConfigured(f"EDGE_SIGNING_KEY: {_problem}")

# Celery (read by pacsbin_integrations/celery.py, namespace CELERY_).
_broker = env.str("CELERY_BROKER_URL")
if _broker and urlsplit(_broker).scheme not in ("redis", "rediss"):
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={_broker!r} is not supported: use redis://host:6379/N "
        "(or leave it unset for the embedded default)."
    )
CELERY_BROKER_URL = _broker or "memory://localhost/"
# No broker: tasks run in the calling process (manage.py monitor), one machine.
CELERY_TASK_ALWAYS_EAGER = not _broker
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = MONITOR_QUEUE
CELERY_TASK_TIME_LIMIT = MONITOR_TASK_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = MONITOR_TASK_TIME_LIMIT - 30
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A batch is acknowledged once done, not when a worker takes it: a worker
# process that dies mid-batch (killed, out of memory) hands it back to the
# queue at once, and one that vanishes whole (its box gone) leaves it with
# Redis, which hands it out again after MONITOR_REDELIVER_SECONDS (default
# twice the task's time limit: never while a batch may still run; the
# broker's own default, an hour, came back several rounds late). Each batch
# carries its claim, so a late copy skips servers a later round took.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
MONITOR_REDELIVER_SECONDS = env.int(
    "MONITOR_REDELIVER_SECONDS", 2 * MONITOR_TASK_TIME_LIMIT, minimum=1
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": MONITOR_REDELIVER_SECONDS,
    # Workers look for such batches every 10 s; kombu's default scans only
    # every tenth look (100 s), so a batch overdue just after one scan waited
    # nearly two minutes more.
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
# Beat's one dispatching entry (no schedule row per server) and the pruning.
CELERY_BEAT_SCHEDULE = {
    "monitoring-dispatch": {
        "task": "monitoring.dispatch",
        "schedule": MONITOR_TICK_SECONDS,
        "options": {"queue": MONITOR_QUEUE, "expires": MONITOR_TICK_SECONDS * 2},
    },
    "monitoring-prune": {
        "task": "monitoring.prune",
        "schedule": 3600.0,
        "options": {"queue": MONITOR_QUEUE},
    },
    # Approvals ending within a week: one notice per server (expiry.py).
    "approvals-notify-expiring": {
        "task": "approvals.notify_expiring",
        "schedule": 900.0,
        "options": {"queue": MONITOR_QUEUE, "expires": 900.0},
    },
    # Access reviews to send, overdue ones to alert on (reviews are counted
    # in days: a look every ten minutes is plenty).
    "access-reviews": {
        "task": "access_reviews.run",
        "schedule": 600.0,
        "options": {"queue": MONITOR_QUEUE, "expires": 600.0},
    },
}

# Security headers. With debug off everything is on unless the deployment is
# explicitly plain HTTP on a trusted network (DJANGO_INSECURE_HTTP=1).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Staff sessions decide who may see patient images: they end after this long
# without a request, and this long after signing in whatever the activity
# (integrations/adminsession.py; the cookie lives no longer either).
ADMIN_SESSION_IDLE_MINUTES = env.int("ADMIN_SESSION_IDLE_MINUTES", 30, minimum=1)
ADMIN_SESSION_MAX_HOURS = env.int("ADMIN_SESSION_MAX_HOURS", 12, minimum=1)
if ADMIN_SESSION_IDLE_MINUTES > ADMIN_SESSION_MAX_HOURS * 60:
    raise ImproperlyConfigured(
        f"ADMIN_SESSION_IDLE_MINUTES={ADMIN_SESSION_IDLE_MINUTES} is longer than "
        f"ADMIN_SESSION_MAX_HOURS={ADMIN_SESSION_MAX_HOURS}: a session never "
        "idles that long."
    )
SESSION_COOKIE_AGE = ADMIN_SESSION_MAX_HOURS * 3600
_https = not DEBUG and not INSECURE_HTTP
SECURE_SSL_REDIRECT = _https
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_HSTS_SECONDS = 31_536_000 if _https else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
SECURE_HSTS_PRELOAD = _https
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS")

# CORS only on the access question, only for the uploader's origins.
CORS_ALLOWED_ORIGINS = UPLOADER_ORIGINS
CORS_URLS_REGEX = r"^/api/v1/access/?$"
CORS_ALLOW_HEADERS = ["authorization", "if-none-match", "accept"]
CORS_ALLOW_METHODS = ["GET", "OPTIONS"]
CORS_EXPOSE_HEADERS = ["ETag"]
CORS_PREFLIGHT_MAX_AGE = 600

REST_FRAMEWORK = {
    # Api-Key first: its WWW-Authenticate header makes an unauthenticated call
    # a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "integrations.api.auth.ApiKeyAuthentication",
        "integrations.api.auth.UserTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny unless a view says otherwise.
    "DEFAULT_PERMISSION_CLASSES": ["integrations.api.permissions.CanManage"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["integrations.api.parsers.StrictJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "integrations.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # ?format= belongs to the access question (format=ohif), not to DRF.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "integrations.api.errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    # /api/v1/health's "status" and "cache" share one choice set: one name.
    "ENUM_NAME_OVERRIDES": {"BackingServiceStateEnum": ["ok", "unavailable"]},
    "TITLE": "Pacsbin Integrations API",
    "DESCRIPTION": "The registry of DICOMweb servers for Pacsbin's uploader: "
    "the access question, and the management API.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from the app's own static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
}
