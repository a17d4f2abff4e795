"""Interactive web viewer (``gsgroup view``): browser-side splats via viser, click-to-select, edits."""
