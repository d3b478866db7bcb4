"""X-ray physics knowledge that both sides need: materials and attenuation, spectra and HVL, dosimetry.

Below the simulator, the host application and exam validation alike (layers: protocols -> physics ->
simulator / reconstruction / firmware_host -> hil -> crescent); it knows nothing of the gantry, the
wire or the host. Modules: :mod:`physics.materials` (NIST attenuation via xraydb, Hammerstein tissues),
:mod:`physics.spectra` (spekpy spectra, HVL, air kerma), :mod:`physics.dose` (Dance MGD = K g c s t),
:mod:`physics.dose_mc` and :mod:`physics.dose_tables` (the Monte Carlo behind c and t),
:mod:`physics.exposure_dose` (air kerma and MGD of one exposure record). Units: mm, keV, mGy, degrees.
See ``physics/README.md`` for sources and checks.
"""
