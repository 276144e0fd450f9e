"""One atomic counter in the shared cache, for every rate limit."""

from __future__ import annotations

from django.core.cache.backends.base import BaseCache


def count(cache: BaseCache, key: str, timeout: int) -> int:
    """Add one to ``key`` and answer the new count; the counter expires
    ``timeout`` seconds after it was created.

    ``incr`` counts atomically and ``add`` sets only if absent, in Redis and
    in the local-memory cache alike, so concurrent workers never lose a count
    (unlike a read-modify-write); while the counter exists, one ``incr``.
    """
    try:
        return cache.incr(key)  # one operation while the window lasts
    except ValueError:  # the window's first count, or it just expired
        pass
    if cache.add(key, 1, timeout=timeout):
        return 1
    try:
        return cache.incr(key)  # another worker added it meanwhile
    except ValueError:  # and it expired already
        cache.add(key, 1, timeout=timeout)
        return 1
