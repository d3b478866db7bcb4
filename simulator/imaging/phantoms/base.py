"""The phantom handed to the imager: voxels and/or analytic objects, plus ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.imaging.phantoms.analytic import AnalyticPhantom
from simulator.imaging.phantoms.voxel import Lesion, VoxelPhantom


@dataclass
class Phantom:
    """Everything the projector needs about an object on the breast support.

    ``thickness_mm`` is the compressed thickness (object spans
    ``support_height_mm .. support_height_mm + thickness_mm`` in z);
    ``glandularity`` is the glandular fraction by weight used for dose;
    ``lesions`` is the ground truth in the gantry frame (mm);
    ``densities_g_cm3`` gives labels of this phantom a density (g/cm^3) other than their material's
    (same composition; e.g. a mass of a chosen contrast), used by the imager's attenuation table.
    """

    name: str
    thickness_mm: float
    support_height_mm: float
    voxels: VoxelPhantom | None = None
    analytic: AnalyticPhantom = field(default_factory=AnalyticPhantom)
    lesions: list[Lesion] = field(default_factory=list)
    glandularity: float = 0.5
    densities_g_cm3: dict[int, float] = field(default_factory=dict)

    @property
    def top_z_mm(self) -> float:
        """z of the upper (paddle-side) surface, mm."""
        return self.support_height_mm + self.thickness_mm

    def material_labels(self) -> list[int]:
        """Sorted non-air labels present in voxels or analytic objects."""
        labs = set(self.analytic.labels())
        if self.voxels is not None:
            labs |= set(self.voxels.present_labels())
        return sorted(labs - {0})
