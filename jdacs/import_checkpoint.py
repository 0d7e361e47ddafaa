"""Import an MVSNet_pytorch / JDACS checkpoint: ``python -m jdacs.import_checkpoint IN.ckpt OUT.pt``.

The originals save ``torch.save({"epoch": ..., "model": model.state_dict(), "optimizer": ...})``, from an
``nn.DataParallel`` model in JDACS (every key prefixed ``module.``). `jdacs.mvsnet.MVSNet` keeps the original module
and parameter names, so the mapping is the identity once the prefix is stripped. The output, ``{"model":
state_dict, "refine": bool, "source": path}``, is what `multiview.engine.checkpoint.load_model_weights` (and the
trainers' ``--init_from``) accept. A checkpoint with the refinement net (``refine_network.*``) needs
``MVSNet(refine=True)``; neither original training script used it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from jdacs.mvsnet import MVSNet
from multiview.engine.checkpoint import atomic_save

PREFIX = "module."


def load_original_state_dict(path) -> dict[str, torch.Tensor]:
    """The MVSNet weights of an original checkpoint, keyed by our `MVSNet` parameter names (float tensors on CPU).

    Accepts a dict with a ``model`` entry (the originals) or a bare state dict; strips ``module.`` prefixes. Raises
    ValueError naming the file when it is unreadable, holds no state dict, or does not fit MVSNet (missing /
    unexpected keys, wrong shapes). BatchNorm ``num_batches_tracked`` counters (absent before torch 0.4.1) are
    filled with 0 when missing: MVSNet's BatchNorms use a fixed momentum, so the counter is never read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from error
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict or a dict with a 'model' state dict, found "
                         f"{sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__}")
    state = {key.removeprefix(PREFIX): value for key, value in state.items()}
    expected = MVSNet(refine=any(key.startswith("refine_network.") for key in state)).state_dict()
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(expected[key])
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"{path}: not an MVSNet checkpoint: {len(missing)} missing keys {missing[:5]}, "
                         f"{len(unexpected)} unexpected keys {unexpected[:5]}")
    wrong = [f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})" for key, value in expected.items()
             if state[key].shape != value.shape]
    if wrong:
        raise ValueError(f"{path}: parameter shapes do not fit MVSNet: {wrong[:5]}")
    return {key: state[key] for key in expected}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("input", type=Path, help="MVSNet_pytorch / JDACS checkpoint (e.g. model_00060000.ckpt)")
    parser.add_argument("output", type=Path, help="checkpoint for --init_from / load_model_weights")
    args = parser.parse_args(argv)
    state = load_original_state_dict(args.input)
    refine = any(key.startswith("refine_network.") for key in state)
    atomic_save({"model": state, "refine": refine, "source": str(args.input)}, args.output)
    print(f"{args.input} -> {args.output}: {len(state)} tensors, MVSNet(refine={refine})")


if __name__ == "__main__":
    main()
