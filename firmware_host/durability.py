"""fsync off the link thread: files made durable on one background thread, in submission order.

The host's plans (storing images, writing the audit log) run on the serial adapter's link thread, the
thread that also sends the heartbeats the device's 500 ms watchdog waits for. An ``fsync`` can take
hundreds of ms on a busy disk. So the link thread writes and flushes (a host process that dies keeps
everything: it is in the OS's page cache, and files are renamed into place whole), and a :class:`Syncer`
thread does the fsyncs that make it survive a power cut. Whoever needs durability now (the exam record,
closing the audit log) calls :meth:`Syncer.wait` first.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync the file at ``path``, then its directory (the rename that put it there)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Syncer:
    """Runs fsync jobs on one background thread, in submission order.

    :meth:`wait` blocks until every job submitted so far has run and re-raises the first failure. The
    thread starts with the first job and ends at :meth:`close` (it is a daemon: a dying host does not wait
    for it; what was written is in the page cache).
    """

    def __init__(self, name: str = "crescent-fsync") -> None:
        self._name = name
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(job)

    def submit_path(self, path: Path) -> None:
        """fsync ``path`` and its directory."""
        self.submit(lambda: fsync_path(path))

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except OSError as exc:
                self._error = self._error or exc
            finally:
                self._queue.task_done()

    def wait(self) -> None:
        """Block until every submitted job has run; raise the first fsync failure."""
        if self._thread is not None:
            self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Run what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30.0)
