"""Object editing of segmented runs: select (select.py), edit Gaussians (ops.py, shrot.py),
remove-and-fill (inpaint.py, lama.py), run folders (runio.py) and the ``gsgroup edit`` CLI (commands.py)."""
