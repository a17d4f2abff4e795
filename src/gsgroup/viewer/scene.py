"""The splats in the browser, sent once and then changed piecewise: one viser splat node per chunk.

A chunk is the Gaussians of one object id, and for an id with more than ``CHUNK`` Gaussians at
load time (the background of a real scene: millions) one cell of a fixed grid over that id's box.
A Gaussian's chunk depends only on its id and position, so an edit touches only the chunks of the
Gaussians it changes. ``SplatScene.update`` compares each chunk's new rows (viser's 32-byte splat
records: float32 centre, float16 covariance, RGBA8 — viser's only splat format; its binary
buffers travel uncompressed) with what its node holds, and sends the least that makes them equal:
- nothing, when the rows are unchanged;
- ``visible = False`` when none of the chunk's Gaussians is visible (hidden, isolated away); the
  rows stay in the browser, and showing them again is ``visible = True`` again;
- a node ``position`` when the chunk moved rigidly (a translated object): all but the centres are
  equal and every centre moved by the same vector (within float32 rounding, 1e-6 relative);
- the chunk's rows otherwise (recoloured, selected/tinted, removed from, grown).
The browser merges the nodes into one sorted splat set, so the picture equals one node holding
every visible Gaussian (``tests/test_viewer.py`` checks it against viser's own packing).
"""

from __future__ import annotations

import numpy as np

from . import splats

CHUNK = 32768  # Gaussians per chunk of a large id (its grid has ceil((n / CHUNK)^(1/3)) cells per axis)
CELLS = 4096  # key = id * CELLS + cell; the grid's cells per axis are capped at 16
ROOT = "/splats"


class SplatScene:
    """The splat nodes of one viser scene (``server.scene``) and what each holds.

    labels, means: the ids [N] and centres [N,3] at load time, which fix the chunk grid.
    ``sent`` counts what all updates sent: splat records, bytes of them, nodes added, buffers
    replaced, moves and visibility switches."""

    def __init__(self, scene, labels: np.ndarray, means: np.ndarray, chunk: int = CHUNK):
        self.scene = scene
        self.grids = {}  # id -> (low corner [3], cell size [3], cells per axis)
        ids, counts = np.unique(labels, return_counts=True)
        for oid, count in zip(ids.tolist(), counts.tolist()):
            if count > chunk:
                m = means[labels == oid]
                lo, hi = np.percentile(m, 1, axis=0), np.percentile(m, 99, axis=0)
                g = min(int(np.ceil((count / chunk) ** (1 / 3))), 16)
                self.grids[oid] = (lo, np.maximum(hi - lo, 1e-9) / g, g)
        self.nodes = {}  # key -> GaussianSplatHandle
        self.offsets = {}  # key -> position [3] of the node (its rows' centres are relative to it)
        self.sent = {"splats": 0, "bytes": 0, "added": 0, "buffers": 0, "moves": 0, "visibility": 0}

    def keys(self, labels: np.ndarray, means: np.ndarray) -> np.ndarray:
        """Chunk key [N] int64 of each Gaussian: id * CELLS + its grid cell (0 for ids without a grid)."""
        keys = np.asarray(labels, np.int64) * CELLS
        for oid, (lo, size, g) in self.grids.items():
            m = labels == oid
            if m.any():
                c = np.clip(((means[m] - lo) / size).astype(np.int64), 0, g - 1)
                keys[m] += (c[:, 0] * g + c[:, 1]) * g + c[:, 2]
        return keys

    def update(self, rows: np.ndarray, labels: np.ndarray, means: np.ndarray, visible: np.ndarray) -> dict:
        """Make the browser show the visible rows. rows [N,8] uint32 (viser's records of all Gaussians),
        labels [N], means [N,3], visible [N] bool. Returns what this call sent (as ``sent``)."""
        before = dict(self.sent)
        keys = self.keys(labels, means)[visible]
        rows = rows[visible]
        order = np.argsort(keys, kind="stable")
        keys, rows = keys[order], rows[order]
        uniq, starts = np.unique(keys, return_index=True)
        ends = np.append(starts[1:], len(keys))
        for key, s, e in zip(uniq.tolist(), starts.tolist(), ends.tolist()):  # one step per chunk
            self._show(key, rows[s:e])
        for key in self.nodes.keys() - set(uniq.tolist()):
            self._set_visible(key, False)
        return {k: self.sent[k] - before[k] for k in self.sent}

    def composed(self) -> np.ndarray:
        """The records [M,8] uint32 the browser draws: every visible node's rows, centres moved by its
        position (float32), in node order."""
        out = []
        for key, h in self.nodes.items():
            if h.visible:
                rows = h.buffer.copy()
                c = rows[:, 0:3].view(np.float32) + np.asarray(self.offsets[key], np.float32)
                rows[:, 0:3] = c.astype(np.float32).view(np.uint32)
                out.append(rows)
        return np.concatenate(out) if out else np.zeros((0, 8), np.uint32)

    # ------------------------------------------------------------------ one chunk
    def _send(self, rows: np.ndarray) -> None:
        self.sent["splats"] += len(rows)
        self.sent["bytes"] += rows.nbytes

    def _show(self, key: int, rows: np.ndarray) -> None:
        h = self.nodes.get(key)
        if h is None:
            oid, cell = divmod(key, CELLS)
            self.nodes[key] = self.scene.add_gaussian_splats(f"{ROOT}/id{oid}_c{cell}", **splats.unpack(rows))
            self.offsets[key] = np.zeros(3)
            self.sent["added"] += 1
            self._send(rows)
            return
        old, off = h.buffer, self.offsets[key]
        shift = _rigid_shift(old, off, rows)
        if shift is None:
            h.buffer = rows
            self._send(rows)
            self.sent["buffers"] += 1
            if np.any(off):
                h.position = (0.0, 0.0, 0.0)
                self.offsets[key] = np.zeros(3)
        elif np.any(shift != off):
            h.position = tuple(shift)
            self.offsets[key] = shift
            self.sent["moves"] += 1
            self.sent["bytes"] += 24
        self._set_visible(key, True)

    def _set_visible(self, key: int, visible: bool) -> None:
        h = self.nodes[key]
        if h.visible != visible:
            h.visible = visible
            self.sent["visibility"] += 1


def _rigid_shift(old: np.ndarray, offset: np.ndarray, new: np.ndarray) -> np.ndarray | None:
    """The node position [3] that shows ``new`` [M,8] with the node's rows ``old`` [M,8] (drawn at
    ``offset``), when all but the centres are equal and the centres differ by one vector; else None.
    Unchanged rows at offset 0 give offset 0 exactly."""
    if old.shape != new.shape or not np.array_equal(old[:, 3:], new[:, 3:]):
        return None
    if not np.any(offset) and np.array_equal(old[:, :3], new[:, :3]):
        return np.zeros(3)
    c_old = old[:, 0:3].view(np.float32).astype(np.float64)
    c_new = new[:, 0:3].view(np.float32).astype(np.float64)
    d = c_new - c_old
    t = d.mean(axis=0)
    tol = 1e-6 * (1.0 + np.abs(c_new).max())
    if np.abs(d - t).max() > tol:
        return None
    return offset if np.abs(t - offset).max() <= tol else t
