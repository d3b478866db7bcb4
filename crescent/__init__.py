"""Crescent, the application: the ``crescent`` command and everything that composes the libraries.

One folder per command (``acquire``, ``exam``, ``validate``, ``gantry``, ``conformance``,
``capture``, ``demo``), the output writers (``outputs``: DICOM, report, figures, arrays) and the
acquire pipeline that runs a whole exam. Layers below, in import order: :mod:`protocols` ->
:mod:`physics` -> :mod:`simulator`, :mod:`reconstruction`, :mod:`firmware_host` -> :mod:`hil` -> here.
A rig run (``crescent acquire --port``) imports nothing from :mod:`simulator`.
"""
