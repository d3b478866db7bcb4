"""The virtual device: the simulated gantry (:mod:`simulator.gantry`) and its image formation (:mod:`simulator.imaging`).

Layer 3 of DESIGN.md: imports :mod:`protocols` and :mod:`physics`; the host (:mod:`firmware_host`) and
:mod:`reconstruction` never import it.
"""
