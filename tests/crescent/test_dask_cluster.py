"""A finished campaign or trial closes its LocalCluster without the workers' shutdown noise (a worker
heartbeat in flight as the scheduler closes logs an ERROR with a traceback; the README test saw it at the
end of ``crescent campaign --exams 10`` on a loaded CI run). A real LocalCluster with a worker process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import logging, sys
    from crescent import dask_cluster

    def noise():  # what a worker logs when its heartbeat meets a closed scheduler
        logging.getLogger("distributed.worker").error("Failed to communicate with scheduler during heartbeat.")

    if __name__ == "__main__":
        client, cluster = dask_cluster.open_client(None, 1)
        assert len(client.scheduler_info()["workers"]) == 1
        if sys.argv[1] == "quiet":
            client.run(dask_cluster._quiet_worker_logs)
        client.run(noise)
        dask_cluster.close(client, cluster)
        print("closed")
""")


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=300)


def test_close_quiets_our_workers_but_their_errors_show_while_they_work() -> None:
    loud = _run("loud")  # the checker can fail: the same noise before the workers are quieted reaches stderr
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "Failed to communicate with scheduler during heartbeat" in loud.stderr
    quiet = _run("quiet")
    assert quiet.returncode == 0 and "closed" in quiet.stdout, quiet.stderr[-2000:]
    assert "Failed to communicate" not in quiet.stderr and "Traceback" not in quiet.stderr, quiet.stderr[-2000:]
