"""Bounds of the host options every entry point shares (no imports: ``--help`` texts read them cheaply).

``crescent acquire``, ``crescent exam run``, the Python API (:class:`firmware_host.exam_plan.ExamOptions`)
and the pytest plugin take the same values; the CLI checks them before anything opens a port.
"""

#: Device watchdog the host asks for in HELLO, ms. The wire allows 50..10000 (catalogue.yaml); the host
#: keeps at least one missed 100 ms heartbeat of slack, so 100 ms is its lower bound everywhere.
WATCHDOG_MS_MIN = 100
WATCHDOG_MS_MAX = 10_000
#: Wait for each image (restarted by each image's arrival), s: more than 0, at most 10 minutes.
IMAGE_TIMEOUT_S_MAX = 600.0
#: TCP ports.
TCP_PORT_MIN, TCP_PORT_MAX = 0, 65_535
