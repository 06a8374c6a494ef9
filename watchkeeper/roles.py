"""The parts of watchkeeper one process can run (`serve --role`), in start-up order.

- `ingest`: the HTTP ingest API (stateless; run as many replicas as the load needs);
- `scraper`: pulls Prometheus targets into the store (split targets with `--shard`);
- `detector`: judges windows and writes findings (split models with `--shard I/N`);
- `alerting`: follows the findings in the store and notifies (run one replica, or hand
  alerts to an Alertmanager cluster for high availability).
"""

from __future__ import annotations

ROLES = ("ingest", "scraper", "detector", "alerting")

__all__ = ["ROLES"]
