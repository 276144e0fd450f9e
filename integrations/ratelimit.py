"""One atomic counter in the shared cache, for every rate limit."""

from __future__ import annotations

from django.core.cache.backends.base import BaseCache


def count(cache: BaseCache, key: str, timeout: int) -> int:
    """Add one to ``key`` and answer the new count; the counter expires
    ``timeout`` seconds after it was created.

    ``add`` sets it only if absent and ``incr`` counts atomically, in Redis and
    in the local-memory cache alike, so concurrent workers never lose a count
    (unlike a read-modify-write).
    """
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.add(key, 1, timeout=timeout)
        return 1
