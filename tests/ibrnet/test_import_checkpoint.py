"""Importing a checkpoint of the original release gives a model with identical outputs."""

import pytest
import torch

from ibrnet.import_checkpoint import import_checkpoint, main
from ibrnet.model import IBRNet, Rays, Sources
from multiview.engine.checkpoint import load_model_weights
from multiview.geometry.projection import rays_through_pixels
from multiview.geometry.transforms import invert_rigid

# Parameter names of the original modules (googleinterns/IBRNet ibrnet/mlp_network.py `IBRNet` with
# anti_alias_pooling, and ibrnet/feature_network.py `ResUNet` with its `conv` / `upconv` blocks).
ORIGINAL_AGGREGATOR_KEYS = {
    "s", *(f"{m}.{i}.{p}" for m, idx in (("ray_dir_fc", (0, 2)), ("base_fc", (0, 2)), ("vis_fc", (0, 2)),
                                          ("vis_fc2", (0, 2)), ("geometry_fc", (0, 2)),
                                          ("out_geometry_fc", (0, 2)), ("rgb_fc", (0, 2, 4)))
           for i in idx for p in ("weight", "bias")),
    "ray_attention.w_qs.weight", "ray_attention.w_ks.weight", "ray_attention.w_vs.weight", "ray_attention.fc.weight",
    "ray_attention.layer_norm.weight", "ray_attention.layer_norm.bias",
}
ORIGINAL_DECODER_KEYS = {
    *(f"{up}.conv.{m}.{p}" for up in ("upconv3", "upconv2") for m in ("conv", "bn") for p in ("weight", "bias")),
    *(f"{c}.{m}.{p}" for c in ("iconv3", "iconv2") for m in ("conv", "bn") for p in ("weight", "bias")),
    "out_conv.weight", "out_conv.bias",
}


def _original_resunet_keys() -> set[str]:
    keys = {"conv1.weight", "bn1.weight", "bn1.bias"} | ORIGINAL_DECODER_KEYS
    for layer, blocks in (("layer1", 3), ("layer2", 4), ("layer3", 6)):
        for block in range(blocks):
            keys |= {f"{layer}.{block}.{name}" for name in ("conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight",
                                                             "bn2.weight", "bn2.bias")}
        keys |= {f"{layer}.0.downsample.0.weight", f"{layer}.0.downsample.1.weight", f"{layer}.0.downsample.1.bias"}
    return keys


def test_our_parameter_names_are_the_originals():
    model = IBRNet(num_coarse_samples=8, num_fine_samples=8)
    assert set(model.net_coarse.state_dict()) == ORIGINAL_AGGREGATOR_KEYS
    assert set(model.net_fine.state_dict()) == ORIGINAL_AGGREGATOR_KEYS
    assert set(model.feature_net.state_dict()) == _original_resunet_keys()


def _original_layout(model: IBRNet, ddp: bool) -> dict:
    prefix = "module." if ddp else ""
    checkpoint = {part: {prefix + key: value.clone() for key, value in getattr(model, part).state_dict().items()}
                  for part in ("net_coarse", "net_fine", "feature_net")}
    checkpoint["optimizer"] = {"state": {}, "param_groups": [{"lr": 5e-4, "params": [0, 1]}]}
    checkpoint["scheduler"] = {"step_size": 50000, "gamma": 0.5, "base_lrs": [5e-4], "last_epoch": 1234,
                               "_step_count": 1235}
    return checkpoint


def _scene(seed=0, V=4, H=24, W=32, R=20):
    generator = torch.Generator().manual_seed(seed)
    K = torch.tensor([[30.0, 0, (W - 1) / 2], [0, 30.0, (H - 1) / 2], [0, 0, 1]]).expand(V, 3, 3)
    world_from_cam = torch.eye(4).repeat(V, 1, 1)
    world_from_cam[:, 0, 3] = torch.linspace(-0.3, 0.3, V)
    sources = Sources(torch.rand(V, 3, H, W, generator=generator), K, invert_rigid(world_from_cam))
    uv = torch.rand(1, R, 2, generator=generator) * torch.tensor([W - 1.0, H - 1.0])
    origins, directions = rays_through_pixels(uv, K[:1], torch.eye(4)[None])
    return sources, Rays(origins[0], directions[0], torch.full((R,), 2.0), torch.full((R,), 5.0))


def _render(model, sources, rays):
    with torch.no_grad():
        return model(rays, sources, model.encode(sources.images), torch.zeros(3), deterministic=True)


@pytest.mark.parametrize("ddp", [True, False])
def test_import_round_trip_gives_identical_outputs(tmp_path, ddp):
    torch.manual_seed(0)
    source_model = IBRNet(num_coarse_samples=16, num_fine_samples=8).eval()
    with torch.no_grad():
        source_model.net_coarse.s.fill_(0.7)  # not the initial value
    original = tmp_path / "model_255000.pth"
    torch.save(_original_layout(source_model, ddp), original)
    out = tmp_path / "imported.pt"
    main([str(original), str(out), "--num_coarse_samples", "16", "--num_fine_samples", "8"])

    imported = torch.load(out, weights_only=False)
    assert imported["step"] == 255000 and imported["source"] == str(original)
    assert imported["config"] == {"coarse_feature_channels": 32, "fine_feature_channels": 32,
                                  "anti_alias_pooling": True, "num_coarse_samples": 16, "num_fine_samples": 8}
    torch.manual_seed(1)
    model = IBRNet(num_coarse_samples=16, num_fine_samples=8).eval()
    load_model_weights(model, out)
    for key, value in source_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    sources, rays = _scene()
    expected, got = _render(source_model, sources, rays), _render(model, sources, rays)
    for a, b in ((expected.coarse, got.coarse), (expected.fine, got.fine)):
        assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth) and torch.equal(a.weights, b.weights)
    assert expected.fine.valid.any()


def test_step_from_the_scheduler_when_the_file_name_has_none(tmp_path):
    model = IBRNet(num_coarse_samples=8, num_fine_samples=8)
    original = tmp_path / "pretrained.pth"
    torch.save(_original_layout(model, ddp=False), original)
    result = import_checkpoint(original, None, 8, 8)
    assert result["step"] == 1234 and result["step_source"] == "scheduler last_epoch"
    assert import_checkpoint(original, None, 8, 8, step=7)["step"] == 7


def test_missing_unexpected_and_misshaped_keys_name_the_file_and_the_keys(tmp_path):
    model = IBRNet(num_coarse_samples=8, num_fine_samples=8)
    checkpoint = _original_layout(model, ddp=True)
    del checkpoint["net_fine"]["module.rgb_fc.4.bias"]
    checkpoint["feature_net"]["module.layer4.0.conv1.weight"] = torch.zeros(1)
    checkpoint["net_coarse"]["module.base_fc.0.weight"] = torch.zeros(64, 104)
    original = tmp_path / "broken.pth"
    torch.save(checkpoint, original)
    with pytest.raises(ValueError) as error:
        import_checkpoint(original, tmp_path / "out.pt", 8, 8)
    message = str(error.value)
    assert str(original) in message
    assert "net_fine.rgb_fc.4.bias" in message and "feature_net.layer4.0.conv1.weight" in message
    assert "net_coarse.base_fc.0.weight (64, 104) != (64, 105)" in message
    assert not (tmp_path / "out.pt").exists()


def test_not_an_ibrnet_checkpoint(tmp_path):
    original = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, original)
    with pytest.raises(ValueError, match="missing \\['feature_net', 'net_coarse'\\]"):
        import_checkpoint(original, None)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        import_checkpoint(tmp_path / "absent.pth", None)


def test_checkpoint_without_anti_alias_pooling(tmp_path):
    model = IBRNet(num_coarse_samples=8, num_fine_samples=8, anti_alias_pooling=False).eval()
    checkpoint = _original_layout(model, ddp=False)
    for part in ("net_coarse", "net_fine"):
        del checkpoint[part]["s"]  # the original has no `s` without anti-alias pooling
    original = tmp_path / "model_000100.pth"
    torch.save(checkpoint, original)
    result = import_checkpoint(original, tmp_path / "out.pt", 8, 8)
    assert result["config"]["anti_alias_pooling"] is False
    imported = IBRNet(num_coarse_samples=8, num_fine_samples=8, anti_alias_pooling=False).eval()
    load_model_weights(imported, tmp_path / "out.pt")
    sources, rays = _scene(seed=3)
    assert torch.equal(_render(model, sources, rays).fine.rgb, _render(imported, sources, rays).fine.rgb)
