"""The usage examples in the reconstruction docstrings run and give what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "reconstruction.geometry", "reconstruction.preprocess", "reconstruction.filters", "reconstruction.projector",
    "reconstruction.fbp", "reconstruction.iterative", "reconstruction.stereo", "reconstruction.calibration",
    "reconstruction.markers", "reconstruction.analysis.mtf", "reconstruction.analysis.nps",
    "reconstruction.analysis.contrast", "reconstruction.analysis.depth",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_reconstruction_does_not_import_simulator():
    """DESIGN.md layout rule: reconstruction works on data alone, never through the simulator package."""
    from pathlib import Path

    import reconstruction

    root = Path(reconstruction.__file__).parent
    offenders = [p.name for p in root.rglob("*.py")
                 if any(line.strip().startswith(("import simulator", "from simulator"))
                        for line in p.read_text().splitlines())]
    assert offenders == []
