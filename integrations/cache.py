"""The shared cache (Redis, ``CACHE_URL``) as a convenience, never a hard
dependency: throttles and rate limits are counted there so several workers
agree, but the access answer must not fail because Redis went away.

``FaultTolerantRedisCache`` (the backend settings.CACHES names for a
``redis://`` URL) asks Redis with short socket timeouts; when Redis refuses,
times out or errs it answers from a per-process memory cache instead
(counting falls back to per-process), logs it once per outage, and does not
ask Redis again for ``RETRY_SECONDS`` (a circuit breaker: a frozen Redis
would otherwise cost a socket timeout per request). Then one request tries
Redis again while the others keep to memory; when Redis answers, it is used
again and the log says so.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.core.cache import cache as default_cache
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds without asking Redis after it failed (settings CACHE_RETRY_SECONDS).
DEFAULT_RETRY_SECONDS = 5.0


class Breaker:
    """Whether to ask Redis now: closed while it answers; open for
    ``pause`` seconds after a failure, then one caller probes (half-open)."""

    def __init__(self, name: str, pause: float) -> None:
        self.name = name
        self.pause = pause
        self.down = False
        self.open_until = 0.0
        self.lock = threading.Lock()

    def allows(self) -> bool:
        if not self.down:
            return True
        now = time.monotonic()
        with self.lock:
            if now < self.open_until:
                return False
            # This caller probes; every other one keeps to memory meanwhile.
            self.open_until = now + self.pause
            return True

    def failed(self, exc: Exception) -> None:
        with self.lock:
            self.open_until = time.monotonic() + self.pause
            if self.down:
                return
            self.down = True
        logger.warning(
            "The cache %s is unavailable (%s: %s): throttles and rate limits "
            "are counted per process until it answers again (retried every %g s).",
            self.name,
            type(exc).__name__,
            exc,
            self.pause,
        )

    def succeeded(self) -> None:
        if not self.down:
            return
        with self.lock:
            if not self.down:
                return
            self.down = False
        logger.warning(
            "The cache %s answers again: counting is shared again.", self.name
        )


_breakers: dict[tuple[str, float], Breaker] = {}
_breakers_lock = threading.Lock()


def _breaker(name: str, pause: float) -> Breaker:
    """This process's breaker for the cache at ``name``."""
    with _breakers_lock:
        return _breakers.setdefault((name, pause), Breaker(name, pause))


class FaultTolerantRedisCache(RedisCache):
    """Django's RedisCache that falls back to per-process memory when Redis
    fails (see the module's doc). Settings: the usual ``LOCATION``,
    ``KEY_PREFIX`` and ``OPTIONS`` (socket timeouts), plus
    ``RETRY_SECONDS``, the circuit breaker's pause."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        # Django makes one cache object per thread: the breaker and the
        # memory fallback are the process's, shared by its threads, so the
        # log says it once and the fallback counts once per process.
        pause = float(params.get("RETRY_SECONDS", DEFAULT_RETRY_SECONDS))
        self.breaker = _breaker(_safe_name(re.split("[;,]", server)[0]), pause)
        self.fallback = LocMemCache(
            f"pacsbin-fallback:{server}",  # LocMemCache shares one store per name
            {k: v for k, v in params.items() if k in ("TIMEOUT", "KEY_PREFIX")},
        )

    def _either(self, shared: Callable[[], T], local: Callable[[], T]) -> T:
        if self.breaker.allows():
            try:
                answer = shared()
            except RedisError as exc:
                self.breaker.failed(exc)
            else:
                self.breaker.succeeded()
                return answer
        return local()

    def state(self) -> str:
        """``ok`` when Redis answers a PING now, else ``unavailable``
        (without asking while the breaker is open)."""

        def ping() -> str:
            # RedisCache's client, which django-stubs do not describe.
            self._cache.get_client(write=True).ping()  # type: ignore[attr-defined]
            return "ok"

        return self._either(ping, lambda: "unavailable")

    # Every BaseCache operation RedisCache implements, through _either.

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        return self._either(
            lambda: RedisCache.add(self, key, value, timeout, version),
            lambda: self.fallback.add(key, value, timeout, version),
        )

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return self._either(
            lambda: RedisCache.get(self, key, default, version),
            lambda: self.fallback.get(key, default, version),
        )

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        self._either(
            lambda: RedisCache.set(self, key, value, timeout, version),
            lambda: self.fallback.set(key, value, timeout, version),
        )

    def touch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        return self._either(
            lambda: RedisCache.touch(self, key, timeout, version),
            lambda: self.fallback.touch(key, timeout, version),
        )

    def delete(self, key: Any, version: Any = None) -> Any:
        return self._either(
            lambda: RedisCache.delete(self, key, version),
            lambda: self.fallback.delete(key, version),
        )

    def get_many(self, keys: Any, version: Any = None) -> Any:
        return self._either(
            lambda: RedisCache.get_many(self, keys, version),
            lambda: self.fallback.get_many(keys, version),
        )

    def has_key(self, key: Any, version: Any = None) -> Any:
        return self._either(
            lambda: RedisCache.has_key(self, key, version),
            lambda: self.fallback.has_key(key, version),
        )

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        return self._either(
            lambda: RedisCache.incr(self, key, delta, version),
            lambda: self.fallback.incr(key, delta, version),
        )

    def set_many(
        self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        return self._either(
            lambda: RedisCache.set_many(self, data, timeout, version),
            lambda: self.fallback.set_many(data, timeout, version),
        )

    def delete_many(self, keys: Any, version: Any = None) -> None:
        self._either(
            lambda: RedisCache.delete_many(self, keys, version),
            lambda: self.fallback.delete_many(keys, version),
        )

    def clear(self) -> None:
        self.fallback.clear()
        self._either(
            lambda: RedisCache.clear(self),
            lambda: None,
        )


def _safe_name(url: str) -> str:
    """Where the cache is, for the log: never the password of its URL."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return parts.path or "redis"
    return f"{parts.hostname}:{parts.port or 6379}{parts.path}"


def state(cache: BaseCache = default_cache) -> str:
    """The cache's state for /api/v1/health: ``ok`` or ``unavailable``. A
    per-process memory cache (no CACHE_URL) is always ``ok``."""
    probe = getattr(cache, "state", None)
    if probe is None:
        return "ok"
    try:
        return str(probe())
    except Exception:  # a health answer never fails on the cache
        logger.exception("Asking the cache for its state failed")
        return "unavailable"
