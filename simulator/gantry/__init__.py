"""The simulated gantry: a SimPy model of the device firmware speaking the Crescent wire protocol.

One module per physical actor (SimPy's own examples style): :mod:`.uart` (serial line),
:mod:`.arc` (tube arm), :mod:`.paddle` (compression and the breast), :mod:`.generator` (kV, mAs,
timers, anode heat), :mod:`.detector` (readout and the file data channel), :mod:`.interlocks`,
:mod:`.faults` (injection); :mod:`.firmware` is the dispatcher and state machine;
:mod:`.virtual` starts it in virtual time, :mod:`.realtime` behind a pseudo-terminal or a TCP
socket; :mod:`.config` holds the YAML configuration.

Entry points::

    from simulator.gantry import start_virtual_gantry, load_config, load_faults
"""

from simulator.gantry.config import GantryConfig, load_config
from simulator.gantry.faults import FaultPlan, load_faults
from simulator.gantry.firmware import DEVICE_CAPABILITIES, Gantry
from simulator.gantry.virtual import build_gantry, start_virtual_gantry

__all__ = ["DEVICE_CAPABILITIES", "FaultPlan", "Gantry", "GantryConfig", "build_gantry", "load_config", "load_faults",
           "start_virtual_gantry"]
