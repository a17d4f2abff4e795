"""gsgroup: Gaussian splatting scenes you can segment and edit (Gaussian Grouping on the CPU)."""

# OpenMP's wait policy is left to libgomp's default (spin briefly, then sleep). Forcing
# OMP_WAIT_POLICY=PASSIVE made every short Numba parallel region wake a sleeping thread: the
# identity training step took 1.5-1.9x the RGB one instead of 1.2-1.3x, and render, eval, lift,
# associate and edit were no faster with it (README, "Training step on a quiet machine").

__version__ = "0.1.0"
