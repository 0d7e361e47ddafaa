"""IBRNet training samples: the random crop and flip keep every ray and every source pixel on the scene point
it showed before (known answers through the cameras), also for views of different sizes (Spaces' cameras)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ibrnet.data import SamplingOptions, load_view, make_batch
from multiview.data.registry import list_scene_handles
from multiview.geometry.projection import project, unproject
from multiview.synthetic.writers import spaces as spaces_writer


@pytest.fixture(scope="module")
def spaces_scene(tmp_path_factory):
    """One synthetic Spaces scene: 12 views of 48x64 and 45x64 (odd rig cameras have shorter images)."""
    root = tmp_path_factory.mktemp("spaces")
    spaces_writer.write(root, 1, 12, 48, 64, seed=3)
    return list_scene_handles("spaces", root, "train")[0].load()


def _views_of_two_sizes(scene):
    sizes = [(view.height, view.width) for view in scene.views]
    assert len(set(sizes)) == 2, sizes
    target = 0
    sources = [i for i in range(1, len(sizes)) if sizes[i] != sizes[target]][:2] + [i for i in range(1, 4)
                                                                                     if sizes[i] == sizes[target]][:2]
    return target, sources


@pytest.mark.parametrize("seed", range(6))  # both outcomes of the flip, several crop windows
def test_cropped_and_flipped_samples_keep_every_pixel_on_its_scene_point(spaces_scene, seed):
    target, sources = _views_of_two_sizes(spaces_scene)
    options = SamplingOptions(num_source_views=len(sources), num_rays=64, crop_height=36, crop_width=40,
                              random_flip=True)
    batch = make_batch(spaces_scene, target, sources, options, np.random.default_rng(seed))
    assert batch.sources.images.shape == (len(sources), 3, 36, 40)

    # each ray, cut at any depth, projects into the uncropped target onto a pixel centre showing its colour
    view = spaces_scene.views[target]
    original = torch.from_numpy(load_view(view, 0)[0])
    points = batch.rays.origins + 2.5 * batch.rays.directions
    uv, _ = project(points.double(), torch.from_numpy(view.K), torch.from_numpy(view.cam_from_world))
    pixel = uv.round()
    torch.testing.assert_close(uv, pixel, atol=1e-4, rtol=0)
    torch.testing.assert_close(batch.target_rgb, original[pixel[:, 1].long(), pixel[:, 0].long()])

    # every pixel of every cropped/flipped source shows what the uncropped source shows at the same scene point
    v, u = torch.meshgrid(torch.arange(36.0), torch.arange(40.0), indexing="ij")
    uv_new = torch.stack([u.flatten(), v.flatten()], dim=-1).double()
    for index, source in enumerate(sources):
        view = spaces_scene.views[source]
        world_from_cam = torch.linalg.inv(batch.sources.cam_from_world[index].double())
        points = unproject(uv_new, torch.full((len(uv_new),), 3.0, dtype=torch.float64),
                           batch.sources.K[index].double(), world_from_cam)
        uv, _ = project(points, torch.from_numpy(view.K), torch.from_numpy(view.cam_from_world))
        pixel = uv.round()
        torch.testing.assert_close(uv, pixel, atol=1e-3, rtol=0)
        original = torch.from_numpy(load_view(view, 0)[0])
        expected = original[pixel[:, 1].long(), pixel[:, 0].long()]
        torch.testing.assert_close(batch.sources.images[index].permute(1, 2, 0).reshape(-1, 3), expected)


def test_views_of_different_sizes_without_a_crop_fail_naming_the_scene(spaces_scene):
    target, sources = _views_of_two_sizes(spaces_scene)
    with pytest.raises(ValueError, match=rf"scene {spaces_scene.name}: views of different sizes.*crop_height"):
        make_batch(spaces_scene, target, sources, SamplingOptions(num_source_views=len(sources), num_rays=8),
                   np.random.default_rng(0))
