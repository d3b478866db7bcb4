"""SimPy adapter: runs the sans-IO controller in a SimPy environment's virtual time.

The adapter is one SimPy process that pumps bytes between the controller and
an *endpoint* object: ``endpoint.write(data: bytes)`` sends toward the device
(the simulated UART charges each byte its time), ``endpoint.read()`` returns a
``simpy.Event`` whose value is the next chunk of bytes for the host (the
simulated gantry's ``SerialEndpoint`` is one). The adapter imports nothing of
the simulator. Time is ``env.now`` (seconds of virtual time); nothing sleeps.
"""

from __future__ import annotations

from typing import Any, Protocol

import simpy

from firmware_host.controller import Controller
from firmware_host.plans import Plan


class Endpoint(Protocol):
    """The host's end of a simulated serial line."""

    def write(self, data: bytes) -> None: ...

    def read(self) -> simpy.Event: ...


class SimpyAdapter:
    """Binds a :class:`Controller` to a SimPy endpoint (see module docstring)."""

    def __init__(self, env: simpy.Environment, endpoint: Endpoint, controller: Controller) -> None:
        self.env = env
        self.endpoint = endpoint
        self.controller = controller
        self._wake = env.event()
        self._waiters: list[tuple[Any, simpy.Event]] = []
        self._closed = False
        self._stall_until = -1.0
        self.process = env.process(self._pump())

    def now(self) -> float:
        return float(self.env.now)

    def _flush(self) -> None:
        out = self.controller.data_to_send()
        if out:
            self.endpoint.write(out)

    def _pump(self):  # type: ignore[no-untyped-def]
        env, ctl = self.env, self.controller
        read_ev = self.endpoint.read()
        while not self._closed:
            if env.now < self._stall_until:
                # the host is frozen: no timers, no reads, no writes (bytes queue up on the line)
                yield env.timeout(self._stall_until - env.now)
            self._flush()
            self._notify()
            deadline = ctl.next_deadline()
            waits = [read_ev, self._wake]
            if deadline is not None:
                waits.append(env.timeout(max(0.0, deadline - env.now)))
            yield env.any_of(waits)
            if read_ev.triggered:
                ctl.receive(read_ev.value, env.now)
                read_ev = self.endpoint.read()
            ctl.tick(env.now)
            if self._wake.triggered:
                self._wake = env.event()
        self._flush()

    def _notify(self) -> None:
        keep = []
        for runner, ev in self._waiters:
            if runner.finished:
                ev.succeed()
            else:
                keep.append((runner, ev))
        self._waiters = keep

    def poke(self) -> None:
        """Wake the pump (after the application changed the controller from outside the process)."""
        if not self._wake.triggered:
            self._wake.succeed()

    def run(self, plan: Plan, name: str = "plan") -> Any:
        """Run ``plan`` to its end in virtual time (``env.run`` until it finishes); return its result.

        Ctrl-C (KeyboardInterrupt) turns into an operator abort, as on a real port; a second one is raised.
        """
        runner = self.controller.start(plan, self.now(), name)
        done = self.env.event()
        self._waiters.append((runner, done))
        self.poke()
        try:
            self.env.run(until=done)
        except KeyboardInterrupt as exc:
            why = str(exc.args[0]) if exc.args else "Ctrl-C"
            self.controller.request_abort(f"operator abort ({why})", self.now())
            self.poke()
            self.env.run(until=done)
        return runner.outcome()

    def submit(self, plan: Plan, name: str = "plan") -> simpy.Event:
        """Start ``plan`` and return an event that fires when it ends (for use inside other SimPy processes)."""
        runner = self.controller.start(plan, self.now(), name)
        done = self.env.event()
        self._waiters.append((runner, done))
        self.poke()
        return done

    def abort(self, reason: str = "operator abort") -> None:
        self.controller.request_abort(reason, self.now())
        self.poke()

    def send_aux(self, message: Any) -> None:
        self.controller.send_aux(message, self.now())
        self.poke()

    def stall(self, duration_s: float) -> None:
        """Freeze the host for ``duration_s`` of virtual time (fault campaigns: a host that stops running)."""
        self._stall_until = max(self._stall_until, self.env.now + float(duration_s))
        self.poke()

    def close(self) -> None:
        """Stop pumping (the device's watchdog then sees the host go silent)."""
        self._closed = True
        self.poke()
