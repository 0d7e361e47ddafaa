"""JDACS training on the shared engine: smoke run from demo.txt, overfitting with the photometric loss alone,
resume exactness (both optimizer stages), DTU fraction lists, supervised mode, offline VGG19, shipped configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import train_jdacs
from jdacs.evaluate import build_evaluate_parser
from jdacs.fractions import fraction_list_path
from jdacs.options import build_jdacs_parser
from jdacs.train import CONSTANT_BASELINES, JDACSTask, constant_depth_guesses
from multiview.data.registry import dataset_spec, parse_dataset_entry
from multiview.engine.checkpoint import load_checkpoint
from multiview.engine.options import parse_options
from multiview.engine.trainer import Trainer
from multiview.vision.backbones import PretrainedWeightsMissing
from tests.jdacs.conftest import CONFIG_DIR, TRAIN_SCANS, tiny_run_argv

TRAINING_CONFIGS = ("demo.txt", "pretrain_mvimgnet.txt", "finetune_dtu.txt")


class RecordingTask(JDACSTask):
    """JDACSTask recording (step, stage, loss, scalars) of every optimizer stage."""

    def __init__(self, args, run_dir):
        super().__init__(args, run_dir)
        self.stages: list[tuple[int, int, float, dict]] = []

    def training_stages(self, model, batch, step):
        for index, (loss, scalars) in enumerate(super().training_stages(model, batch, step)):
            self.stages.append((step, index, loss.item(), scalars))
            yield loss, scalars


def _options(argv):
    return parse_options(build_jdacs_parser(), argv)


def _train(argv) -> tuple[RecordingTask, Trainer]:
    args = _options(argv)
    task = RecordingTask(args, Path(args.runs_dir) / args.expname)
    trainer = Trainer(task, args)
    trainer.run()
    return task, trainer


def test_three_step_smoke_run_from_demo_config(jdacs_data_root, tmp_path):
    argv = tiny_run_argv(jdacs_data_root, tmp_path, "smoke", "--num_iterations", "3", "--validate_every", "3",
                         "--checkpoint_every", "3")
    validation = train_jdacs.main(argv)
    for key in ("abs_error_mm", "accuracy_2mm", "accuracy_4mm", "accuracy_8mm"):
        assert np.isfinite(validation[key]), key
        for baseline in CONSTANT_BASELINES:
            assert np.isfinite(validation[f"{baseline}_{key}"]), (baseline, key)
    run = tmp_path / "smoke"
    state = load_checkpoint(run / "ckpt" / "latest.pt")
    assert state["step"] == 3
    assert (run / "train.log").is_file() and list((run / "tb").iterdir())
    log = (run / "train.log").read_text()
    assert "augmentation=" in log and "segmentation=" in log and "const_mid_abs_error_mm=" in log
    reloaded = _options(["--config", str(run / "config.txt")])  # the run's config re-loads, overrides included
    assert reloaded.num_iterations == 3 and reloaded.num_depths == 16 and reloaded.dtu_scans == TRAIN_SCANS[:2]
    assert reloaded.data_root == str(jdacs_data_root) and reloaded.coseg_backbone == "random"


def test_constant_depth_guesses():
    depth_values = 425.0 + 10.0 * torch.arange(32.0)  # 425 .. 735 mm
    truth = torch.tensor([[500.0, 600.0, 0.0], [700.0, 900.0, 0.0]])
    guesses = constant_depth_guesses(depth_values, truth, truth > 0)
    assert guesses["const_mid"] == 580.0
    assert guesses["const_median"] in (600.0, 700.0)  # either middle value minimises the abs error
    assert np.isnan(constant_depth_guesses(depth_values, truth, torch.zeros_like(truth, dtype=torch.bool))[
        "const_median"])


class FixedBatch(torch.utils.data.Dataset):
    """Every step gets the same batch (one sample: scan, reference view and lighting fixed by the seed)."""

    def __init__(self, batches, seed: int):
        self.batches, self.seed = batches, seed

    def __len__(self) -> int:
        return 1

    def __getitem__(self, item):
        return self.batches[(0, self.seed)]


def test_self_supervised_photometric_loss_alone_overfits_one_sample(jdacs_data_root, tmp_path):
    """The photometric loss (no co-segmentation, no augmentation stage) on one fixed sample pulls the depth
    towards the ground truth: the abs error falls from ~62 mm to ~42 mm in 30 steps (D 8, 60 mm apart)."""
    argv = tiny_run_argv(jdacs_data_root, tmp_path, "overfit", "--num_iterations", "30", "--validate_every", "0",
                         "--checkpoint_every", "1000", "--log_every", "10", "--w_seg", "0", "--w_aug", "0",
                         "--lr", "3e-3", "--num_depths", "8", "--interval_scale", "24")
    args = _options(argv)
    task = RecordingTask(args, tmp_path / "overfit")
    batches = task.training_dataset
    task.training_dataset = lambda: FixedBatch(batches(), seed=7)
    Trainer(task, args).run()
    assert [stage for _, stage, _, _ in task.stages] == [0] * 30  # one optimizer stage per step
    assert all(set(scalars) >= {"reconstruction", "ssim", "smoothness"} and "segmentation" not in scalars
               for *_, scalars in task.stages)
    errors = np.array([scalars["gt_abs_error_mm"] for *_, scalars in task.stages])
    assert np.isfinite(errors).all()
    first, last = errors[:3].mean(), errors[-3:].mean()
    assert last < 0.8 * first, (first, last, errors.round(1))


def test_resume_gives_identical_losses_in_both_stages(jdacs_data_root, tmp_path):
    common = ("--validate_every", "0", "--checkpoint_every", "2", "--w_aug", "0.5")
    uninterrupted, _ = _train(tiny_run_argv(jdacs_data_root, tmp_path / "a", "run", "--num_iterations", "4", *common))
    first, _ = _train(tiny_run_argv(jdacs_data_root, tmp_path / "b", "run", "--num_iterations", "2", *common))
    resumed_args = _options(tiny_run_argv(jdacs_data_root, tmp_path / "b", "run", "--num_iterations", "4",
                                          "--resume", *common))
    resumed = RecordingTask(resumed_args, tmp_path / "b" / "run")
    trainer = Trainer(resumed, resumed_args)
    assert trainer.step == 2
    trainer.run()

    def losses(task):
        return [(step, stage, loss) for step, stage, loss, _ in task.stages]

    assert [stage for _, stage, _ in losses(uninterrupted)] == [0, 1] * 4  # photometric+co-seg, augmentation
    assert losses(first) + losses(resumed) == losses(uninterrupted)  # bit-identical, augmentation draws included
    final = load_checkpoint(tmp_path / "a" / "run" / "ckpt" / "latest.pt")["model"]
    for key, value in final.items():
        assert torch.equal(value, trainer.model.state_dict()[key]), key


def test_supervised_mode_takes_one_stage_per_step(jdacs_data_root, tmp_path):
    task, trainer = _train(tiny_run_argv(jdacs_data_root, tmp_path, "supervised", "--supervised",
                                         "--num_iterations", "2", "--validate_every", "0"))
    assert [(step, stage) for step, stage, _, _ in task.stages] == [(0, 0), (1, 0)]
    for *_, scalars in task.stages:
        assert "loss" in scalars and "gt_abs_error_mm" in scalars
        assert not {"reconstruction", "segmentation", "augmentation"} & set(scalars)
    assert task.coseg is None and trainer.step == 2


def test_dtu_fraction_list_is_copied_into_the_run_and_used(jdacs_data_root, tmp_path):
    # `--dtu_scans` without values clears demo.txt's explicit scans, so --dtu_fraction chooses them
    argv = tiny_run_argv(jdacs_data_root, tmp_path, "fraction", "--num_iterations", "1", "--validate_every", "0",
                         "--dtu_scans", "--dtu_fraction", "5")
    args = _options(argv)
    assert not args.dtu_scans
    task, _ = _train(argv)
    copied = tmp_path / "fraction" / fraction_list_path(5).name
    assert copied.read_text() == fraction_list_path(5).read_text()
    assert sorted(scene.meta["scan"] for scene in task.training_dataset().dataset.scenes) == sorted(TRAIN_SCANS)


def test_imagenet_coseg_backbone_offline_stops_with_a_clear_error(jdacs_data_root, tmp_path, monkeypatch):
    hub = tmp_path / "empty_hub"
    hub.mkdir()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    argv = tiny_run_argv(jdacs_data_root, tmp_path, "imagenet", "--num_iterations", "1", "--validate_every", "0",
                         "--coseg_backbone", "imagenet")
    with pytest.raises(PretrainedWeightsMissing) as error:
        train_jdacs.main(argv)
    message = str(error.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(hub / "checkpoints") in message
    assert not (tmp_path / "imagenet" / "ckpt").exists()  # stopped before any training step


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_shipped_training_configs_parse_with_relative_paths(name):
    config = CONFIG_DIR / name
    args = _options(["--config", str(config)])
    for line in config.read_text().splitlines():
        value = line.split("#", 1)[0].partition("=")[2].strip()
        assert not value.startswith("/"), f"{name}: absolute path in {line!r}"
    for entry in args.train_datasets + (args.val_datasets or []):
        dataset_spec(parse_dataset_entry(entry, args.data_root)[0])  # raises for an unknown dataset name
    assert args.coseg_image_size % 16 == 0 and args.num_depths % 8 == 0


def test_shipped_evaluation_config_parses():
    config = CONFIG_DIR / "eval_dtu.txt"
    args = parse_options(build_evaluate_parser(), ["--config", str(config), "--run", "runs/x"])
    assert args.split == "test" and args.lights == "all"
    assert (args.num_views, args.num_depths, args.interval_scale) == (7, 192, 1.6)
