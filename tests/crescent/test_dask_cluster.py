"""A finished campaign or trial closes its LocalCluster without the workers' shutdown noise (a worker
heartbeat in flight as the scheduler closes logs an ERROR with a traceback; the README test saw it at the
end of ``crescent campaign --exams 10`` on a loaded CI run). A real LocalCluster with a worker process; the
noise is emitted by the workers from inside :func:`crescent.dask_cluster.close`, as the client closes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import logging, sys
    from crescent import dask_cluster

    def noise():  # what a worker logs when its heartbeat meets a closed scheduler
        logging.getLogger("distributed.worker").error("Failed to communicate with scheduler during heartbeat.")

    if __name__ == "__main__":
        mode = sys.argv[1]
        client, cluster = dask_cluster.open_client(None, 1)
        assert len(client.scheduler_info()["workers"]) == 1
        close_client, spoke = client.close, []

        def close_speaking(*args, **kwargs):  # the workers speak as the client closes (once: __del__ closes too)
            if not spoke:
                spoke.append(client.run(noise))
            return close_client(*args, **kwargs)

        client.close = close_speaking
        if mode == "external":  # a cluster that is not ours (--scheduler): its workers are left alone
            dask_cluster.close(client, None, quiet=True)
            cluster.close()
        else:
            dask_cluster.close(client, cluster, quiet=mode == "finished")
        print("closed")
""")


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, timeout=300)


def test_a_finished_run_closes_its_cluster_quietly() -> None:
    res = _run("finished")
    assert res.returncode == 0 and "closed" in res.stdout, res.stderr[-2000:]
    assert "Failed to communicate" not in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


@pytest.mark.parametrize("mode", ["interrupted", "external"])
def test_workers_keep_talking_after_an_error_and_on_a_cluster_not_ours(mode: str) -> None:
    """The checker can fail: the same noise reaches stderr when close() must not quiet the workers."""
    res = _run(mode)
    assert res.returncode == 0 and "closed" in res.stdout, res.stderr[-2000:]
    assert "Failed to communicate with scheduler during heartbeat" in res.stderr
