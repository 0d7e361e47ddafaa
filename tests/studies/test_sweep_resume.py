"""The DTU sweep's resumable runner, with a fake trainer and evaluator injected through the sweep's options.

The fakes count their invocations in a log file, write what the real ones write (a run folder with
config.txt and ckpt/latest.pt; eval/<split>/{per_image.json,summary.json}) and can be told to "die" after
writing a checkpoint, as a killed training would.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from multiview.studies.cells import StepFailed
from multiview.studies.dtu_sweep import cell_expname, parse_sweep_options, run_sweep

FAKE_TRAINER = textwrap.dedent('''
    import argparse, json, sys
    from pathlib import Path
    here = Path(__file__).parent
    p = argparse.ArgumentParser()
    for name in ("--config", "--expname", "--runs_dir", "--init_from"):
        p.add_argument(name)
    p.add_argument("--seed", type=int)
    p.add_argument("--dtu_fraction", type=int, default=100)
    a = p.parse_args()
    run = Path(a.runs_dir) / a.expname
    latest = run / "ckpt" / "latest.pt"
    resumed = latest.is_file()
    with open(here / "calls.log", "a") as log:
        log.write(json.dumps({"tool": "train", "run": a.expname, "resumed": resumed, "config": a.config}) + "\\n")
    (run / "ckpt").mkdir(parents=True, exist_ok=True)
    lines = [f"expname = {a.expname}", f"dtu_fraction = {a.dtu_fraction}", f"seed = {a.seed}", "device = cpu"]
    if a.init_from:
        assert Path(a.init_from).is_file(), a.init_from
        lines.append(f"init_from = {a.init_from}")
    (run / "config.txt").write_text("\\n".join(lines) + "\\n")
    latest.write_text("checkpoint")
    die = here / f"die_{a.expname}"
    if die.is_file():
        die.unlink()
        sys.exit(137)
''')

FAKE_EVALUATOR = textwrap.dedent('''
    import argparse, json
    from pathlib import Path
    here = Path(__file__).parent
    p = argparse.ArgumentParser()
    p.add_argument("--run")
    p.add_argument("--split")
    p.add_argument("--lights")
    a = p.parse_args()
    run = Path(a.run)
    with open(here / "calls.log", "a") as log:
        log.write(json.dumps({"tool": "evaluate", "run": run.name, "lights": a.lights}) + "\\n")
    config = dict(line.split(" = ", 1) for line in (run / "config.txt").read_text().splitlines())
    fraction = float(config["dtu_fraction"])
    bonus = 10.0 if "init_from" in config else 0.0
    out = run / "eval" / a.split
    out.mkdir(parents=True, exist_ok=True)
    records = [{"scan": "scan1", "ref_view": v, "light": 3, "abs_error_mm": 10.0 - v,
                "accuracy_2mm": fraction + bonus + v, "accuracy_4mm": 50.0 + bonus, "accuracy_8mm": 70.0 + bonus,
                "num_valid_pixels": 64} for v in range(2)]
    (out / "per_image.json").write_text(json.dumps(records))
    (out / "summary.json").write_text(json.dumps({"protocol": {"device": "cpu", "data_root": "fake"}}))
''')


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "fake_trainer.py").write_text(FAKE_TRAINER)
    (tools / "fake_evaluator.py").write_text(FAKE_EVALUATOR)
    (tmp_path / "base.txt").write_text("num_iterations = 5\n")
    (tmp_path / "pretrained.pt").write_text("weights")
    return tools


def calls(tools: Path) -> list[dict]:
    log = tools / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def sweep_args(tmp_path: Path, tools: Path, *extra: str):
    return parse_sweep_options([
        "--sweep_name", "fake", "--sweeps_dir", str(tmp_path / "sweeps"), "--base_config", str(tmp_path / "base.txt"),
        "--fractions", "5", "15", "--init_names", "scratch", "mvimgnet",
        "--init_checkpoints", str(tmp_path / "pretrained.pt"), "--overrides", "num_iterations=2",
        "--trainer_command", str(tools / "fake_trainer.py"), "--evaluator_command", str(tools / "fake_evaluator.py"),
        "--evaluator_overrides", "lights=3", "--no-child_output", *extra])


def test_finished_cells_are_not_rerun(tmp_path, fakes):
    run_sweep(sweep_args(tmp_path, fakes))
    first = calls(fakes)
    assert [c["tool"] for c in first].count("train") == 4 and [c["tool"] for c in first].count("evaluate") == 4
    assert {c["lights"] for c in first if c["tool"] == "evaluate"} == {"3"}
    folder = tmp_path / "sweeps" / "fake"
    assert (folder / "train_config.txt").read_text().splitlines()[-1] == "num_iterations = 2"
    # the table: rows 5 % and 15 %, cells scratch / mvimgnet = per-image means of the fake results
    markdown = (folder / "results.md").read_text()
    assert "| 5 % | 5.50 / 15.50 | 50.00 / 60.00 | 70.00 / 80.00 | 9.50 / 9.50 |" in markdown
    assert "| 15 % | 15.50 / 25.50 |" in markdown
    records = json.loads((folder / "results.json").read_text())["records"]
    assert [(r["fraction"], r["init"], r["seed"]) for r in records] == [
        ("5", "scratch", 0), ("5", "mvimgnet", 0), ("15", "scratch", 0), ("15", "mvimgnet", 0)]
    assert (folder / "results.csv").read_text().splitlines()[0].startswith("fraction,init,seed,run")
    manifest = json.loads((folder / "sweep.json").read_text())
    assert manifest["seeds"] == [0] and manifest["cells"][1]["init_from"] == str(tmp_path / "pretrained.pt")
    assert manifest["cells"][1]["name"] == cell_expname("fake", 5, "mvimgnet", 0) == "fake_dtu5_mvimgnet_seed0"

    report = run_sweep(sweep_args(tmp_path, fakes))
    assert calls(fakes) == first, "a finished sweep ran children again"
    assert report.count("done before") == 4

    # a cell whose evaluation is missing is evaluated again, without retraining
    (folder / "runs" / "fake_dtu15_scratch_seed0" / "eval" / "test" / "summary.json").unlink()
    run_sweep(sweep_args(tmp_path, fakes))
    again = calls(fakes)[len(first):]
    assert again == [{"tool": "evaluate", "run": "fake_dtu15_scratch_seed0", "lights": "3"}]


def test_killed_sweep_continues_and_the_half_trained_cell_resumes(tmp_path, fakes):
    (fakes / "die_fake_dtu5_mvimgnet_seed0").touch()  # the second cell's trainer dies after a checkpoint
    with pytest.raises(StepFailed, match="fake_dtu5_mvimgnet_seed0: finetune exited with status 137"):
        run_sweep(sweep_args(tmp_path, fakes))
    before = calls(fakes)
    assert [(c["tool"], c["run"]) for c in before] == [("train", "fake_dtu5_scratch_seed0"),
                                                       ("evaluate", "fake_dtu5_scratch_seed0"),
                                                       ("train", "fake_dtu5_mvimgnet_seed0")]
    run_sweep(sweep_args(tmp_path, fakes))
    after = calls(fakes)[len(before):]
    assert after[0] == {"tool": "train", "run": "fake_dtu5_mvimgnet_seed0", "resumed": True,
                        "config": str(tmp_path / "sweeps" / "fake" / "train_config.txt")}
    assert all(c["run"] != "fake_dtu5_scratch_seed0" for c in after), "the finished cell was rerun"
    assert [c["tool"] for c in after].count("train") == 3  # the resumed cell + the two 15 % cells
    log = (tmp_path / "sweeps" / "fake" / "logs" / "fake_dtu5_mvimgnet_seed0.log").read_text()
    assert log.count("$ ") == 2  # both attempts are in the cell's log


def test_more_seeds_add_cells_and_changed_settings_are_refused(tmp_path, fakes):
    run_sweep(sweep_args(tmp_path, fakes))
    count = len(calls(fakes))
    run_sweep(sweep_args(tmp_path, fakes, "--seeds", "0", "1"))
    new = calls(fakes)[count:]
    assert {c["run"] for c in new} == {cell_expname("fake", f, i, 1) for f in (5, 15) for i in ("scratch", "mvimgnet")}
    markdown = (tmp_path / "sweeps" / "fake" / "results.md").read_text()
    assert "mean over seeds [0, 1]" in markdown
    with pytest.raises(ValueError, match="started with a different config"):
        run_sweep(sweep_args(tmp_path, fakes, "--overrides", "num_iterations=3"))


def test_options_are_checked(tmp_path, fakes):
    with pytest.raises(ValueError, match="one entry per non-scratch init"):
        sweep_args(tmp_path, fakes, "--init_checkpoints")
    with pytest.raises(ValueError, match="set by the study"):
        run_sweep(sweep_args(tmp_path, fakes, "--overrides", "dtu_fraction=5"))
    (tmp_path / "sweep.txt").write_text("fractons = [5]\n")
    with pytest.raises(ValueError, match="did you mean 'fractions'"):
        parse_sweep_options(["--config", str(tmp_path / "sweep.txt")])


def test_missing_init_checkpoint_fails_before_training(tmp_path, fakes):
    (tmp_path / "pretrained.pt").unlink()
    with pytest.raises(StepFailed, match="missing .*pretrained.pt"):
        run_sweep(sweep_args(tmp_path, fakes, "--fractions", "5"))
    assert [c["run"] for c in calls(fakes)] == ["fake_dtu5_scratch_seed0", "fake_dtu5_scratch_seed0"]


def test_every_shipped_sweep_and_study_config_parses():
    from multiview.studies.pretrain_study import parse_study_options

    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "configs" / "sweeps").glob("*.txt")):
        args = parse_sweep_options(["--config", str(path)])
        assert Path(root / args.base_config).is_file(), path
    for path in sorted((root / "configs" / "studies").glob("*.txt")):
        if path.name.startswith("base_"):
            continue
        args = parse_study_options(["--config", str(path)])
        assert Path(root / args.pretrain_config).is_file() and Path(root / args.finetune_config).is_file(), path


def test_the_scripts_say_how_to_continue_after_a_failed_step(capsys):
    from multiview.studies.cells import StepFailed, resumable_main

    def fail(args):
        raise StepFailed(f"finetune of {args[0]} exited with status 1")

    assert resumable_main(lambda argv: argv, fail, ["cell_a"]) == 1
    assert "error: finetune of cell_a exited with status 1\nFix the cause and run the same command again" in (
        capsys.readouterr().out)
    assert resumable_main(lambda argv: argv, lambda args: None, []) == 0
