"""X-ray physics of the simulated gantry: materials, spectra, phantoms, projector, detector, dose.

The gantry model calls :class:`simulator.physics.imaging.ExposureImager` (one per
exam) and :func:`simulator.physics.imaging.make_phantom`; everything else is
the machinery behind them. Units: mm, keV, mGy, degrees; frame: the gantry
frame of :mod:`protocols.geometry`.
"""
