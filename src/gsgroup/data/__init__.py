"""Scene data loaders: COLMAP and NeRF/Blender/instant-ngp datasets -> ``Scene`` of ``View``s."""

from gsgroup.data.images import target_size
from gsgroup.data.scene import Scene, View, load_scene

__all__ = ["Scene", "View", "load_scene", "target_size"]
