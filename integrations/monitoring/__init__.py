"""Monitoring: the registry re-checks every active server it can reach on a
schedule and tells staff when a server's state changes (DESIGN.md
"Monitoring").

- ``rounds``: due servers, claiming, checking a batch, bulk writes, pruning;
- ``states``: what a check does to a server's health, and which changes alert;
- ``alerts``: alerts queued as rows, mailed by the dispatcher (a digest);
- ``tasks``: the Celery tasks (beat → dispatch → check_batch on workers);
- ``health``: the health answer of the API; ``timeline``: the admin's SVG;
  ``metrics``: /metrics for Prometheus.
"""

from __future__ import annotations
