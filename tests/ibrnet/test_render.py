"""Chunked rendering, camera paths, and the `python -m ibrnet.render` CLI end to end."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import train_ibrnet
from ibrnet import camera_path
from ibrnet.data import evaluation_views, load_sources, load_view
from ibrnet.model import IBRNet
from ibrnet.render import main as render_main
from ibrnet.render import render_image, write_video
from multiview.data.registry import list_scene_handles
from tests.ibrnet.conftest import tiny_run_argv


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunked_rendering_equals_unchunked(ibrnet_data_root, dtype):
    """Chunks of 7 rays vs one chunk: the same image. Bit-identity is not on offer: batched GEMMs sum in a
    batch-size dependent order, and in float32 the last-bit differences of the coarse weights move the
    importance samples by ~1e-6; float64 agrees to 1e-12."""
    torch.manual_seed(0)
    model = IBRNet(num_coarse_samples=8, num_fine_samples=8).eval().to(dtype)
    scene = list_scene_handles("mvimgnet", ibrnet_data_root / "mvimgnet_unseen", "all")[0].load()
    (target, sources), = evaluation_views(scene, 3, "vector", [5])
    image, K = load_view(scene.views[target], 32)
    view = scene.views[target]
    loaded = load_sources(scene, sources, 32)
    loaded = type(loaded)(loaded.images.to(dtype), loaded.K.to(dtype), loaded.cam_from_world.to(dtype))
    args = (model, torch.from_numpy(K).to(dtype), torch.from_numpy(view.cam_from_world).to(dtype), image.shape[0],
            image.shape[1], view.near, view.far, loaded)
    chunked = render_image(*args, chunk_size=7, stride=2)
    whole = render_image(*args, chunk_size=10_000, stride=2)
    assert chunked.fine.shape == (12, 16, 3) and chunked.depth.shape == (12, 16)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-4
    for field in ("coarse", "fine", "depth", "valid"):
        np.testing.assert_allclose(getattr(chunked, field), getattr(whole, field), atol=tolerance, rtol=tolerance,
                                   err_msg=field)
    assert chunked.valid.mean() > 0.5  # most rays see the scene: the comparison is not between blanks


# --- camera paths ----------------------------------------------------------------------------------------


def _ring(count=12, radius=3.0, height=1.0, center=(0.2, -0.1, 0.3)):
    center = np.asarray(center)
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    eyes = center + np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(count, height)], axis=-1)
    return np.stack([camera_path.look_at(e, center, (0, 0, 1)) for e in eyes]), center


def test_orbit_path_circles_the_point_the_cameras_look_at():
    cams, center = _ring()
    np.testing.assert_allclose(camera_path.axes_focus_point(cams), center, atol=1e-9)
    path = camera_path.orbit_path(cams, 30)
    centers = camera_path.camera_centers(path)
    np.testing.assert_allclose(np.linalg.norm((centers - center)[:, :2], axis=-1), 3.0, atol=1e-9)
    np.testing.assert_allclose(centers[:, 2] - center[2], 1.0, atol=1e-9)
    np.testing.assert_allclose(path[0], cams[0], atol=1e-9)  # starts at the first camera
    # every frame looks at the centre (it projects onto the optical axis) with world z up in the image
    in_camera = path[:, :3, :3] @ center + path[:, :3, 3]
    np.testing.assert_allclose(in_camera[:, :2], 0, atol=1e-9)
    assert (in_camera[:, 2] > 0).all() and (path[:, 1, 2] < 0).all()
    # same turning direction as the input order: frame 1 is between cameras 0 and 1
    assert np.linalg.norm(centers[1] - camera_path.camera_centers(cams)[1]) < np.linalg.norm(
        centers[1] - camera_path.camera_centers(cams)[-1])


def test_interpolated_path_passes_through_the_cameras():
    cams, _ = _ring(count=6)
    path = camera_path.interpolate_path(cams, 24)  # 4 frames per segment, closed
    np.testing.assert_allclose(path[::4], cams, atol=1e-9)
    rotations = path[:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (24, 3, 3)),
                               atol=1e-9)


def test_spiral_path_looks_at_the_focus_point_in_front_of_the_cameras():
    eyes = np.array([[x, 0.0, y] for x in (-0.2, 0.0, 0.2) for y in (-0.1, 0.1)])
    cams = np.stack([camera_path.look_at(e, e + np.array([0, 1.0, 0]), (0, 0, 1)) for e in eyes])  # facing +y
    path = camera_path.spiral_path(cams, near=2.0, far=10.0, num_frames=16)
    focus_depth = 1.0 / (0.25 / 1.8 + 0.75 / 50.0)
    focus = np.array([0.0, focus_depth, 0.0])
    in_camera = path[:, :3, :3] @ focus + path[:, :3, 3]
    np.testing.assert_allclose(in_camera[:, :2], 0, atol=1e-9)
    centers = camera_path.camera_centers(path)
    assert np.abs(centers[:, 0]).max() <= 0.2 + 1e-9 and np.ptp(centers[:, 0]) > 0.2


def test_path_kind_errors():
    cams, _ = _ring()
    with pytest.raises(ValueError, match="unknown camera path"):
        camera_path.make_path("zigzag", cams, 4, 1.0, 2.0)
    with pytest.raises(ValueError, match=r"\(V, 4, 4\)"):
        camera_path.orbit_path(cams[:, :3], 4)


def test_write_video_mp4_and_gif_with_odd_sizes(tmp_path):
    frames = [np.full((15, 21, 3), k / 4, dtype=np.float32) for k in range(4)]
    write_video(tmp_path / "v.mp4", frames, fps=10)
    write_video(tmp_path / "v.gif", frames, fps=10)
    assert len(iio.imread(tmp_path / "v.gif", index=None)) == 4
    assert (tmp_path / "v.mp4").stat().st_size > 0


# --- the render CLI ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_step_run(ibrnet_data_root, tmp_path_factory):
    runs = tmp_path_factory.mktemp("render_runs")
    train_ibrnet.main(tiny_run_argv(ibrnet_data_root, runs, "tiny", "--num_iterations", "2", "--validate_every", "0",
                                    "--checkpoint_every", "2", "--max_image_side", "32"))
    return runs / "tiny"


def test_render_cli_writes_views_and_a_video(two_step_run, ibrnet_data_root, tmp_path):
    scene = list_scene_handles("mvimgnet", ibrnet_data_root / "mvimgnet_unseen", "all")[0].name
    out = tmp_path / "render"
    assert render_main(["--run", str(two_step_run), "--scene", scene, "--out", str(out), "--views", "0", "7",
                        "--path", "orbit", "--num_frames", "3", "--fps", "5", "--format", "gif",
                        "--render_stride", "2", "--device", "cpu", "--no-progress"]) == 0
    for stem in ("0000_001", "0007_008"):
        fine = iio.imread(out / "views" / f"{stem}_fine.png")
        assert fine.shape == (12, 16, 3) and fine.dtype == np.uint8  # 24x32 (max_image_side 32), stride 2
        assert (out / "views" / f"{stem}_coarse.png").is_file() and (out / "views" / f"{stem}_depth.png").is_file()
        assert iio.imread(out / "views" / f"{stem}_depth16.png").dtype == np.uint16
    video = iio.imread(out / "path_orbit.gif", index=None)
    assert video.shape[:3] == (3, 12, 16)
    assert (out / "path_orbit_depth.gif").is_file()
    assert np.load(out / "path_orbit_cameras.npy").shape == (3, 4, 4)
    summary = json.loads((out / "render.json").read_text())
    assert summary["step"] == 2 and summary["scene"] == scene
    assert [v["index"] for v in summary["views"]] == [0, 7] and len(summary["views"][0]["sources"]) == 4


def test_render_cli_errors_name_the_missing_file(two_step_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        render_main(["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert "nope: run directory not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        render_main(["--run", str(two_step_run), "--out", str(tmp_path / "o"), "--checkpoint",
                     str(tmp_path / "missing.pt"), "--device", "cpu"])
    assert "missing.pt: checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        render_main(["--run", str(two_step_run), "--out", str(tmp_path / "o"), "--views", "99", "--device", "cpu"])
    assert "--views [99]" in capsys.readouterr().err
