"""Import a checkpoint of the original IBRNet release (googleinterns/IBRNet, e.g. `model_255000.pth`).

    python -m ibrnet.import_checkpoint ORIGINAL.pth OUT.pt [--num_coarse_samples 64 --num_fine_samples 64]

The original's `IBRNetModel.save_model` writes a dict with the state dicts `net_coarse`, `net_fine`
(absent with `coarse_only`), `feature_net`, plus `optimizer` and `scheduler`; keys carry a `module.`
prefix when the nets were saved while wrapped in DistributedDataParallel. Our module names were
chosen to be the original's, so the conversion is a re-prefixing: `feature_net.*`, `net_coarse.*`,
`net_fine.*` of `ibrnet.model.IBRNet`. The result is `{"model": state_dict, "step", "source",
"config"}`, which `multiview.engine.checkpoint.load_model_weights` (`--init_from`) accepts.

Things the weights do not say, recorded in "config" and to be matched when building the model:
  * The sample counts. Each net adds a sinusoidal encoding of the sample *index* before its ray
    transformer, so the coarse net is tied to N_samples and the fine net to N_samples + N_importance.
    The released model was trained with 64 + 64 (the fine net sees 128 samples): the defaults here.
  * `anti_alias_pooling`: the original creates the sharpness `s` only when it is on (the default and
    the release). A checkpoint without `s` is imported with `anti_alias_pooling: false` and the
    unused `s` set to its initial 0.2.
The step is not stored by the original (it parses it from the file name `model_XXXXXX.pth`); it is
taken from the file name when it has that form, else from the scheduler's `last_epoch` (the
original steps its StepLR once per iteration), else left None; `--step` overrides.
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path

import torch

from ibrnet.model import IBRNet
from multiview.engine.checkpoint import atomic_save

NET_PARTS = ("feature_net", "net_coarse", "net_fine")
DDP_PREFIX = "module."
RELEASED_SAMPLES = (64, 64)  # model_255000.pth: N_samples 64, N_importance 64
ANTI_ALIAS_INIT = 0.2


def read_original(path: Path, allow_pickle: bool = False) -> dict:
    """torch.load an original checkpoint on the CPU; tensors-and-containers only unless `allow_pickle`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: holds objects other than tensors and plain containers ({error}); "
                         "if you trust the file, pass --allow-pickle") from error
    except Exception as error:
        raise ValueError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a dict with {', '.join(NET_PARTS)}, got {type(checkpoint).__name__}")
    return checkpoint


def _strip_ddp(key: str) -> str:
    while key.startswith(DDP_PREFIX):
        key = key[len(DDP_PREFIX):]
    return key


def convert_state_dict(checkpoint: dict, source: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The original's per-net state dicts -> our IBRNet state dict, and the config the weights imply."""
    missing_parts = [part for part in ("feature_net", "net_coarse") if part not in checkpoint]
    if missing_parts:
        raise ValueError(f"{source}: not an IBRNet checkpoint of the original release: missing "
                         f"{missing_parts} (found keys {sorted(checkpoint)})")
    state: dict[str, torch.Tensor] = {}
    for part in NET_PARTS:
        if part not in checkpoint:
            continue
        weights = checkpoint[part]
        if not isinstance(weights, dict):
            raise ValueError(f"{source}: '{part}' is a {type(weights).__name__}, expected a state dict")
        for key, value in weights.items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{source}: '{part}' entry {key!r} is a {type(value).__name__}, not a tensor")
            state[f"{part}.{_strip_ddp(key)}"] = value.detach().clone().float()

    nets = [part for part in ("net_coarse", "net_fine") if part in checkpoint]
    has_s = {part: f"{part}.s" in state for part in nets}
    if len(set(has_s.values())) > 1:
        raise ValueError(f"{source}: anti-alias sharpness 's' present in {[p for p, s in has_s.items() if s]} "
                         f"but not in {[p for p, s in has_s.items() if not s]}")
    anti_alias_pooling = all(has_s.values())
    if not anti_alias_pooling:
        for part in has_s:
            state[f"{part}.s"] = torch.tensor(ANTI_ALIAS_INIT)

    def feature_channels(part: str) -> int:
        key = f"{part}.ray_dir_fc.2.weight"  # Linear(16, C + 3)
        if key not in state:
            raise ValueError(f"{source}: missing {key!r} (needed to tell the feature width)")
        return state[key].shape[0] - 3

    config = {"coarse_feature_channels": feature_channels("net_coarse"),
              "fine_feature_channels": feature_channels("net_fine") if "net_fine" in checkpoint else 0,
              "anti_alias_pooling": anti_alias_pooling}
    return state, config


def training_step(checkpoint: dict, path: Path) -> tuple[int | None, str]:
    """The original's step: from `model_XXXXXX.pth`, else the scheduler's last_epoch."""
    match = re.fullmatch(r"model_(\d+)\.pth", Path(path).name)
    if match:
        return int(match.group(1)), "file name"
    scheduler = checkpoint.get("scheduler")
    if isinstance(scheduler, dict) and isinstance(scheduler.get("last_epoch"), int):
        return scheduler["last_epoch"], "scheduler last_epoch"
    return None, "unknown"


def build_model(config: dict) -> IBRNet:
    return IBRNet(coarse_feature_channels=config["coarse_feature_channels"],
                  fine_feature_channels=config["fine_feature_channels"],
                  num_coarse_samples=config["num_coarse_samples"], num_fine_samples=config["num_fine_samples"],
                  anti_alias_pooling=config["anti_alias_pooling"])


def check_fits(model: IBRNet, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise a ValueError naming the file and every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{key} {tuple(state[key].shape)} != {tuple(expected[key].shape)}"
                  for key in sorted(set(state) & set(expected)) if state[key].shape != expected[key].shape]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if mismatched:
            problems.append(f"shape mismatches {mismatched}")
        raise ValueError(f"{source}: does not fit ibrnet.model.IBRNet: " + "; ".join(problems))


def import_checkpoint(original: Path, out: Path | None = None, num_coarse_samples: int = RELEASED_SAMPLES[0],
                      num_fine_samples: int = RELEASED_SAMPLES[1], step: int | None = None,
                      allow_pickle: bool = False) -> dict:
    """Convert `original`, check that it loads into IBRNet, and write it to `out` (if given)."""
    checkpoint = read_original(original, allow_pickle)
    state, config = convert_state_dict(checkpoint, original)
    if config["fine_feature_channels"] == 0:
        num_fine_samples = 0  # a coarse_only model
    config.update(num_coarse_samples=num_coarse_samples, num_fine_samples=num_fine_samples)
    model = build_model(config)
    check_fits(model, state, original)
    model.load_state_dict(state, strict=True)
    found_step, step_source = training_step(checkpoint, original)
    result = {"model": model.state_dict(), "step": step if step is not None else found_step,
              "step_source": "--step" if step is not None else step_source,
              "source": str(original), "config": config}
    if out is not None:
        atomic_save(result, Path(out))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ibrnet.import_checkpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("original", type=Path, help="checkpoint of the original release (.pth)")
    parser.add_argument("out", type=Path, help="where to write the converted checkpoint (.pt)")
    parser.add_argument("--num_coarse_samples", type=int, default=RELEASED_SAMPLES[0],
                        help="N_samples the checkpoint was trained with (coarse net's sample-index encoding)")
    parser.add_argument("--num_fine_samples", type=int, default=RELEASED_SAMPLES[1],
                        help="N_importance it was trained with (the fine net sees coarse + fine samples)")
    parser.add_argument("--step", type=int, default=None, help="training step to record (default: from the file)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow arbitrary pickled objects in the file (only for files you trust)")
    args = parser.parse_args(argv)
    result = import_checkpoint(args.original, args.out, args.num_coarse_samples, args.num_fine_samples,
                               args.step, args.allow_pickle)
    config = result["config"]
    print(f"wrote {args.out}: {len(result['model'])} tensors, step {result['step']} ({result['step_source']})")
    print("build the model with " + ", ".join(f"{key}={value}" for key, value in config.items()))


if __name__ == "__main__":
    main()
