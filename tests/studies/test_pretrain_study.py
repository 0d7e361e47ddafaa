"""The pretraining study's plan with fake trainer/evaluator: subsets as symlink folders, pretrain -> finetune ->
evaluate per source, resumability, the table and the Fig. 5 plot."""

from __future__ import annotations

import json
from pathlib import Path

from multiview.data.readers.mvimgnet import index_mvimgnet
from multiview.studies.config_files import read_config_items
from multiview.studies.pretrain_study import parse_study_options, run_study
from tests.studies.test_sweep_resume import FAKE_EVALUATOR, FAKE_TRAINER, calls


def test_data_size_study_with_fakes(tmp_path):
    from multiview.synthetic.__main__ import write_format

    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "fake_trainer.py").write_text(FAKE_TRAINER)
    (tools / "fake_evaluator.py").write_text(FAKE_EVALUATOR)
    write_format("mvimgnet", tmp_path / "data" / "mvi", 8, 3, (32, 32), 0)
    (tmp_path / "pretrain.txt").write_text(f"data_root = {tmp_path / 'data'}\ntrain_datasets = [mvimgnet@mvi]\n")
    (tmp_path / "finetune.txt").write_text("num_iterations = 3\n")
    argv = ["--study_name", "tiny", "--studies_dir", str(tmp_path / "studies"), "--study", "data_size",
            "--model", "jdacs", "--pretrain_config", str(tmp_path / "pretrain.txt"),
            "--finetune_config", str(tmp_path / "finetune.txt"), "--finetune_overrides", "dtu_fraction=5",
            "--mvimgnet_dataset", "mvimgnet@mvi", "--subset_percents", "50", "100",
            "--trainer_command", str(tools / "fake_trainer.py"),
            "--evaluator_command", str(tools / "fake_evaluator.py"),
            "--evaluator_overrides", "lights=3", "--no-child_output"]
    run_study(parse_study_options(argv))
    folder = tmp_path / "studies" / "tiny"
    done = calls(tools)
    assert [c["tool"] for c in done].count("train") == 5  # scratch finetune + 2 x (pretrain + finetune)
    total = len(index_mvimgnet(tmp_path / "data" / "mvi", split="train").instances)
    half = json.loads((folder / "subsets" / "mvimgnet_50pct.json").read_text())
    full = json.loads((folder / "subsets" / "mvimgnet_100pct.json").read_text())
    assert half["num_videos"] == round(total / 2) and full["num_videos"] == total
    half_names = json.loads(Path(half["split_file"]).read_text())
    assert set(half_names) < set(json.loads(Path(full["split_file"]).read_text()))
    config = read_config_items(folder / "pretrain_mvimgnet_50pct_config.txt")
    assert config["train_datasets"] == [f"mvimgnet@{(folder / 'data' / 'mvimgnet_50pct').absolute()}"]
    assert {i.name for i in index_mvimgnet(folder / "data" / "mvimgnet_50pct", split="train").instances} == set(
        half_names)
    markdown = (folder / "results.md").read_text()
    assert f"| MVImgNet 50 % ({half['num_videos']} videos) | 110.50 |" in markdown  # fake: 100 + 10
    assert "| none (scratch) (0 videos) | 100.50 |" in markdown
    assert (folder / "results_fig5_data_size.png").stat().st_size > 0
    assert (folder / "results_fig5_data_size.svg").stat().st_size > 0
    run_study(parse_study_options(argv))
    assert calls(tools) == done, "a finished study ran children again"
