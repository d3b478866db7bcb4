"""The trial file: cohort, arms, gantry, imaging and observers, as a validated pydantic model.

A trial file is YAML (safe loader, duplicate keys refused, at most :data:`MAX_FILE_BYTES`). Every
model refuses unknown fields; errors name the field path, the value and the rule, e.g.::

    trial.yaml: 2 problem(s)
      - cohort.n_cases = 0: Input should be greater than or equal to 1
      - arms.1.exam = 'dbt-huge': not a library exam (dbt-narrow, dbt-standard, ...) nor an existing file

Units: mm, mAs, g/cm^3 (mass density), N (case counts), fractions 0..1. ``crescent trial schema`` prints the JSON Schema.

The *trial hash* (:meth:`TrialSpec.trial_hash`) covers everything that changes one case's images
(cohort distributions, lesions, arms, gantry, imaging) but not ``n_cases``, the observers or the
bootstrap: growing a trial or re-scoring it reuses every finished case.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

#: Largest trial file read, bytes.
MAX_FILE_BYTES = 256 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _within(v: "Uniform | Normal", lo: float, hi: float, what: str, unit: str = "") -> "Uniform | Normal":
    """``v`` if its range [low, high] lies within [lo, hi]; else a ValueError naming the range and the limits."""
    if v.low < lo or v.high > hi:
        raise ValueError(f"{what} [{v.low}, {v.high}]{unit} outside {lo:g}-{hi:g}{unit}")
    return v


class Uniform(_Model):
    """A uniform distribution on ``[low, high]`` (units of the field it sets)."""

    distribution: Literal["uniform"] = "uniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if self.high < self.low:
            raise ValueError(f"high={self.high} is below low={self.low}")
        return self


class Normal(_Model):
    """A normal distribution (``mean``, ``sd``) clipped to ``[low, high]``."""

    distribution: Literal["normal"]
    mean: float
    sd: float = Field(..., ge=0.0)
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Normal":
        if self.high < self.low:
            raise ValueError(f"high={self.high} is below low={self.low}")
        return self


def _which(v: Any) -> str:
    """Distribution kind of raw data or a model; ``uniform`` when not given."""
    return v.get("distribution", "uniform") if isinstance(v, dict) else getattr(v, "distribution", "uniform")


Distribution = Annotated[Union[Annotated[Uniform, Tag("uniform")], Annotated[Normal, Tag("normal")]],
                         Discriminator(_which)]


class Texture(_Model):
    """Parenchymal texture: a 1/f^beta Gaussian random field thresholded at the glandular fraction."""

    beta: float = Field(3.0, ge=1.0, le=4.0, description="power-law exponent of the 3-D texture spectrum")
    scale_mm: float = Field(0.5, ge=0.1, le=5.0, description="grid step of the texture field, mm")


#: Density of the simulator's mass tissue, g/cm^3 (``physics.materials.MASS``: glandular composition at 1.06).
MASS_DENSITY_G_CM3 = 1.06
#: Accepted mass densities, g/cm^3: 1.00-1.20, i.e. -3.8 % to +15.4 % linear attenuation against glandular
#: tissue (1.04 g/cm^3), at every energy (same composition).
MASS_DENSITY_RANGE_G_CM3 = (1.0, 1.2)
#: Density of glandular tissue, g/cm^3 (``physics.materials.GLANDULAR``, Hammerstein 1979).
GLANDULAR_DENSITY_G_CM3 = 1.04


class Mass(_Model):
    """Masses: ellipsoids of mass tissue (voxelised), optionally with spicules.

    Contrast: mass tissue is glandular tissue (Hammerstein 1979 composition) at density ``density_g_cm3``, so
    its linear attenuation is ``density_g_cm3 / 1.04`` times glandular tissue's at every energy (the contrast
    against the surrounding parenchyma scales with that ratio minus one). The default 1.06 g/cm^3 (+1.9 %) is
    the simulator's mass material; infiltrating ductal carcinoma attenuates like fibroglandular tissue to
    within a few per cent (Johns & Yaffe 1987).
    """

    type: Literal["mass"] = "mass"
    weight: float = Field(1.0, gt=0.0, description="relative frequency among lesion types")
    diameter_mm: Distribution = Field(default_factory=lambda: Uniform(low=4.0, high=8.0))
    spiculated_fraction: float = Field(0.0, ge=0.0, le=1.0, description="fraction of masses with spicules")
    spicules: int = Field(8, ge=1, le=40, description="spicules on a spiculated mass")
    spicule_length_mm: float = Field(3.0, gt=0.0, le=20.0, description="spicule length beyond the mass, mm")
    density_g_cm3: Distribution = Field(
        default_factory=lambda: Uniform(low=MASS_DENSITY_G_CM3, high=MASS_DENSITY_G_CM3),
        description="density of the mass tissue (glandular composition), g/cm^3: its linear attenuation is "
                    "density / 1.04 times glandular tissue's at every energy; default 1.06 (+1.9 %), range 1.00-1.20")

    @field_validator("diameter_mm")
    @classmethod
    def _size(cls, v: Uniform | Normal) -> Uniform | Normal:
        return _within(v, 1.0, 30.0, "mass diameters", " mm")

    @field_validator("density_g_cm3")
    @classmethod
    def _density(cls, v: Uniform | Normal) -> Uniform | Normal:
        lo, hi = MASS_DENSITY_RANGE_G_CM3
        return _within(v, lo, hi, "mass densities", " g/cm3")


class CalcificationCluster(_Model):
    """Clusters of microcalcifications: exact (analytic) spheres displacing the tissue around them."""

    type: Literal["calcification_cluster"] = "calcification_cluster"
    weight: float = Field(1.0, gt=0.0, description="relative frequency among lesion types")
    diameter_mm: Distribution = Field(default_factory=lambda: Uniform(low=0.2, high=0.4))
    count: int = Field(6, ge=1, le=50, description="calcifications per cluster")
    spread_mm: float = Field(1.5, gt=0.0, le=10.0, description="in-plane sd of calcification positions, mm")
    material: Literal["hydroxyapatite", "calcium_oxalate"] = Field(
        "hydroxyapatite", description="type II (hydroxyapatite) or type I (calcium oxalate): sets the contrast")

    @field_validator("diameter_mm")
    @classmethod
    def _size(cls, v: Uniform | Normal) -> Uniform | Normal:
        return _within(v, 0.05, 2.0, "calcification diameters", " mm")


Lesion = Annotated[Union[Mass, CalcificationCluster], Field(discriminator="type")]


class Cohort(_Model):
    """The virtual patients: how many, their breasts and their lesions (all drawn from per-case seeds)."""

    n_cases: int = Field(..., ge=1, le=100_000, description="virtual patients")
    seed: int = Field(..., ge=0, le=2**63 - 1, description="trial seed; case i uses SeedSequence([seed, i])")
    thickness_mm: Distribution = Field(default_factory=lambda: Uniform(low=40.0, high=60.0))
    glandularity: Distribution = Field(default_factory=lambda: Uniform(low=0.1, high=0.4),
                                       description="glandular volume fraction of the tissue")
    texture: Texture = Field(default_factory=Texture)
    lesions: list[Lesion] = Field(..., min_length=1, description="lesion types to draw from (by weight)")
    lesion_present_fraction: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of cases with a lesion")

    @field_validator("thickness_mm")
    @classmethod
    def _thickness(cls, v: Uniform | Normal) -> Uniform | Normal:
        return _within(v, 20.0, 90.0, "compressed thickness", " mm")

    @field_validator("glandularity")
    @classmethod
    def _glandularity(cls, v: Uniform | Normal) -> Uniform | Normal:
        return _within(v, 0.01, 0.99, "glandularity")


class Arm(_Model):
    """One imaging arm: an exam (library name or file) and an optional dose scale."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$", description="arm label")
    exam: str = Field(..., min_length=1, description="library exam name (e.g. dbt-standard) or exam file path")
    dose_scale: float = Field(1.0, gt=0.0, le=4.0, description="factor on every projection's mAs after the AEC")


class Imaging(_Model):
    """Size of what is simulated per case (a breast sub-volume around the lesion and a control site)."""

    pitch_mm: float = Field(0.1, ge=0.05, le=0.4, description="detector pitch after binning, mm")
    phantom_voxel_mm: float = Field(0.2, ge=0.05, le=0.5, description="voxel size of the breast sub-volume, mm")
    roi_mm: float = Field(10.0, ge=2.0, le=40.0, description="side of the square ROIs, mm")
    scatter: bool = Field(False, description="add the detector's scatter model")
    motion_substeps: int = Field(5, ge=1, le=20, description="most focal-spot samples along a window's travel (gantry default 5)")


class GantrySubset(_Model):
    """Cases imaged through the virtual-time simulated gantry over the wire instead of the direct path.

    Exactly one of ``cases`` (the first K cases of the cohort: each case is already a seeded random patient,
    so they are a random sample, and growing the cohort never changes them) or ``fraction`` (each case
    independently, from its own seed; stable as the cohort grows). ``arms``: which arms (default all).
    Every such case is also imaged through the direct path and cross-checked (:mod:`crescent.trial.gantry`).
    """

    cases: int | None = Field(None, ge=1, le=100_000, description="the first K cases of the cohort")
    fraction: float | None = Field(None, gt=0.0, le=1.0, description="each case with this probability (seeded)")
    arms: list[str] | None = Field(None, min_length=1, description="arms imaged over the wire (default: all)")

    @model_validator(mode="after")
    def _one(self) -> "GantrySubset":
        if (self.cases is None) == (self.fraction is None):
            raise ValueError("give exactly one of cases (the first K cases) or fraction (0 < f <= 1), "
                             f"got cases={self.cases}, fraction={self.fraction}")
        return self


class TrialSpec(_Model):
    """A whole trial file."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    cohort: Cohort
    arms: list[Arm] = Field(..., min_length=1, max_length=8)
    gantry: str = Field("default", description="gantry preset name or configuration file (geometry, detector)")
    imaging: Imaging = Field(default_factory=Imaging)
    observers: list[Literal["cho-lg", "cho-gabor", "npw"]] = Field(
        default_factory=lambda: ["cho-lg", "npw"], min_length=1)
    bootstrap: int = Field(1000, ge=0, le=100_000, description="bootstrap resamples for the intervals")
    gantry_subset: GantrySubset | None = Field(
        None, description="cases imaged through the virtual-time simulated gantry over the wire (and cross-checked "
                          "against the direct path); default none")

    @field_validator("arms")
    @classmethod
    def _unique_arms(cls, v: list[Arm]) -> list[Arm]:
        names = [a.name for a in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"arm names must be unique, repeated: {', '.join(dup)}")
        return v

    @field_validator("imaging")
    @classmethod
    def _binning(cls, v: Imaging) -> Imaging:
        ratio = v.pitch_mm / 0.05
        if abs(ratio - round(ratio)) > 1e-6 or not 1 <= round(ratio) <= 8:
            raise ValueError(f"pitch_mm={v.pitch_mm} must be the 0.05 mm del pitch times a binning of 1-8")
        return v

    @model_validator(mode="after")
    def _subset_arms(self) -> "TrialSpec":
        sub = self.gantry_subset
        if sub is not None and sub.arms is not None:
            names = [a.name for a in self.arms]
            unknown = [a for a in sub.arms if a not in names]
            if unknown:
                raise ValueError(f"gantry_subset.arms names arms the trial does not have: {', '.join(unknown)} "
                                 f"(arms: {', '.join(names)})")
        return self

    def trial_hash(self) -> str:
        """Hex SHA-256 (16 digits) of what sets a case's images (not n_cases, observers, bootstrap).

        Options at their defaults that older trial files could not state (``gantry_subset`` unset, a mass's
        ``density_g_cm3`` at 1.06) are left out, so such a file keeps its hash and its finished cases.
        """
        data = self.model_dump(mode="json", exclude={"description": True, "observers": True, "bootstrap": True,
                                                     "cohort": {"n_cases"}})
        if data.get("gantry_subset") is None:
            data.pop("gantry_subset", None)
        default_density = Uniform(low=MASS_DENSITY_G_CM3, high=MASS_DENSITY_G_CM3).model_dump(mode="json")
        for les in data["cohort"]["lesions"]:
            if les.get("type") == "mass" and les.get("density_g_cm3") == default_density:
                del les["density_g_cm3"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class TrialFileError(ValueError):
    """A trial file that cannot be read or does not match :class:`TrialSpec` (message lists every problem)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loader that refuses duplicate mapping keys."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            m = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (line {m.line + 1})", m)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _describe(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p) in ("uniform", "normal", "mass", "calcification_cluster"))
        val = e.get("input")
        shown = repr(val) if not isinstance(val, (dict, list)) else type(val).__name__
        out.append(f"- {loc or '<top>'} = {shown}: {e['msg']}")
    return out


def trial_from_data(data: Any, source: str = "<data>", base_dir: Path | None = None) -> TrialSpec:
    """Validate plain data into a :class:`TrialSpec`; exam references are checked too."""
    if not isinstance(data, dict):
        raise TrialFileError(f"{source}: the document must be a mapping of trial fields, got {type(data).__name__}")
    try:
        spec = TrialSpec.model_validate(data)
    except ValidationError as err:
        lines = _describe(err)
        raise TrialFileError("\n  ".join([f"{source}: {len(lines)} problem(s)", *lines])) from None
    problems = []
    for i, arm in enumerate(spec.arms):
        try:
            resolve_exam(arm.exam, base_dir)
        except (KeyError, ValueError, OSError) as exc:
            why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            problems.append(f"- arms.{i}.exam = {arm.exam!r}: {why}")
    if problems:
        raise TrialFileError("\n  ".join([f"{source}: {len(problems)} problem(s)", *problems]))
    return spec


def parse_trial_yaml(text: str, source: str = "<text>", base_dir: Path | None = None) -> TrialSpec:
    """Parse trial YAML text (size-capped, duplicate keys refused) and validate it."""
    if len(text.encode()) > MAX_FILE_BYTES:
        raise TrialFileError(f"{source}: {len(text.encode())} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TrialFileError(f"{source}: not valid YAML: {exc}") from None
    return trial_from_data(data, source, base_dir)


def load_trial(path: str | Path) -> TrialSpec:
    """Read and validate a trial file (exam file paths are taken relative to it)."""
    p = Path(path)
    if not p.is_file():
        raise TrialFileError(f"{p}: no such trial file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise TrialFileError(f"{p}: {p.stat().st_size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    return parse_trial_yaml(p.read_text(), str(p), p.parent)


def resolve_exam(ref: str, base_dir: Path | None = None) -> Any:
    """The exam of an arm: a library name, else a file (relative to ``base_dir``)."""
    from protocols.exams import list_standard_exams, load_exam, load_standard_exam

    if ref in list_standard_exams():
        return load_standard_exam(ref)
    p = Path(ref)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if p.is_file():
        return load_exam(p)
    raise KeyError(f"not a library exam ({', '.join(list_standard_exams())}) nor an existing file")


def trial_json_schema() -> dict[str, Any]:
    """JSON Schema of the trial file."""
    schema = TrialSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Crescent virtual clinical trial"
    return schema
