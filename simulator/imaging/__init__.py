"""Image formation of the simulated gantry: phantoms, cone-beam projector, a-Se detector model.

The gantry model calls :class:`simulator.imaging.imager.ExposureImager` (one per
exam) and :func:`simulator.imaging.imager.make_phantom`; everything else is
the machinery behind them. Attenuation, spectra and dose come from :mod:`physics`.
Units: mm, keV, mGy, degrees; frame: the gantry frame of :mod:`protocols.geometry`.
"""
