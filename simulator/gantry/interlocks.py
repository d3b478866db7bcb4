"""Interlocks: operator inputs and sensor states folded into the catalogue's interlock bitmask.

A set bit means the condition is SAFE (catalogue ``interlock_bits``): door closed, e-stop
released, hand switch pressed, paddle present and in range, detector ready, generator ready.
X-rays need every bit (:data:`protocols.wire.catalogue.ALL_INTERLOCKS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.wire.catalogue import ALL_INTERLOCKS, Interlock, SimInput


@dataclass
class OperatorInputs:
    """Inputs the simulated operator (SIM_SET_INPUT, fault schedule) controls.

    Defaults: door closed, e-stop released, hand switch held for the whole exam, paddle mounted.
    """

    door_closed: bool = True
    estop_released: bool = True
    hand_switch: bool = True
    paddle_present: bool = True

    def set(self, which: int, value: bool) -> None:
        """Set input ``which`` (a :class:`SimInput` value)."""
        name = {
            int(SimInput.DOOR_CLOSED): "door_closed",
            int(SimInput.ESTOP_RELEASED): "estop_released",
            int(SimInput.HAND_SWITCH): "hand_switch",
            int(SimInput.PADDLE_PRESENT): "paddle_present",
        }[int(which)]
        setattr(self, name, bool(value))


def interlock_mask(inputs: OperatorInputs, *, paddle_in_range: bool, detector_ready: bool,
                   generator_ready: bool) -> int:
    """The interlock bitmask (set = safe)."""
    bits = 0
    if inputs.door_closed:
        bits |= int(Interlock.DOOR_CLOSED)
    if inputs.estop_released:
        bits |= int(Interlock.ESTOP_RELEASED)
    if inputs.hand_switch:
        bits |= int(Interlock.HAND_SWITCH)
    if paddle_in_range:
        bits |= int(Interlock.PADDLE_IN_RANGE)
    if detector_ready:
        bits |= int(Interlock.DETECTOR_READY)
    if generator_ready:
        bits |= int(Interlock.GENERATOR_READY)
    return bits


def open_bits(mask: int) -> int:
    """Interlocks that are open (not safe) in ``mask``."""
    return ALL_INTERLOCKS & ~mask
