"""gsgroup: Gaussian splatting scenes you can segment and edit (Gaussian Grouping on the CPU)."""

__version__ = "0.1.0"
