"""Connectivity and CORS diagnosis: will a browser on the uploader's origin be
allowed to talk to an archive, and if not, exactly what to change.

- ``run_check(server, origin=None)`` probes from the registry and records the
  check; ``run_checks`` does it for every uploader origin;
- ``record_browser_check(server, origin, outcome, findings, user=None)`` records
  what someone's browser saw;
- ``proxyconfig.render(server, kind)``: the fix-it nginx / apache / caddy
  configuration, or for ``pacsbin`` the config.jsonc of Pacsbin's own proxy
  (``pacsbinproxy``; ``proxyconfig.pacsbin_view`` adds the archive's sheet),
  each for ``proxyconfig.allowed_origins()``;
- ``capabilities``: what an archive does (includefield, fuzzy matching,
  wildcards, its no-match answer, /rendered, /thumbnail), learnt after an ok
  server-side check, stored on ServerHealth and used by ``?format=ohif``;
- ``ssrf`` (the SSRF guard), ``client`` (the guarded HTTP client) and ``probe``
  (the judgement, without the database) underneath.
"""

from __future__ import annotations

from integrations.connectivity import proxyconfig
from integrations.connectivity.runs import record_browser_check, run_check, run_checks

__all__ = ["proxyconfig", "record_browser_check", "run_check", "run_checks"]
