"""Make the analytic test projector importable as ``_analytic`` from the reconstruction tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
