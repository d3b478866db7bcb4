"""QA phantoms, all analytic (exact line integrals), all with ground truth.

* :func:`uniform_phantom` -- nothing in the beam (flat field);
* :func:`pmma_phantom` -- a PMMA slab (20-70 mm are the standard dosimetry
  thicknesses, EUREF/European guidelines) on the support;
* :func:`edge_phantom` -- a 1 mm tungsten plate on the detector surface
  (z = 0..1 mm), its edge tilted ``tilt_deg`` (default 3 deg) from the column
  direction, for the IEC 62220-1 slanted-edge MTF;
* :func:`bead_phantom` -- 1 mm steel beads at known 3-D positions at several
  heights above the support, for geometric calibration;
* :func:`contrast_detail_phantom` -- aluminium discs of several diameters and
  thicknesses embedded in a PMMA slab (CDMAM-like).
"""

from __future__ import annotations

import math



from physics.materials import LABEL_OF
from simulator.imaging.phantoms.analytic import AnalyticObject, AnalyticPhantom, Box, Cylinder, HalfSpaceSlab, Sphere
from simulator.imaging.phantoms.base import Phantom
from simulator.imaging.phantoms.voxel import Lesion


def uniform_phantom(support_height_mm: float) -> Phantom:
    """Open field: no attenuator (the flat-field / gain calibration exposure)."""
    return Phantom("uniform", 0.0, support_height_mm, glandularity=0.5)


def _slab(support_height_mm: float, thickness_mm: float, width_mm: float, depth_mm: float) -> AnalyticObject:
    return AnalyticObject(Box((0.0, 0.5 * depth_mm, support_height_mm + 0.5 * thickness_mm),
                              (0.5 * width_mm, 0.5 * depth_mm, 0.5 * thickness_mm)), LABEL_OF["pmma"])


def pmma_phantom(thickness_mm: float, support_height_mm: float, *, width_mm: float = 240.0,
                 depth_mm: float = 180.0, contrast_al_mm: float = 0.0, contrast_size_mm: float = 10.0) -> Phantom:
    """PMMA slab of ``thickness_mm`` on the support, covering the field from the chest wall.

    ``contrast_al_mm`` > 0 adds a ``contrast_size_mm`` square of aluminium that thick on top of the slab,
    centred 60 mm from the chest wall (the EUREF SDNR object: 0.2 mm Al, 10 mm square).
    """
    if contrast_al_mm > 0:
        top = support_height_mm + thickness_mm
        al = AnalyticObject(Box((0.0, 60.0, top + 0.5 * contrast_al_mm),
                                (0.5 * contrast_size_mm, 0.5 * contrast_size_mm, 0.5 * contrast_al_mm)),
                            LABEL_OF["aluminium"])
        return Phantom("pmma", thickness_mm, support_height_mm,
                       analytic=AnalyticPhantom([_slab(support_height_mm, thickness_mm, width_mm, depth_mm), al]))
    return Phantom("pmma", thickness_mm, support_height_mm, analytic=AnalyticPhantom([_slab(support_height_mm, thickness_mm, width_mm, depth_mm)]))


def edge_phantom(*, tilt_deg: float = 3.0, plate_mm: float = 1.0, x_edge_mm: float = 0.0,
                 extent_mm: float = 50.0, support_height_mm: float = 0.0, height_mm: float = 0.0) -> Phantom:
    """Tungsten plate lying on the detector (z = 0..plate_mm) covering x > edge; edge tilted by ``tilt_deg``.

    ``height_mm`` raises the plate above the detector (z = height..height+plate_mm), where the focal
    spot's blur shows. The edge line passes through ``(x_edge_mm, extent_mm/2)`` and runs mostly
    along y (rows), so the MTF is measured along x (columns).
    """
    t = math.radians(tilt_deg)
    normal = (-math.cos(t), math.sin(t), 0.0)  # inside: -cos t x + sin t y <= offset  <=> x >= ...
    y_mid = 0.5 * extent_mm
    offset = -math.cos(t) * x_edge_mm + math.sin(t) * y_mid
    shape = HalfSpaceSlab(normal, offset, height_mm, height_mm + plate_mm, ((x_edge_mm - extent_mm, x_edge_mm + extent_mm), (0.0, extent_mm)))
    return Phantom("edge", height_mm + plate_mm, support_height_mm, analytic=AnalyticPhantom([AnalyticObject(shape, LABEL_OF["tungsten"])]))


def bead_phantom(support_height_mm: float, *, heights_mm: tuple[float, ...] = (5.0, 25.0, 45.0),
                 diameter_mm: float = 1.0, spacing_mm: float = 30.0) -> Phantom:
    """Steel beads on a 3 x 2 grid at each height above the support (in air)."""
    objs, truth = [], []
    for n, h in enumerate(heights_mm):
        for ix in (-1, 0, 1):
            for iy in (1, 2):
                c = (ix * spacing_mm + n * 4.0, iy * spacing_mm + n * 4.0, support_height_mm + h)
                objs.append(AnalyticObject(Sphere(c, 0.5 * diameter_mm), LABEL_OF["steel"]))
                truth.append(Lesion("bead", c, diameter_mm, LABEL_OF["steel"]))
    return Phantom("beads", max(heights_mm) + diameter_mm, support_height_mm, analytic=AnalyticPhantom(objs), lesions=truth)


def contrast_detail_phantom(support_height_mm: float, *, slab_mm: float = 45.0,
                            diameters_mm: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0),
                            thicknesses_mm: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)) -> Phantom:
    """Aluminium discs (diameter x thickness grid) at mid-height in a PMMA slab; truth lists each disc."""
    objs = [_slab(support_height_mm, slab_mm, 240.0, 180.0)]
    truth = []
    zc = support_height_mm + 0.5 * slab_mm
    for i, d in enumerate(diameters_mm):
        for j, t in enumerate(thicknesses_mm):
            c = ((i - (len(diameters_mm) - 1) / 2) * 12.0, 20.0 + j * 12.0, zc)
            objs.append(AnalyticObject(Cylinder(c, 0.5 * d, 0.5 * t), LABEL_OF["aluminium"], replaces=LABEL_OF["pmma"]))
            truth.append(Lesion(f"disc t={t:g}mm", c, d, LABEL_OF["aluminium"]))
    return Phantom("contrast-detail", slab_mm, support_height_mm, analytic=AnalyticPhantom(objs), lesions=truth)




#: Chest-wall ruler: distances (mm) of its two tungsten edges from the support's chest-wall edge.
RULER_EDGES_MM = (10.0, 15.0)


def chest_wall_ruler_phantom(support_height_mm: float, *, support_edge_y_mm: float = 0.0, width_mm: float = 40.0,
                             plate_mm: float = 1.0) -> Phantom:
    """A radio-opaque ruler (1 mm tungsten) lying on the support against its chest-wall edge, for missed tissue.

    Tungsten covers ``y`` from 10 mm beyond the support edge (over the patient side) to
    :data:`RULER_EDGES_MM` [0] from it, and again from ``RULER_EDGES_MM[1]`` to 10 mm further: two
    edges parallel to the chest wall at known distances from the support edge (``support_edge_y_mm``, the
    gantry frame's y of that edge: minus the gantry's chest-wall gap). ``width_mm`` along x, centred.
    ``lesions`` holds the two edges' truth (centre y, z of the plate top).
    """
    e0, e1 = RULER_EDGES_MM
    w = LABEL_OF["tungsten"]
    z = support_height_mm + 0.5 * plate_mm
    y0 = support_edge_y_mm
    objs = [AnalyticObject(Box((0.0, y0 + 0.5 * (e0 - 10.0), z), (0.5 * width_mm, 0.5 * (e0 + 10.0), 0.5 * plate_mm)), w),
            AnalyticObject(Box((0.0, y0 + e1 + 5.0, z), (0.5 * width_mm, 5.0, 0.5 * plate_mm)), w)]
    truth = [Lesion("ruler edge", (0.0, y0 + e, support_height_mm + plate_mm), 0.0, w) for e in (e0, e1)]
    return Phantom("chest-wall-ruler", plate_mm, support_height_mm, analytic=AnalyticPhantom(objs), lesions=truth)


def ghost_phantom(support_height_mm: float, *, slab_mm: float = 45.0, x_edge_mm: float = 0.0,
                  al_x_mm: float = 65.0, al_mm: float = 0.1, al_size_mm: float = 10.0) -> Phantom:
    """EUREF ghost-image set-up: a PMMA slab covering ``x >= x_edge_mm`` (half the field) with a 0.1 mm Al
    square of ``al_size_mm`` on top at ``x = al_x_mm``, 60 mm from the chest wall.

    The QC exam moves it by -50 mm in x after the first projection (seeded phantom motion), so that the slab
    then covers the whole read-out area and the Al lies where the slab shielded the panel before.
    """
    top = support_height_mm + slab_mm
    slab = AnalyticObject(Box((x_edge_mm + 120.0, 90.0, support_height_mm + 0.5 * slab_mm),
                              (120.0, 90.0, 0.5 * slab_mm)), LABEL_OF["pmma"])
    al = AnalyticObject(Box((al_x_mm, 60.0, top + 0.5 * al_mm), (0.5 * al_size_mm, 0.5 * al_size_mm, 0.5 * al_mm)),
                        LABEL_OF["aluminium"])
    truth = [Lesion("al", (al_x_mm, 60.0, top + al_mm), al_size_mm, LABEL_OF["aluminium"])]
    return Phantom("ghost", slab_mm, support_height_mm, analytic=AnalyticPhantom([slab, al]), lesions=truth)
