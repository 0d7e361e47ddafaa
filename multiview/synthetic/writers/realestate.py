"""RealEstate10K sequences in IBRNet's `RealEstate10K-subset` layout (`multiview.data.readers.realestate`).

`out` is the `RealEstate10K-subset` folder; each scene becomes a sequence with a 16-hex-digit name:
`out/<split>/cameras/<sequence>.txt` (a YouTube-like URL line, then one 19-number line per frame) and
`out/<split>/frames/<sequence>/<timestamp_us>.png`. The camera moves like a real-estate walkthrough: a
smooth sideways dolly with a slow pan, facing the object from 2.45-3.15 units away (all content lies
inside the reader's near/far of 1/100). Frames are 29.97 fps video frames (integer microsecond
timestamps); intrinsics are written normalised with cx = cy = 0.5 as in the release.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from multiview.geometry.conventions import opencv_to_realestate, realestate_to_opencv
from multiview.io.images import write_image
from multiview.synthetic.cameras import look_at
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import make_scene, render

FRAME_PERIOD_US = 1e6 * 1001 / 30000  # NTSC 29.97 fps
_URL_ALPHABET = np.array(list(string.ascii_letters + string.digits + "-_"))


def _walkthrough(num_views: int, rng: np.random.Generator) -> np.ndarray:
    """(V, 4, 4) cam_from_world along a smooth path: sideways dolly, slight push-in and bob, slow pan."""
    azimuth, elevation = np.radians(rng.uniform(0.0, 360.0)), np.radians(rng.uniform(10.0, 25.0))
    distance = rng.uniform(2.6, 3.0)
    back = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                     np.sin(elevation)])
    right = np.array([-np.sin(azimuth), np.cos(azimuth), 0.0])  # horizontal, rightwards facing the origin
    s = np.linspace(-0.5, 0.5, num_views)[:, None]
    eyes = (distance - 0.3 * s) * back + rng.choice([-1.0, 1.0]) * 0.8 * s * right
    eyes[:, 2] += 0.03 * np.sin(2 * np.pi * s[:, 0])
    targets = 0.25 * s * right
    return np.stack([look_at(eye, target) for eye, target in zip(eyes, targets)])


def write(out: Path, num_scenes: int, num_views: int, height: int, width: int, seed: int, *,
          split: str = "train", fov_x_deg: float = 60.0) -> list[WrittenScene]:
    """Write `num_scenes` sequences of `num_views` frames each; scene k renders `make_scene(seed + k)`."""
    out = Path(out)
    focal_x_norm = 0.5 / np.tan(np.radians(fov_x_deg) / 2.0)
    normalized = np.array([focal_x_norm, focal_x_norm * width / height, 0.5, 0.5])
    K = realestate_to_opencv(normalized, np.eye(4)[:3], height, width)[0]
    written = []
    for k in range(num_scenes):
        rng = np.random.default_rng([seed, k])
        sequence = f"{int(rng.integers(2**63)):016x}"
        url = "https://www.youtube.com/watch?v=" + "".join(rng.choice(_URL_ALPHABET, 11))
        start_us = int(rng.integers(5, 300)) * 1_000_000
        timestamps = [start_us + round(i * FRAME_PERIOD_US) for i in range(num_views)]
        spec = make_scene(seed + k)
        cams = _walkthrough(num_views, rng)
        camera_path = out / split / "cameras" / f"{sequence}.txt"
        frames_dir = out / split / "frames" / sequence
        lines, images, depths, masks, files = [url], [], [], [], [camera_path]
        for timestamp, cam_from_world in zip(timestamps, cams):
            view = render(spec, K, cam_from_world, height, width)
            frame_path = frames_dir / f"{timestamp}.png"
            write_image(frame_path, view.rgb)
            intrinsics, w2c = opencv_to_realestate(K, cam_from_world, height, width)
            numbers = " ".join(f"{x + 0.0:.12g}" for x in [*intrinsics, 0, 0, *w2c.ravel()])
            lines.append(f"{timestamp} {numbers}")
            images.append(view.rgb)
            depths.append(view.depth)
            masks.append(view.mask)
            files.append(frame_path)
        camera_path.parent.mkdir(parents=True, exist_ok=True)
        camera_path.write_text("\n".join(lines) + "\n")
        written.append(WrittenScene(root=frames_dir, name=sequence, K=np.repeat(K[None], num_views, axis=0),
                                    cam_from_world=cams, images=images, depths=depths, masks=masks,
                                    files=files))
    return written
