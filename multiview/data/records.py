"""The record types every reader returns: `View` (one calibrated image) and `Scene` (a set of views).

Conventions (see DESIGN.md §3): `K` is 3x3 in pixels of the image stored at `image_path`, pixel
centres at integer coordinates; `cam_from_world` is 4x4 and maps world points to the OpenCV camera
frame (x right, y down, z forward); depth is camera z in the dataset's units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEPTH_FORMATS = ("pfm", "co3d_png", "npy")


@dataclass
class View:
    """One calibrated image.

    Attributes:
        name: identifier of the view inside its scene (usually the image file stem).
        image_path: the image file (PNG/JPEG, RGB or RGBA).
        height, width: size of that image in pixels.
        K: (3, 3) float64 intrinsics in pixels of that image.
        cam_from_world: (4, 4) float64 world -> OpenCV camera transform.
        near, far: depth bounds (camera z) of the content seen by this view, dataset units.
        background: colour RGBA images are composited on ("white", "black") or None for RGB images.
        mask_path: optional foreground mask (8-bit, value/255 = P(foreground)).
        depth_path: optional depth map; its resolution may differ from the image, with the same
            field of view (K scales with the size).
        depth_format: how to decode depth_path, one of DEPTH_FORMATS.
        depth_scale: multiplier applied to the decoded depth (CO3D's scale_adjustment).
        extra: format-specific facts (e.g. DTU light paths, depth interval) documented by each reader.
    """

    name: str
    image_path: Path
    height: int
    width: int
    K: np.ndarray
    cam_from_world: np.ndarray
    near: float
    far: float
    background: str | None = None
    mask_path: Path | None = None
    depth_path: Path | None = None
    depth_format: str | None = None
    depth_scale: float = 1.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.image_path = Path(self.image_path)
        self.K = np.asarray(self.K, dtype=np.float64)
        self.cam_from_world = np.asarray(self.cam_from_world, dtype=np.float64)
        if self.K.shape != (3, 3):
            raise ValueError(f"View {self.name}: K must be (3, 3), got {self.K.shape}")
        if self.cam_from_world.shape != (4, 4):
            raise ValueError(f"View {self.name}: cam_from_world must be (4, 4), got {self.cam_from_world.shape}")
        if self.depth_path is not None and self.depth_format not in DEPTH_FORMATS:
            raise ValueError(f"View {self.name}: depth_format must be one of {DEPTH_FORMATS}")

    @property
    def world_from_cam(self) -> np.ndarray:
        """(4, 4) OpenCV camera -> world transform (the camera's pose)."""
        return np.linalg.inv(self.cam_from_world)

    @property
    def camera_center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates."""
        return self.world_from_cam[:3, 3]


@dataclass
class Scene:
    """A set of views of one static scene in one world frame.

    Attributes:
        name: scene identifier (e.g. "fern", "scan1", "<class_id>/<instance_id>").
        dataset: the reader's format name (e.g. "llff", "dtu_train").
        root: the scene's directory.
        views: the views, in the dataset's canonical order.
        splits: named lists of indices into `views` (e.g. {"train": [...], "test": [...]}).
        meta: scene-level facts documented by each reader (e.g. scene centre, pair lists).
    """

    name: str
    dataset: str
    root: Path
    views: list[View]
    splits: dict[str, list[int]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root)
        for split, indices in self.splits.items():
            bad = [i for i in indices if not 0 <= i < len(self.views)]
            if bad:
                raise ValueError(f"Scene {self.name}: split {split!r} has out-of-range view indices {bad[:5]}")

    def __len__(self) -> int:
        return len(self.views)

    def split(self, name: str) -> list[View]:
        """The views of one split; raises KeyError naming the available splits."""
        if name not in self.splits:
            raise KeyError(f"Scene {self.name} has no split {name!r}; available: {sorted(self.splits)}")
        return [self.views[i] for i in self.splits[name]]

    def stack_cam_from_world(self) -> np.ndarray:
        """(V, 4, 4) float64 cam_from_world of all views."""
        return np.stack([v.cam_from_world for v in self.views])

    def stack_K(self) -> np.ndarray:
        """(V, 3, 3) float64 intrinsics of all views."""
        return np.stack([v.K for v in self.views])
