"""Object editing of segmented runs, as functions on a ``gsgroup.run.Run`` (see ``api``):

    select, remove, recolor, transform, duplicate, compose, inpaint, restyle, export, export_all, save

Modules: api (the functions), select (selection and 3D clean-up), ops (edits of Gaussian
tensors), shrot (SH rotation), inpainting and lama (remove-and-fill), restyle, stylize and ip2p
(2D restyling, then a fit of the object), fitting (shared by both), commands (``gsgroup edit``).
"""

from .api import compose, duplicate, export, export_all, id_map, read_mask, recolor, remove, save, select, transform
from .inpainting import InpaintOptions, inpaint
from .restyle import RestyleOptions, restyle
from .select import Selection, SelectOptions

__all__ = [
    "select",
    "remove",
    "recolor",
    "transform",
    "duplicate",
    "compose",
    "inpaint",
    "restyle",
    "export",
    "export_all",
    "save",
    "id_map",
    "read_mask",
    "InpaintOptions",
    "RestyleOptions",
    "SelectOptions",
    "Selection",
]
