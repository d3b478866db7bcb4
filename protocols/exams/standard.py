"""The shipped library of standard exams (``protocols/exams/library/*.yaml``).

Each file's stem is the exam's ``name``. The library:

* ``dbt-standard`` - the default of ``crescent acquire``: +-12.5 deg (25 deg),
  15 projections, continuous motion, AEC. The 25 deg arc matches the default
  GE-like geometry (:class:`protocols.geometry.AcquisitionGeometry`, pivot
  40 mm); 15 projections (1.79 deg apart) sample depth better than GE's 9 and
  suit a 50 um a-Se panel; continuous motion with a 50 ms pulse is what most
  current systems do and exercises the focal-spot motion blur model.
* ``dbt-wide`` - Siemens-Mammomat-Inspiration-like 50 deg / 25 continuous.
* ``dbt-narrow`` - Hologic-Selenia-Dimensions-like 15 deg / 15 continuous in 3.7 s.
* ``dbt-step`` - GE-Senographe-Essential-like 25 deg / 9 step-and-shoot.
* ``ffdm-cc``, ``ffdm-mlo`` - 2D views.
* ``stereo-biopsy`` - the +-15 deg stereotactic pair with a 0 deg scout view;
  compression is held after the exam for the needle.

Example
-------
>>> "dbt-standard" in list_standard_exams()
True
"""

from __future__ import annotations

from importlib import resources

from protocols.exams.io import parse_exam_yaml
from protocols.exams.models import ExamModel

_LIBRARY = resources.files("protocols.exams.library")


def list_standard_exams() -> list[str]:
    """Names of the shipped standard exams, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in _LIBRARY.iterdir() if p.name.endswith(".yaml"))


def standard_exam_yaml(name: str) -> str:
    """YAML text of a shipped exam; raises ``KeyError`` listing the known names."""
    if name not in list_standard_exams():
        raise KeyError(f"no standard exam {name!r}; known: {', '.join(list_standard_exams())}")
    return (_LIBRARY / f"{name}.yaml").read_text(encoding="utf-8")


def load_standard_exam(name: str) -> ExamModel:
    """A shipped exam by name (e.g. ``"dbt-standard"``); raises ``KeyError`` for unknown names."""
    return parse_exam_yaml(standard_exam_yaml(name), source=f"library/{name}.yaml")
