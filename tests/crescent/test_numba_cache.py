"""``python -m crescent.numba_cache`` (run by ``make`` after installing): it reaches every numba kernel of the
product, so that no process of a fresh checkout compiles one again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Modules holding ``@njit(cache=True)`` kernels.
KERNEL_MODULES = ("physics.dose_mc", "physics.scatter_mc", "simulator.imaging.projector", "simulator.imaging.detector",
                  "simulator.imaging.scatter", "simulator.imaging.phantoms.breast", "simulator.imaging.phantoms.runs",
                  "reconstruction._kernels")
#: Kernels the warm-up does not call from Python: helpers compiled into the kernels that call them, and the
#: voxel projector's reference implementation (tests and benchmarks only).
NOT_CALLED = {"physics.dose_mc._sample_klein_nishina", "physics.dose_mc._sample_coherent", "physics.dose_mc._rotate",
              "physics.dose_mc._entry_distance", "simulator.imaging.projector._cf",
              "reconstruction._kernels._accumulate_row", "simulator.imaging.projector._voxel_kernel"}

PROBE = """
import importlib, json, sys
from numba.core.registry import CPUDispatcher
from crescent import numba_cache
numba_cache.main([])
kernels = {}
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    for attr, obj in vars(module).items():
        if isinstance(obj, CPUDispatcher) and obj.__module__ == name:
            kernels[name + "." + attr] = len(obj.signatures)
print("KERNELS " + json.dumps(kernels))
"""


def test_the_warm_up_compiles_every_kernel_the_product_calls() -> None:
    """In a fresh process: after the warm-up, every kernel but the helpers and the reference projector has a
    compiled signature (a kernel added later and not reached by the warm-up fails this test)."""
    res = subprocess.run([sys.executable, "-c", PROBE, *KERNEL_MODULES], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    for part in ("imaging", "reconstruction", "dose Monte Carlo", "scatter Monte Carlo"):
        assert any(line.startswith(f"numba kernels, {part}") and line.endswith(" s") for line in lines), lines
    kernels = json.loads(next(line for line in lines if line.startswith("KERNELS "))[len("KERNELS "):])
    assert {k.rsplit(".", 1)[0] for k in kernels} == set(KERNEL_MODULES)
    assert NOT_CALLED <= set(kernels)
    assert {k for k, n in kernels.items() if n == 0} == NOT_CALLED
