"""Image-quality analysis: presampled MTF, NPS, SDNR/CNR, artifact spread and depth resolution."""
