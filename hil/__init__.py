"""HIL and CI tooling: rig descriptions, protocol conformance, pytest plugin, capture/replay, exam validation.

See ``hil/README.md``. Modules import lazily what they drive (host controller, simulated gantry),
so ``import hil`` and the pytest plugin stay cheap.
"""
