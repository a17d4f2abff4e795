"""The viewer's model, independent of any web framework: the edited Gaussians, the selection, undo.

Edits (remove, recolor, translate) are the ``gsgroup.edit`` functions on the current run (a
``Run`` derived from the opened one); "save as new run" is ``gsgroup.edit.save`` (config.json,
point_cloud.ply, classifier.pt, labels.npy, objects.json, edit.json listing every viewer op);
"export" is ``gsgroup.edit.export``. Hide is a view-only op (not written), but undoable.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import edit
from ..edit.ops import parse_color
from ..edit.select import SelectOptions, make_selection
from ..errors import InputError
from ..model import Gaussians
from ..run import Run
from ..segment.idmaps import palette
from . import splats

MODES = ("RGB", "ids", "isolate")
HIGHLIGHT = np.array([1.0, 0.85, 0.1])  # selection tint (yellow)
MAX_UNDO = 20


def open_run(run: str | Path) -> Run:
    """Load and validate a segmented run before any server starts; every problem -> one-line InputError."""
    run = Path(run)
    if not run.exists():
        raise InputError(f"{run}: not found; give a run folder written by `gsgroup run` or `gsgroup train --masks`")
    if not run.is_dir():
        raise InputError(f"{run}: is not a folder; give a run folder (with config.json and point_cloud.ply)")
    try:
        data = Run.open(run)
        data.require_segmentation()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - a truncated/garbled PLY or .pt raises many kinds of errors
        raise InputError(
            f"{run}: could not read the run ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            f"point_cloud.ply or the segmentation is corrupt, re-run training or restore the files"
        ) from None
    return data


@dataclass
class Snapshot:
    run: Run
    hidden: frozenset
    ops: list
    selections: dict = field(default_factory=dict)


@dataclass
class ViewerState:
    """The current run (edits applied), display mode, hidden ids, selection and undo history."""

    src: Run
    run: Run = None
    hidden: frozenset = frozenset()
    ops: list = field(default_factory=list)
    mode: str = "RGB"
    selected: int | None = None
    sel_mask: np.ndarray | None = None
    threshold: float = SelectOptions.threshold
    history: list = field(default_factory=list)
    device: str = "cpu"  # where restyle renders and fits (``gsgroup view --device``)

    def __post_init__(self):
        if self.run is None:
            self.run = self.src
        self._refresh()

    # ------------------------------------------------------------------ derived data
    @property
    def g(self) -> Gaussians:
        return self.run.gaussians

    @property
    def seg(self):
        return self.run.segmentation

    def _refresh(self, selections: dict | None = None) -> None:
        self.act = splats.activated(self.g)
        self._geometry = splats.pack_geometry(self.act)  # viser's records less the colours, once per edit
        # oid -> Selection of the current Gaussians (the 3D clean-up takes seconds at 100k Gaussians)
        self._selections = {} if selections is None else selections
        if self.selected is not None:
            self.sel_mask = self._mask_of(self.selected)

    @property
    def labels(self) -> np.ndarray:
        """Per-Gaussian object id [N] (argmax of the classifier, or the lifted label)."""
        return self.run.labels[0]

    def object_ids(self) -> list[int]:
        """All ids of the segmentation that still have Gaussians."""
        return sorted(np.unique(self.labels).tolist())

    def _selection_of(self, oid: int):
        if oid not in self._selections:
            self._selections[oid] = make_selection(
                self.g, self.seg, [oid], SelectOptions(self.threshold), by=f"viewer id {oid}"
            )
        return self._selections[oid]

    def _mask_of(self, oid: int) -> np.ndarray:
        return self._selection_of(oid).mask

    def visible(self) -> np.ndarray:
        """Bool [N]: not hidden, and (isolate mode) in the selection."""
        vis = ~np.isin(self.labels, list(self.hidden))
        if self.mode == "isolate" and self.sel_mask is not None:
            vis &= self.sel_mask
        return vis

    def colors(self) -> np.ndarray:
        """Display colors [N,3] in [0,1] for the current mode; the selection is tinted in RGB mode."""
        if self.mode == "ids":
            n = int(max(self.seg.num_classes, self.labels.max() + 1 if len(self.labels) else 1))
            rgb = palette(n)[self.labels].astype(np.float64) / 255.0
            rgb[self.labels == 0] = 0.25  # the background is drawn grey (palette black is invisible)
        else:
            rgb = self.act["rgb"].copy()
        if self.sel_mask is not None and self.mode != "isolate":
            rgb[self.sel_mask] = 0.45 * rgb[self.sel_mask] + 0.55 * HIGHLIGHT
        return rgb

    def splat_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for viser's add_gaussian_splats: centers [M,3], covariances [M,3,3], rgbs [M,3],
        opacities [M,1] (float32) of the visible Gaussians."""
        vis = self.visible()
        a = self.act
        return {
            "centers": a["means"][vis].astype(np.float32),
            "covariances": splats.covariances(a["R"][vis], a["sigma"][vis]).astype(np.float32),
            "rgbs": self.colors()[vis].astype(np.float32),
            "opacities": a["opacity"][vis, None].astype(np.float32),
        }

    def display_rows(self) -> np.ndarray:
        """viser's splat records [N,8] uint32 of all Gaussians (``splats.pack_geometry``) in the display
        colours (``colors``); ``splat_arrays`` packed by viser gives the visible ones' rows."""
        rows = self._geometry.copy()
        rows[:, 7] = splats.pack_colors(self.colors(), self.act["opacity"])
        return rows

    # ------------------------------------------------------------------ selection
    def pick(self, origin, direction) -> int | None:
        """Object id under a click ray (origin, direction [3], world), or None when the ray hits nothing.

        Like a rendered pixel of ``gsgroup edit --pick``'s id map: the identity encodings of the
        visible Gaussians along the ray are alpha-composited (weights T_i alpha_i, ``ray_weights``)
        and classified (lifted runs: the weighted vote of the labels). Single Gaussians' argmax
        labels are noisy; the composite is what the segmentation was trained on."""
        vis = self.visible()
        if splats.pick(self.act, origin, direction, vis) < 0:
            return None
        idx, _, w = splats.ray_weights(self.act, origin, direction, vis)
        if self.seg.classifier is not None:
            enc = torch.from_numpy(w.astype(np.float32)) @ self.g.ids.detach()[torch.from_numpy(idx)]
            with torch.no_grad():
                return int(self.seg.classifier(enc).argmax())
        votes = np.bincount(self.labels[idx], weights=w)
        return int(np.argmax(votes))

    def select(self, oid: int | None) -> None:
        """Select object ``oid`` (None clears)."""
        if oid is not None and oid not in self.object_ids():
            raise InputError(f"object {oid}: not in this run (ids {self.object_ids()})")
        mask = None if oid is None else self._mask_of(oid)
        self.selected, self.sel_mask = oid, mask

    def select_text(self, text: str, detector_checkpoint: str, **models) -> list[int]:
        """Select the object a text prompt names (Grounding DINO from a local folder, as ``gsgroup select``;
        ``models`` as ``text_ids``). Returns every id found; the first is selected."""
        from ..edit.text_select import TextSelectOptions, text_ids

        opts = TextSelectOptions(text=text.strip() or None, detector_checkpoint=detector_checkpoint.strip() or None)
        ids, report = text_ids(self.run, opts, device=self.device, **models)
        if not ids:
            raise InputError(f"text {text!r}: no object found in {len(report['views'])} views", "text")
        self.select(ids[0])
        return ids

    def selection_info(self) -> dict | None:
        """id, Gaussian count, bounding box (min/max of the means) and opacity-weighted mean color."""
        if self.selected is None:
            return None
        m = self.sel_mask
        if not m.any():
            return {"id": self.selected, "gaussians": 0, "bbox_min": None, "bbox_max": None, "mean_color": None}
        means = self.act["means"][m]
        w = self.act["opacity"][m]
        w = w / max(w.sum(), 1e-12)
        return {
            "id": self.selected,
            "gaussians": int(m.sum()),
            "bbox_min": means.min(0).tolist(),
            "bbox_max": means.max(0).tolist(),
            "mean_color": (w @ self.act["rgb"][m]).tolist(),
        }

    def _need_selection(self, what: str) -> None:
        if self.selected is None or self.sel_mask is None or not self.sel_mask.any():
            raise InputError(f"{what}: select an object first (click it or pick it in the list)")

    # ------------------------------------------------------------------ edits
    def _push(self) -> None:
        self.history.append(Snapshot(self.run, self.hidden, list(self.ops), self._selections))
        del self.history[:-MAX_UNDO]

    def _sel(self):
        return self._selection_of(self.selected)

    def hide(self) -> None:
        """Hide the selected object (view only)."""
        self._need_selection("hide")
        self._push()
        self.hidden = self.hidden | {self.selected}
        self.ops.append({"op": "hide", "id": self.selected})
        self.selected, self.sel_mask = None, None

    def remove(self) -> None:
        """Delete the selected object's Gaussians (``edit.remove``)."""
        self._need_selection("remove")
        self._apply(edit.remove(self.run, self._sel(), device=self.device))
        self.selected, self.sel_mask = None, None

    def recolor(self, color) -> None:
        """Give the selection the hue of ``color`` ('#RRGGBB' or RGB 0..255 triple) (``edit.recolor``)."""
        self._need_selection("recolor")
        if not isinstance(color, str):
            color = "#" + "".join(f"{int(round(c)):02x}" for c in color)
        parse_color(color)
        self._apply(edit.recolor(self.run, self._sel(), color))

    def restyle(self, effect: str | None = None, style_image: str | None = None, iterations: int = 300) -> None:
        """Restyle the selection with an OpenCV ``effect`` or a ``style_image`` picture, then fit its colours
        (``edit.restyle``: minutes on a CPU)."""
        self._need_selection("restyle")
        opts = edit.RestyleOptions(effect=effect or None, style_image=style_image or None, iterations=iterations)
        self._apply(edit.restyle(self.run, self._sel(), opts, device=self.device))

    def translate(self, t) -> None:
        """Move the selection by t [3] (``edit.transform``)."""
        self._need_selection("translate")
        self._apply(edit.transform(self.run, self._sel(), translate=t))

    def _apply(self, edited: Run) -> None:
        self._push()
        op = dict(edited.edit)
        op["op"] = op.pop("edit")
        for key in ("source", "gaussians_before"):
            op.pop(key, None)
        same = _same_selection_inputs(self.run, edited)  # a recolour: the selections stay valid
        self.run = self.src.derive(edited.gaussians, edited.segmentation)
        self.ops.append(op)
        self._refresh(dict(self._selections) if same else None)

    def undo(self) -> bool:
        """Revert the last op; False when there is nothing to undo."""
        if not self.history:
            return False
        s = self.history.pop()
        self.run, self.hidden, self.ops = s.run, s.hidden, s.ops
        if self.selected is not None and self.selected not in self.object_ids():
            self.selected, self.sel_mask = None, None
        self._refresh(s.selections)
        return True

    # ------------------------------------------------------------------ outputs
    def save_run(self, out: str | Path, force: bool = False) -> dict:
        """Write the edited Gaussians as a new run folder (``edit.save``); edit.json lists the ops."""
        info = {
            "edit": "viewer",
            "source": str(self.src.path.resolve()),
            "ops": copy.deepcopy([o for o in self.ops if o["op"] != "hide"]),
            "hidden_in_viewer": sorted(self.hidden),
            "gaussians_before": len(self.src.gaussians),
        }
        edited = self.src.derive(self.g, self.seg, info)
        edit.save(edited, out, force=force, previews=0)
        return edited.edit

    def export_selection(self, out: str | Path, force: bool = False) -> dict:
        """Write the selected object's Gaussians (current state) as one PLY (``edit.export``)."""
        self._need_selection("export")
        return edit.export(self.run, self._sel(), out, force=force)


def _same_selection_inputs(a: Run, b: Run) -> bool:
    """True when ``make_selection`` gives the same masks on both runs: equal geometry, opacities and
    identity encodings, and the same segmentation (colours may differ)."""
    ga, gb = a.gaussians, b.gaussians
    if len(ga) != len(gb):
        return False
    for name in ("means", "quats", "scales", "opacities", "ids"):
        if not torch.equal(getattr(ga, name).detach(), getattr(gb, name).detach()):
            return False
    sa, sb = a.segmentation, b.segmentation
    if sa is sb:
        return True
    if (sa.classifier is None) != (sb.classifier is None):
        return False
    if sa.classifier is not None:
        da, db = sa.classifier.state_dict(), sb.classifier.state_dict()
        return da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)
    return np.array_equal(sa.labels, sb.labels) and np.array_equal(sa.prob, sb.prob)
