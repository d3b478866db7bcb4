"""``crescent send``: store a folder of DICOM objects on a PACS (see :mod:`crescent.pacs.store`)."""
