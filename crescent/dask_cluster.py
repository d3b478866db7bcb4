"""The app's Dask clusters (campaigns, trials): a LocalCluster of single-threaded worker processes, or a
client of an existing scheduler, closed without shutdown noise.

Closing a LocalCluster races with its workers' heartbeats: a worker whose heartbeat is in flight when the
scheduler goes logs ``distributed.worker - ERROR - Failed to communicate with scheduler during heartbeat``
with a traceback (dask/distributed's known shutdown noise; seen on a loaded 2-core machine at the end of a
finished ``crescent campaign``). When every result is in, :func:`close` quiets the workers' loggers of
*our own* LocalCluster before closing it (``quiet=True``); after an error or an interruption they keep
talking. Workers of an external scheduler (``--scheduler``) are never touched: only the client is closed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

#: Loggers of a worker process that report its connection to the scheduler.
WORKER_LOGGERS = ("distributed.worker", "distributed.nanny", "distributed.core", "distributed.comm",
                  "distributed.batched", "distributed.utils_comm")


def open_client(scheduler: str | None, workers: int, *, env: dict[str, str] | None = None,
                dashboard_address: str | None = None) -> tuple[Any, Any]:
    """``(client, cluster)``: a client of ``scheduler`` (``tcp://HOST:PORT``; cluster None), or of a new
    LocalCluster of ``workers`` single-threaded worker processes with ``env`` set in each, serving the dask
    dashboard at ``dashboard_address`` (``:8787``; None: no dashboard)."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=dashboard_address, env=env or {}, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _quiet_worker_logs() -> None:
    """Run in each worker of our LocalCluster once its work is done: its shutdown is not news."""
    for name in WORKER_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def close(client: Any, cluster: Any, *, quiet: bool) -> None:
    """Close ``client``, and ``cluster`` when it is ours (not None). ``quiet``: every result is in, so our
    workers' shutdown is not news (their loggers are quieted first); False after an error or an interruption."""
    try:
        if quiet and cluster is not None:
            with contextlib.suppress(Exception):  # a worker already gone has nothing left to say
                client.run(_quiet_worker_logs)
    finally:
        try:
            client.close()
        finally:
            if cluster is not None:
                cluster.close()
