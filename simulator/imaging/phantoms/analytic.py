"""Analytic phantom objects with exact cone-beam line integrals.

Every shape answers two questions in the gantry frame (mm, see
:mod:`protocols.geometry`):

* ``interval(s, v)``: for rays ``p(t) = s + t v`` (``s`` the focal spot,
  ``v = d - s`` with ``d`` a detector pixel centre, so ``t`` in [0, 1] spans the
  segment source -> pixel), the entry and exit parameters ``(t0, t1)``. Shapes
  are convex, so the chord length is ``|v| * max(0, min(t1, 1) - max(t0, 0))``.
  Quadrics are solved in closed form; boxes and slabs by the slab method.
* ``contains(points)``: inside test, used for voxelisation.

An :class:`AnalyticObject` puts a shape into a material (voxel label of
:mod:`physics.materials`) and may *replace* another material (a
mass inside adipose: the adipose line integral loses what the mass gains).

Example
-------
>>> s = Sphere(centre=(0.0, 50.0, 30.0), radius=5.0)
>>> src = np.array([0.0, 50.0, 660.0]); pix = np.array([[0.0, 50.0, 0.0]])
>>> round(float(chord_lengths(s, src, pix)[0]), 6)
10.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

_BIG = 1e30


def rot_z(deg: float) -> np.ndarray:
    """Rotation matrix about +z by ``deg`` degrees (maps local -> gantry frame)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(deg: float) -> np.ndarray:
    """Rotation matrix about +y by ``deg`` degrees (maps local -> gantry frame)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _to_local(rotation: np.ndarray, centre: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Gantry-frame points/vectors ``p`` (N,3) into the shape's local frame (centre removed if given)."""
    return (p - centre) @ rotation


def _slab(o: np.ndarray, d: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Parameter interval where ``lo <= o + t d <= hi`` (slab method, 1-D)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ta = (lo - o) / d
        tb = (hi - o) / d
    t0 = np.where(d != 0, np.minimum(ta, tb), np.where((o >= lo) & (o <= hi), -_BIG, _BIG))
    t1 = np.where(d != 0, np.maximum(ta, tb), np.where((o >= lo) & (o <= hi), _BIG, -_BIG))
    return t0, t1


def _unit_sphere(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval of rays ``o + t d`` (N,3) inside the unit sphere (closed-form quadratic)."""
    a = np.einsum("ij,ij->i", d, d)
    b = np.einsum("ij,ij->i", o, d)
    c = np.einsum("ij,ij->i", o, o) - 1.0
    disc = b * b - a * c
    ok = disc > 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    t0 = np.where(ok, (-b - sq) / a, _BIG)
    t1 = np.where(ok, (-b + sq) / a, -_BIG)
    return t0, t1


class Shape(Protocol):
    """What a convex analytic shape provides."""

    def interval(self, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def contains(self, points: np.ndarray) -> np.ndarray: ...

    def bounds(self) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid: centre (mm), semi-axes (mm) along the local axes, local->gantry rotation."""

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def interval(self, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ax = np.asarray(self.semi_axes)
        o = _to_local(self.rotation, np.asarray(self.centre), s) / ax
        d = (v @ self.rotation) / ax
        return _unit_sphere(o, d)

    def contains(self, points: np.ndarray) -> np.ndarray:
        q = _to_local(self.rotation, np.asarray(self.centre), points) / np.asarray(self.semi_axes)
        return np.einsum("ij,ij->i", q, q) <= 1.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        ext = np.sqrt(((self.rotation * np.asarray(self.semi_axes)) ** 2).sum(axis=1))
        return np.asarray(self.centre) - ext, np.asarray(self.centre) + ext


def Sphere(centre: tuple[float, float, float], radius: float) -> Ellipsoid:
    """A sphere of ``radius`` mm (an ellipsoid with equal semi-axes)."""
    return Ellipsoid(centre, (radius, radius, radius))


@dataclass(frozen=True)
class Cylinder:
    """Right circular cylinder; local z is the axis. ``half_height`` mm along the axis."""

    centre: tuple[float, float, float]
    radius: float
    half_height: float
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def interval(self, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        o = _to_local(self.rotation, np.asarray(self.centre), s)
        d = v @ self.rotation
        o2 = o.copy(); o2[:, 2] = 0.0
        d2 = d.copy(); d2[:, 2] = 0.0
        # infinite cylinder: quadratic in the local xy plane (parallel rays give the slab case)
        r = self.radius
        a = np.einsum("ij,ij->i", d2, d2)
        b = np.einsum("ij,ij->i", o2, d2)
        c = np.einsum("ij,ij->i", o2, o2) - r * r
        par = a < 1e-300
        disc = b * b - a * c
        ok = (disc > 0) & ~par
        sq = np.sqrt(np.where(ok, disc, 0.0))
        aa = np.where(par, 1.0, a)
        t0 = np.where(ok, (-b - sq) / aa, np.where(par & (c <= 0), -_BIG, _BIG))
        t1 = np.where(ok, (-b + sq) / aa, np.where(par & (c <= 0), _BIG, -_BIG))
        z0, z1 = _slab(o[:, 2], d[:, 2], -self.half_height, self.half_height)
        return np.maximum(t0, z0), np.minimum(t1, z1)

    def contains(self, points: np.ndarray) -> np.ndarray:
        q = _to_local(self.rotation, np.asarray(self.centre), points)
        return (q[:, 0] ** 2 + q[:, 1] ** 2 <= self.radius**2) & (np.abs(q[:, 2]) <= self.half_height)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.array([self.radius, self.radius, self.half_height])
        ext = np.abs(self.rotation) @ half
        return np.asarray(self.centre) - ext, np.asarray(self.centre) + ext


@dataclass(frozen=True)
class Box:
    """Oriented box: centre, half sizes along the local axes (mm), local->gantry rotation."""

    centre: tuple[float, float, float]
    half_size: tuple[float, float, float]
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def interval(self, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        o = _to_local(self.rotation, np.asarray(self.centre), s)
        d = v @ self.rotation
        t0 = np.full(o.shape[0], -_BIG)
        t1 = np.full(o.shape[0], _BIG)
        for k in range(3):
            a, b = _slab(o[:, k], d[:, k], -self.half_size[k], self.half_size[k])
            t0 = np.maximum(t0, a)
            t1 = np.minimum(t1, b)
        return t0, t1

    def contains(self, points: np.ndarray) -> np.ndarray:
        q = np.abs(_to_local(self.rotation, np.asarray(self.centre), points))
        return np.all(q <= np.asarray(self.half_size), axis=1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        ext = np.abs(self.rotation) @ np.asarray(self.half_size)
        return np.asarray(self.centre) - ext, np.asarray(self.centre) + ext


@dataclass(frozen=True)
class HalfSpaceSlab:
    """Edge object: the half-space ``normal . p <= offset`` cut to ``z0 <= z <= z1`` and a lateral box.

    ``limits`` ((xmin, xmax), (ymin, ymax)) bounds it laterally so that it stays
    finite (mm). With a normal tilted a few degrees from the x axis this is the
    slanted-edge test device.
    """

    normal: tuple[float, float, float]
    offset: float
    z0: float
    z1: float
    limits: tuple[tuple[float, float], tuple[float, float]] = ((-1e4, 1e4), (-1e4, 1e4))

    def interval(self, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.asarray(self.normal, dtype=np.float64)
        on = s @ n
        dn = v @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            th = (self.offset - on) / dn
        t0 = np.where(dn < 0, th, np.where(dn > 0, -_BIG, np.where(on <= self.offset, -_BIG, _BIG)))
        t1 = np.where(dn > 0, th, np.where(dn < 0, _BIG, np.where(on <= self.offset, _BIG, -_BIG)))
        for k, (lo, hi) in enumerate((*self.limits, (self.z0, self.z1))):
            a, b = _slab(s[:, k], v[:, k], lo, hi)
            t0 = np.maximum(t0, a)
            t1 = np.minimum(t1, b)
        return t0, t1

    def contains(self, points: np.ndarray) -> np.ndarray:
        inside = points @ np.asarray(self.normal) <= self.offset
        for k, (lo, hi) in enumerate((*self.limits, (self.z0, self.z1))):
            inside &= (points[:, k] >= lo) & (points[:, k] <= hi)
        return inside

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        (x0, x1), (y0, y1) = self.limits
        return np.array([x0, y0, self.z0]), np.array([x1, y1, self.z1])


def chord_lengths(shape: Shape, source: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Exact length (mm) of each segment ``source -> points[i]`` inside ``shape``; shape (N,)."""
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    s = np.broadcast_to(np.asarray(source, dtype=np.float64), pts.shape)
    v = pts - s
    t0, t1 = shape.interval(s, v)
    return np.linalg.norm(v, axis=1) * np.clip(np.minimum(t1, 1.0) - np.maximum(t0, 0.0), 0.0, None)


@dataclass(frozen=True)
class AnalyticObject:
    """A shape filled with material ``label``; if ``replaces`` is set, that material is displaced."""

    shape: Shape
    label: int
    replaces: int | None = None


@dataclass
class AnalyticPhantom:
    """A list of analytic objects. Objects of one label must not overlap each other."""

    objects: list[AnalyticObject] = field(default_factory=list)

    def labels(self) -> list[int]:
        """Material labels that occur (including displaced ones)."""
        out = {o.label for o in self.objects} | {o.replaces for o in self.objects if o.replaces is not None}
        return sorted(out - {0})
