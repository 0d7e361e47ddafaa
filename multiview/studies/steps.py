"""The standard steps of a study: write synthetic data, train (pretrain or finetune) a run, evaluate a run.

Each returns a `cells.Step` whose done file makes it resumable:
* synthetic data: `<folder>/.written_by_study.json` (written by the runner after the writer succeeds);
* training: `<study>/done/<expname>.json` (written by the runner after the trainer exits with 0; a killed
  trainer is started again with the same arguments and resumes from `<run>/ckpt/latest.pt`);
* evaluation: the evaluator's own `<run>/eval/<split>/summary.json` (for `jdacs.evaluate`), or the file
  the caller names.
"""

from __future__ import annotations

import shlex
import sys
from collections import OrderedDict
from pathlib import Path

from multiview.studies.cells import Step, python_command
from multiview.studies.config_files import derived_config_text, write_config_once

SYNTHETIC_MARKER = ".written_by_study.json"


def cli_arguments(options: OrderedDict) -> list[str]:
    """`key=value` items -> CLI tokens: lists expand, true/false become --key / --no-key (flag options)."""
    tokens: list[str] = []
    for key, value in options.items():
        if isinstance(value, list):
            tokens += [f"--{key}", *map(str, value)]
        elif str(value).lower() == "true":
            tokens.append(f"--{key}")
        elif str(value).lower() == "false":
            tokens.append(f"--no-{key}")
        else:
            tokens += [f"--{key}", str(value)]
    return tokens


def synthetic_data_step(format_name: str, folder: str | Path, num_scenes: int, num_views: int, size: str,
                        seed: int, scan_ids: list[int] | None = None, log_dir: Path | None = None) -> Step:
    """`python -m multiview.synthetic --format ... --out folder ...`; refuses a non-empty folder it did not write."""
    folder = Path(folder)
    command = [sys.executable, "-m", "multiview.synthetic", "--format", format_name, "--out", str(folder),
               "--scenes", str(len(scan_ids) if scan_ids else num_scenes), "--views", str(num_views),
               "--size", size, "--seed", str(seed)]
    if scan_ids:
        command += ["--scan_ids", *map(str, scan_ids)]

    def prepare() -> None:
        started = folder / ".being_written_by_study"
        if folder.is_dir() and any(folder.iterdir()) and not started.is_file():
            raise FileExistsError(f"{folder}: exists and holds files that this study did not write (no "
                                  f"{SYNTHETIC_MARKER}); point the study's synthetic data folder elsewhere")
        folder.mkdir(parents=True, exist_ok=True)
        started.touch()

    return Step(f"synthetic {format_name} data", command, folder / SYNTHETIC_MARKER, write_done=True,
                log_file=log_dir / f"synthetic_{format_name}.log" if log_dir else None, prepare=prepare)


def add_synthetic_data_options(add, default_views: int, scans_help: str) -> None:
    """The options of a sweep or study that write embedded synthetic data before anything runs (`add`: the
    parser's add_argument). None of them is needed on real data."""
    add("--synthetic_data", nargs="*", default=[],
        help="FORMAT:FOLDER:SCENES[:SEED] entries of synthetic data to write first (once), e.g. "
             "mvimgnet:demo_data/x:8; SEED (default synthetic_seed) keeps test scenes apart from training scenes")
    add("--synthetic_dtu", default=None, help=f"write synthetic DTU data to this folder first ({scans_help}); "
                                              f"none for real data")
    add("--synthetic_test_scans", type=int, default=2, help="official DTU test scans written to synthetic_dtu")
    add("--synthetic_size", default="64x64", help="HxW of the synthetic images (MVSNet: multiples of 32)")
    add("--synthetic_views", type=int, default=default_views, help="views per synthetic scene")
    add("--synthetic_seed", type=int, default=0, help="seed of the synthetic scenes (scene k uses seed + k)")


def synthetic_data_steps(entries: list[str], num_views: int, size: str, seed: int,
                         log_dir: Path | None = None) -> list[Step]:
    """Steps for `FORMAT:FOLDER:SCENES[:SEED]` entries (e.g. "mvimgnet:demo_data/study_mvimgnet:8:100")."""
    steps = []
    for entry in entries:
        parts = entry.split(":")
        if len(parts) not in (3, 4) or not all(part.isdigit() for part in parts[2:]):
            raise ValueError(f"synthetic data entry {entry!r}: expected FORMAT:FOLDER:SCENES[:SEED]")
        entry_seed = int(parts[3]) if len(parts) == 4 else seed
        steps.append(synthetic_data_step(parts[0], parts[1], int(parts[2]), num_views, size, entry_seed,
                                         log_dir=log_dir))
    return steps


def train_step(name: str, study_dir: Path, trainer_command: str, launcher: str, config_path: Path,
               base_config: str | Path, overrides: OrderedDict, runs_dir: Path, expname: str, seed: int,
               extra_arguments: list[str] | None = None, init_from: Path | None = None,
               header: list[str] | None = None) -> Step:
    """Train run `runs_dir/expname` with `--config config_path` (= base config + overrides, written once).

    The derived config is written (or checked unchanged) now, so a changed setting fails before any step runs.
    """
    write_config_once(config_path, derived_config_text(base_config, overrides, header))
    command = python_command(trainer_command, launcher) + [
        "--config", str(config_path), "--expname", expname, "--runs_dir", str(runs_dir), "--seed", str(seed),
        *(extra_arguments or [])]
    if init_from is not None:
        command += ["--init_from", str(init_from)]
    return Step(name, command, study_dir / "done" / f"{expname}.json", write_done=True,
                requires=[init_from] if init_from is not None else [],
                partial_file=runs_dir / expname / "ckpt" / "latest.pt",
                log_file=study_dir / "logs" / f"{expname}.log")


def evaluate_step(run_dir: Path, evaluator_command: str, arguments: list[str], done_file: Path,
                  log_file: Path | None = None) -> Step:
    """Evaluate a run: `python <evaluator> --run RUN <arguments>`; done when `done_file` exists."""
    command = python_command(evaluator_command) + ["--run", str(run_dir), *arguments]
    return Step("evaluate", command, done_file, log_file=log_file)


def describe(step: Step) -> str:
    return f"{step.name}: {shlex.join(step.command)}"
