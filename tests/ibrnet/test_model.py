import pytest
import torch

from ibrnet.aggregator import IBRNetAggregator, RayAttention
from ibrnet.feature_net import ResUNet
from ibrnet.model import IBRNet, Rays, Sources
from ibrnet.projector import project_to_sources
from multiview.geometry.projection import rays_through_pixels
from multiview.geometry.transforms import invert_rigid


def test_parameter_counts_match_the_original():
    assert sum(p.numel() for p in ResUNet().parameters()) == 8_917_120
    assert sum(p.numel() for p in IBRNetAggregator().parameters()) == 20_136


def test_feature_maps_are_quarter_resolution_with_the_original_padding():
    coarse, fine = ResUNet()(torch.rand(2, 3, 64, 80))
    assert coarse.shape == (2, 32, 16, 20) and fine.shape == (2, 32, 16, 20)
    coarse, _ = ResUNet()(torch.rand(1, 3, 120, 160))  # 120/16 = 7.5 -> 8 -> 16 -> 32
    assert coarse.shape == (1, 32, 32, 40)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sdpa_attention_equals_reference_with_masks(dtype):
    torch.manual_seed(0)
    sdpa = RayAttention(16, 4, use_sdpa=True).to(dtype)
    reference = RayAttention(16, 4, use_sdpa=False).to(dtype)
    reference.load_state_dict(sdpa.state_dict())
    x = torch.randn(7, 24, 16, dtype=dtype)
    valid = torch.rand(7, 24) > 0.3
    valid[0] = False  # a ray with no valid query at all
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(sdpa(x, valid), reference(x, valid), atol=tolerance, rtol=tolerance)


def test_masked_query_rows_attend_uniformly_like_the_original():
    """The original fills masked query rows with -1e9 before the softmax: uniform weights over all keys."""
    torch.manual_seed(1)
    attention = RayAttention(16, 4).double()
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 3] = False
    q = attention.w_qs(x).reshape(2, 10, 4, 4).transpose(1, 2)
    k = attention.w_ks(x).reshape(2, 10, 4, 4).transpose(1, 2)
    v = attention.w_vs(x).reshape(2, 10, 4, 4).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / 2.0
    scores = scores.masked_fill(~valid[:, None, :, None], -1e9)  # the original's broadcast over keys
    out = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(2, 10, 16)
    expected = attention.layer_norm(attention.fc(out) + x)
    torch.testing.assert_close(attention(x, valid), expected)


def _toy_setup(V=5, H=32, W=40, R=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    K = torch.tensor([[40.0, 0, (W - 1) / 2], [0, 40.0, (H - 1) / 2], [0, 0, 1]]).expand(V, 3, 3)
    world_from_cam = torch.eye(4).repeat(V, 1, 1)
    world_from_cam[:, 0, 3] = torch.linspace(-0.3, 0.3, V)
    sources = Sources(torch.rand(V, 3, H, W, generator=generator), K, invert_rigid(world_from_cam))
    uv = torch.rand(1, R, 2, generator=generator) * torch.tensor([W - 1.0, H - 1.0])
    origins, directions = rays_through_pixels(uv, K[:1], torch.eye(4)[None])
    rays = Rays(origins[0], directions[0], torch.full((R,), 2.0), torch.full((R,), 6.0))
    return sources, rays


def test_projection_known_answer_pixel_and_feature_cell():
    sources, _ = _toy_setup(V=1)  # one source camera at x = -0.3, f = 40, principal point (19.5, 15.5)
    # point 0: on the optical axis at depth 4 -> the principal point; point 1: 10 px right, 5 px down
    points = torch.tensor([[[-0.3, 0.0, 4.0], [-0.3 + 4.0 * 10 / 40.0, 4.0 * 5 / 40.0, 4.0]]])
    images = torch.zeros(1, 3, 32, 40)
    images[0, :, 20, 29] = torch.tensor([1.0, 0.5, 0.25])  # one corner of point 1's pixel (29.5, 20.5)
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    features = (10 * rows + cols)[None, None]  # linear in the cell position: bilinear sampling is exact
    proj = project_to_sources(points, torch.zeros(3), images, features, sources.K, sources.cam_from_world,
                              sources.world_from_cam)
    assert proj.mask.all()
    torch.testing.assert_close(proj.rgb_feat[0, 1, 0, :3], torch.tensor([0.25, 0.125, 0.0625]))
    torch.testing.assert_close(proj.rgb_feat[0, 0, 0, :3], torch.zeros(3))
    # the same normalised grid samples the feature map: pixel u maps to cell u·(10−1)/(40−1)
    for index, (u, v) in enumerate([(19.5, 15.5), (29.5, 20.5)]):
        expected = 10 * (v * 7 / 31) + u * 9 / 39
        torch.testing.assert_close(proj.rgb_feat[0, index, 0, 3], torch.tensor(expected), atol=1e-4, rtol=0)
    behind = torch.tensor([[[0.0, 0.0, -1.0]]])
    assert not project_to_sources(behind, torch.zeros(3), images, features, sources.K, sources.cam_from_world,
                                  sources.world_from_cam).mask.any()


def test_shuffling_source_views_leaves_the_output_unchanged():
    torch.manual_seed(0)
    model = IBRNet(num_coarse_samples=16, num_fine_samples=8).double()
    sources, rays = _toy_setup()
    sources = Sources(sources.images.double(), sources.K.double(), sources.cam_from_world.double())
    rays = Rays(*(t.double() for t in (rays.origins, rays.directions, rays.near, rays.far)))
    perm = torch.tensor([3, 0, 4, 1, 2])
    shuffled = Sources(sources.images[perm], sources.K[perm], sources.cam_from_world[perm])
    with torch.no_grad():
        a = model(rays, sources, model.encode(sources.images), torch.zeros(3, dtype=torch.float64), True)
        b = model(rays, shuffled, model.encode(shuffled.images), torch.zeros(3, dtype=torch.float64), True)
    torch.testing.assert_close(a.fine.rgb, b.fine.rgb)
    torch.testing.assert_close(a.fine.depth, b.fine.depth)


def test_gradients_reach_every_parameter_and_are_finite():
    torch.manual_seed(0)
    model = IBRNet(num_coarse_samples=16, num_fine_samples=8)
    sources, rays = _toy_setup()
    out = model(rays, sources, model.encode(sources.images), torch.zeros(3))
    (out.coarse.rgb.sum() + out.fine.rgb.sum()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("render_workers", [1, 3])
def test_rendering_in_slices_equals_one_pass_and_keeps_random_draws(render_workers):
    torch.manual_seed(0)
    model = IBRNet(num_coarse_samples=16, num_fine_samples=8, render_workers=render_workers).double().eval()
    sources, rays = _toy_setup(R=23)
    sources = Sources(sources.images.double(), sources.K.double(), sources.cam_from_world.double())
    rays = Rays(*(t.double() for t in (rays.origins, rays.directions, rays.near, rays.far)))
    center = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        features = model.encode(sources.images)
        for deterministic in (True, False):
            model.max_points_per_pass = 10**9
            whole = model(rays, sources, features, center, deterministic, torch.Generator().manual_seed(5))
            model.max_points_per_pass = 5 * 16  # 5 rays per coarse slice, 3 per fine slice, ragged ends
            sliced = model(rays, sources, features, center, deterministic, torch.Generator().manual_seed(5))
            for a, b in ((whole.coarse, sliced.coarse), (whole.fine, sliced.fine)):
                torch.testing.assert_close(a.rgb, b.rgb, atol=1e-12, rtol=1e-12)
                torch.testing.assert_close(a.depth, b.depth, atol=1e-12, rtol=1e-12)
                assert torch.equal(a.valid, b.valid)
            assert torch.equal(whole.fine_depths, sliced.fine_depths)


def test_negative_render_workers_is_an_error():
    with pytest.raises(ValueError, match="render_workers must be >= 0"):
        IBRNet(render_workers=-1)


def test_projection_outputs_are_views_of_view_major_storage():
    sources, rays = _toy_setup(V=3, R=4)
    points = rays.origins[:, None] + torch.linspace(2, 6, 7)[None, :, None] * rays.directions[:, None]
    features = torch.rand(3, 8, 8, 10)
    proj = project_to_sources(points, torch.zeros(3), sources.images, features, sources.K, sources.cam_from_world,
                              sources.world_from_cam)
    assert proj.rgb_feat.shape == (4, 7, 3, 11) and proj.ray_diff.shape == (4, 7, 3, 4) and proj.mask.shape == (4, 7, 3)
    for tensor in (proj.rgb_feat, proj.ray_diff, proj.colours):
        assert tensor.permute(2, 3, 0, 1).is_contiguous()  # (V, C, R, S) storage: the aggregator reads it as is
    assert torch.equal(proj.colours, proj.rgb_feat[..., :3])
