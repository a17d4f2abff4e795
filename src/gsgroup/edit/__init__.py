"""Object editing of segmented runs, as functions on a ``gsgroup.run.Run`` (see ``api``):

    select, remove, recolor, transform, duplicate, compose, inpaint, export, export_all, save

Modules: api (the functions), select (selection and 3D clean-up), ops (edits of Gaussian
tensors), shrot (SH rotation), inpainting and lama (remove-and-fill), commands (``gsgroup edit``).
"""

from .api import compose, duplicate, export, export_all, id_map, read_mask, recolor, remove, save, select, transform
from .inpainting import InpaintOptions, inpaint
from .select import Selection, SelectOptions

__all__ = [
    "select",
    "remove",
    "recolor",
    "transform",
    "duplicate",
    "compose",
    "inpaint",
    "export",
    "export_all",
    "save",
    "id_map",
    "read_mask",
    "InpaintOptions",
    "SelectOptions",
    "Selection",
]
