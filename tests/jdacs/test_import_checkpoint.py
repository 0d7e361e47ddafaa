"""Import of MVSNet_pytorch / JDACS checkpoints: a fake original (DataParallel keys under "model", with epoch and
optimizer state, in the legacy serialisation of torch < 1.6) round-trips to identical outputs."""

from __future__ import annotations

import pytest
import torch

from jdacs.import_checkpoint import load_original_state_dict, main
from jdacs.mvsnet import MVSNet
from multiview.engine.checkpoint import load_model_weights


def _trained_like(refine: bool) -> MVSNet:
    """A model whose weights and BatchNorm statistics are all non-default."""
    torch.manual_seed(0)
    model = MVSNet(refine=refine)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
            else:
                tensor.fill_(7)
    return model.eval()


def _save_original(model: MVSNet, path, legacy: bool = True) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = {"epoch": 8, "model": {f"module.{k}": v for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict()}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)


def _inputs():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(1, 3, 3, 32, 64, generator=generator)
    K = torch.tensor([[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]]).expand(1, 3, 3, 3)
    cam_from_world = torch.eye(4).repeat(1, 3, 1, 1)
    cam_from_world[0, :, 0, 3] = torch.tensor([0.0, 0.2, -0.2])
    return images, K, cam_from_world, torch.linspace(2.0, 5.0, 8)[None]


@pytest.mark.parametrize("refine", [False, True])
def test_imported_checkpoint_gives_identical_outputs(tmp_path, refine):
    original = _trained_like(refine)
    _save_original(original, tmp_path / "model_000005.ckpt")
    main([str(tmp_path / "model_000005.ckpt"), str(tmp_path / "imported.pt")])
    assert torch.load(tmp_path / "imported.pt", weights_only=True)["refine"] is refine
    model = MVSNet(refine=refine).eval()
    load_model_weights(model, tmp_path / "imported.pt")
    with torch.no_grad():
        expected, out = original(*_inputs()), model(*_inputs())
    assert torch.equal(out.depth, expected.depth) and torch.equal(out.confidence, expected.confidence)
    if refine:
        assert torch.equal(out.refined_depth, expected.refined_depth)


def test_bare_state_dict_without_prefix_and_without_batch_counters_loads(tmp_path):
    model = _trained_like(False)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "bare.pth")
    loaded = load_original_state_dict(tmp_path / "bare.pth")
    assert list(loaded) == list(model.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_mismatching_checkpoints_fail_naming_the_file_and_the_keys(tmp_path):
    model = _trained_like(False)
    state = {f"module.{k}": v for k, v in model.state_dict().items() if k != "feature.conv0.conv.weight"}
    state["module.extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "broken.ckpt")
    with pytest.raises(ValueError, match=r"broken\.ckpt.*missing keys \['feature\.conv0\.conv\.weight'\].*"
                                         r"unexpected keys \['extra\.weight'\]"):
        load_original_state_dict(tmp_path / "broken.ckpt")
    state = dict(model.state_dict())
    state["cost_regularization.prob.weight"] = torch.zeros(1, 8, 1, 1, 1)
    torch.save({"model": state}, tmp_path / "shapes.ckpt")
    with pytest.raises(ValueError, match=r"shapes\.ckpt.*cost_regularization\.prob\.weight \(1, 8, 1, 1, 1\)"):
        load_original_state_dict(tmp_path / "shapes.ckpt")
    torch.save({"epoch": 3}, tmp_path / "empty.ckpt")
    with pytest.raises(ValueError, match=r"empty\.ckpt: expected a state dict"):
        load_original_state_dict(tmp_path / "empty.ckpt")
