"""Masks read from disk per access (``load_masks(..., cache=N)``), for captures whose masks do not fit
in memory beside their images (``--image-cache N`` streams both).

``StreamedMasks`` reads every mask file once when it is made, with the checks of ``data.masks`` (so a
bad file is still an error before training starts), and keeps only what the ids need: the file, the
distinct colours of a colour-coded file (for the folder's shared colour table) and the largest id.
Indexing it by a view name decodes the file again, through an LRU cache of the N most recently used
masks, into exactly the ids ``load_masks`` would hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from gsgroup.data import masks as m
from gsgroup.data.streaming import PixelCache

__all__ = ["StreamedMasks"]


class StreamedMasks(Mapping):
    """{view name: ids [H,W] int32 or None} like ``load_masks``'s dict, read from disk on access.

    ``max_id``: the largest id over all masks (-1 with none); ``cache``: the shared PixelCache;
    ``streamed`` is True."""

    streamed = True

    def __init__(self, mask_dir: Path, views: list, files: dict[str, Path | None], capacity: int):
        self.files = files
        self.sizes = {v.name: (v.width, v.height) for v in views}
        self.cache = PixelCache(capacity)
        colours, greys, resized = {}, {}, []
        for v in views:
            path = files[v.name]
            if path is None:
                continue
            grey, packed = m._split(m._decode(path), path)
            if grey is None:
                colours[v.name] = np.unique(packed)
            else:
                greys[v.name] = int(grey.max()) if grey.size else 0
            if m._needs_resize((grey if grey is not None else packed).shape, self.sizes[v.name], path):
                resized.append(v.name)
        self.palette = m._palette(list(colours.values()))
        tops = list(greys.values()) + [int(m._apply_palette(c, self.palette).max()) for c in colours.values() if c.size]
        self.max_id = max(tops, default=-1)
        m._warn_resized(mask_dir, views, resized)

    def _load(self, name: str) -> np.ndarray:
        path = self.files[name]
        return m._ids(*m._split(m._decode(path), path), self.palette, self.sizes[name], path)[0]

    def __getitem__(self, name: str) -> np.ndarray | None:
        if self.files[name] is None:
            return None
        return self.cache.get(name, lambda: self._load(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)
