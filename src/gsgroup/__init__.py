"""gsgroup: Gaussian splatting scenes you can segment and edit (Gaussian Grouping on the CPU)."""

import os

# Numba's and PyTorch's OpenMP thread pools share the CPU cores; spinning idle threads of one pool
# starve the other (measured: a 6 ms render taking 98 ms). Passive waiting avoids that. It must be
# set before either library starts its threads, which is why it sits here; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
