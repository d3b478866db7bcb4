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

An exam argument (``crescent acquire --exam``, ``exam show``, ``validate``)
is either a library name or a path; :func:`resolve_exam_source` tells them
apart the same way everywhere, and a missing file is "not found" with where
the shipped exams are.

Example
-------
>>> "dbt-standard" in list_standard_exams()
True
>>> resolve_exam_source("dbt-standard").source
'library/dbt-standard.yaml'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from protocols.exams.io import ExamFileError, parse_exam_yaml, read_exam_text
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


def library_location() -> str:
    """Where the shipped exams are: the library folder's path and how to list them."""
    return f"shipped exams are in {_LIBRARY} and listed by `crescent exam list`: {', '.join(list_standard_exams())}"


@dataclass(frozen=True)
class ExamSource:
    """An exam argument resolved: its YAML ``text``, the ``source`` named in messages, and ``path`` for a file."""

    text: str
    source: str
    path: Path | None


def resolve_exam_source(exam: str | os.PathLike[str]) -> ExamSource:
    """The YAML text of an exam argument: an existing file, else a shipped library name.

    A path that exists is read as a file (size-capped, UTF-8 checked); a
    shipped name (``dbt-standard``) gives the library's text. Anything else
    raises :class:`ExamFileError` "not found" naming the argument and
    :func:`library_location`.
    """
    arg = os.fspath(exam)
    p = Path(arg)
    if p.exists():
        return ExamSource(read_exam_text(p), str(p), p)
    if arg in list_standard_exams():
        return ExamSource(standard_exam_yaml(arg), f"library/{arg}.yaml", None)
    looks_like_path = p.suffix in (".yaml", ".yml") or os.sep in arg or (os.altsep or os.sep) in arg
    what = "exam file not found" if looks_like_path else "not found: no exam file and no shipped exam of that name"
    raise ExamFileError(arg, detail=f"{what}; {library_location()}")


def load_exam_arg(exam: str | os.PathLike[str]) -> ExamModel:
    """The exam an argument names (shipped name or path), validated; raises :class:`ExamFileError`."""
    src = resolve_exam_source(exam)
    return parse_exam_yaml(src.text, src.source)
