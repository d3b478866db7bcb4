"""In-process virtual-time gantry: the entry point for host adapters and tests.

API (the host team's SimPy adapter is written against exactly this)::

    env = simpy.Environment()
    gantry, endpoint = start_virtual_gantry(env, load_config("default"), seed=7, faults=None)
    endpoint.write(frame_bytes)          # host -> device; charged UART time (10 bits/byte at 8N1)
    chunk = yield endpoint.read()        # inside a SimPy process: next bytes that reached the host

``endpoint`` is a :class:`simulator.gantry.uart.SerialEndpoint`. ``endpoint.write(data: bytes)
-> None`` queues bytes on the host->device line; ``endpoint.read() -> simpy.Event`` succeeds
with the next chunk (``bytes``) that arrived for the host after its wire time. Each call to
``read()`` creates one get request; keep and re-use a pending one rather than calling it
repeatedly (like any ``simpy.Store.get``). Alternatively ``endpoint.on_receive(callback)``
hands each arriving chunk to ``callback(data)`` at its arrival time (then ``read()`` gets
nothing); :class:`simulator.gantry.linkio.SimLinkDriver` runs a ``Link`` that way, and
:class:`simulator.gantry.client.LinkClient` is a minimal test client built on it.

Images go to ``gantry.detector.data_dir`` (``frame_<id>.raw``); the device event log to
``<data_dir>/device-events.jsonl`` unless ``event_log`` says otherwise (``None``: memory only,
``gantry.log.lines``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import simpy

from protocols.wire.signing import HighWaterStore, LinkKey
from simulator.gantry.config import GantryConfig, load_config
from simulator.gantry.faults import FaultPlan, load_faults
from simulator.gantry.firmware import Gantry
from simulator.gantry.uart import SerialEndpoint, serial_line

EVENT_LOG_NAME = "device-events.jsonl"


def resolve_data_dir(config: GantryConfig, data_dir: str | Path | None) -> Path:
    """The data-channel directory: the argument, else the config's, else a new temporary directory."""
    if data_dir is not None:
        path = Path(data_dir)
    elif config.detector.data_dir is not None:
        path = Path(config.detector.data_dir)
    else:
        path = Path(tempfile.mkdtemp(prefix="crescent-gantry-"))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def build_gantry(env: simpy.Environment, config: GantryConfig | str | Path | None = None, *, seed: int = 0,
                 faults: FaultPlan | str | Path | dict | None = None, data_dir: str | Path | None = None,
                 event_log: str | Path | None | Literal["auto"] = "auto",
                 keep_log: bool = True, link_key: LinkKey | None = None,
                 high_water: HighWaterStore | None = None) -> tuple[Gantry, SerialEndpoint]:
    """Gantry plus the host end of its serial line on any SimPy environment (virtual or real time).

    ``link_key`` makes the link signed (SPEC 2.6); ``high_water`` keeps its high-water marks."""
    cfg = config if isinstance(config, GantryConfig) else load_config(config)
    plan = faults if isinstance(faults, FaultPlan) else load_faults(faults)
    ddir = resolve_data_dir(cfg, data_dir)
    log_path = ddir / EVENT_LOG_NAME if event_log == "auto" else (Path(event_log) if event_log is not None else None)
    host_end, device_end = serial_line(env, cfg.uart.byte_time_s, seed)
    gantry = Gantry(env, cfg, device_end, seed=seed, faults=plan, data_dir=ddir, event_log=log_path, keep_log=keep_log,
                    link_key=link_key, high_water=high_water)
    return gantry, host_end


def start_virtual_gantry(env: simpy.Environment, config: GantryConfig | str | Path | None = None, *, seed: int = 0,
                         faults: FaultPlan | str | Path | dict | None = None, data_dir: str | Path | None = None,
                         event_log: str | Path | None | Literal["auto"] = "auto",
                         link_key: LinkKey | None = None) -> tuple[Gantry, SerialEndpoint]:
    """Start a simulated gantry in virtual time; returns ``(gantry, host_endpoint)`` (see module docstring)."""
    return build_gantry(env, config, seed=seed, faults=faults, data_dir=data_dir, event_log=event_log,
                        link_key=link_key)
