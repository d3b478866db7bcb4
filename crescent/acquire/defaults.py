"""Defaults of ``crescent acquire`` (no imports: ``crescent acquire --help`` reads them cheaply)."""

#: Phantom voxel size of the default simulated breast, mm (physics team's recommendation).
DEFAULT_PHANTOM_VOXEL_MM = 0.25
#: Read-out binning of the default simulated panel: 50 um dels binned 4x4 = 200 um images.
DEFAULT_BINNING = 4
#: Stereotactic exams read the panel at full resolution (50 um): biopsy needs sub-millimetre depth.
STEREO_BINNING = 1
#: Watchdog asked of the simulated gantry, ms: as short as on a rig (SPEC's 500 ms default), since the
#: gantry forms images in a separate worker process and its control loop no longer stalls on physics;
#: a host killed mid-sweep leaves a device that stops X-rays within half a second.
SIMULATED_WATCHDOG_MS = 500
#: Read-out binning of ``crescent acquire --quick``: 8x8 = 400 um images, a whole exam in seconds.
QUICK_BINNING = 8
#: Phantom voxel of ``--quick``, mm: twice the default's (8x fewer voxels to build and project).
QUICK_PHANTOM_VOXEL_MM = 0.5
