"""DICOM networking of the app: C-STORE to a PACS, Modality Worklist C-FIND, MPPS N-CREATE/N-SET.

Modules: :mod:`~crescent.pacs.address` (``AE@HOST:PORT``, no pynetdicom),
:mod:`~crescent.pacs.association` (:class:`PacsError`), :mod:`~crescent.pacs.store`,
:mod:`~crescent.pacs.worklist`, :mod:`~crescent.pacs.mpps`. The steps ``crescent acquire`` runs
around an exam are in :mod:`crescent.acquire.network`. pynetdicom is imported only when a
function that talks to a peer runs.
"""
