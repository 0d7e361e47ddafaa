"""The DTU fraction sweep (MVImgNet paper, Table 5): JDACS finetuned on 5/15/25 % of DTU's training scans
from scratch and from one or more pretrained checkpoints, evaluated on the DTU test scans, tabulated.

Plan: one cell per (fraction, initialisation, seed), in that order. A cell trains run
`<sweeps_dir>/<sweep_name>/runs/<sweep_name>_dtu<fraction>_<init>_seed<seed>` with
`trainer --config <sweep>/train_config.txt --expname ... --runs_dir ... --seed S --dtu_fraction F
[--init_from CKPT]` (train_config.txt = base_config + overrides, written once; see `config_files`), then
runs `python -m jdacs.evaluate --run RUN --split test`. A cell whose `RUN/eval/<split>/summary.json`
exists is skipped; a killed sweep run again continues (a half-trained run resumes from its checkpoint).
An initialisation's checkpoint is a `.pt` file, a run folder (its `ckpt/latest.pt`), or a trainer config
(`.txt`): the sweep then pretrains run `<sweep_name>_pretrain_<init>` with it first (once, shared by the
cells, with `pretrain_overrides`) and finetunes from its latest checkpoint.

With `synthetic_dtu = FOLDER` the sweep first writes synthetic DTU data there (once) holding the scans
of the largest fraction (`jdacs.fractions` lists are nested: 25 % = 20 scans ⊇ 15 % ⊇ 5 %) and the first
`synthetic_test_scans` official test scans, so the same sweep runs unchanged on the embedded data.

Outputs in `<sweeps_dir>/<sweep_name>/`: sweep.json (plan: cells, seeds, checkpoints, options,
provenance), results.md (Table 5 layout), results.csv and results.json (one record per cell), logs/,
done/, the derived configs, and runs/.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import configargparse

from multiview.engine.options import parse_options
from multiview.studies.cells import Cell, RunReport, run_cells
from multiview.studies.config_files import config_value, parse_overrides, read_config_items
from multiview.studies.provenance import REPO_ROOT, provenance
from multiview.studies.results import load_eval_result
from multiview.studies.steps import (
    add_synthetic_data_options,
    cli_arguments,
    evaluate_step,
    synthetic_data_step,
    synthetic_data_steps,
    train_step,
)
from multiview.studies.tables import FractionEntry, fraction_records, fraction_table, write_records

RESERVED_TRAINER_KEYS = ("config", "expname", "runs_dir", "seed", "dtu_fraction", "dtu_scans", "init_from")
FRACTION_LISTS = REPO_ROOT / "configs" / "jdacs" / "lists"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def build_sweep_parser() -> configargparse.ArgParser:
    parser = configargparse.ArgParser(
        prog="eval/run_dtu_sweep.py", allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="DTU 5/15/25 %% sweep: finetune JDACS from scratch and from pretrained checkpoints, "
                    "evaluate on the DTU test scans, tabulate (MVImgNet paper, Table 5). Resumable.")
    add = parser.add_argument
    add("--config", is_config_file=True, help="sweep config file (configs/sweeps/*.txt)")
    add("--sweep_name", default="dtu_fraction", help="name of the sweep: its folder and the prefix of its run names")
    add("--sweeps_dir", default="sweeps", help="folder holding every sweep's folder")
    add("--base_config", default="configs/jdacs/finetune_dtu.txt",
        help="trainer config every cell finetunes with (before overrides)")
    add("--overrides", nargs="*", default=[],
        help="key=value trainer options applied to base_config for every cell (e.g. num_iterations=2); "
             "a value with spaces is a list")
    add("--fractions", type=int, nargs="+", default=[5, 15, 25],
        help="DTU training fractions in %% (--dtu_fraction of the trainer: 5, 15, 25 or 100)")
    add("--init_names", nargs="+", default=["scratch", "mvimgnet"],
        help="initialisations: 'scratch' and names of pretrained checkpoints (run names and table labels)")
    add("--init_checkpoints", nargs="*", default=["runs/jdacs_pretrain_mvimgnet/ckpt/latest.pt"],
        help="one per non-scratch init name, in order: a checkpoint (.pt), a run folder (its ckpt/latest.pt), "
             "or a trainer config (.txt) to pretrain with first")
    add("--pretrain_overrides", nargs="*", default=[],
        help="key=value trainer options for the pretraining of inits given as a config (.txt)")
    add("--seeds", type=int, nargs="+", default=[0], help="training seeds; each is a separate cell, tables "
                                                          "show the mean over seeds")
    add("--split", default="test", help="evaluation split passed to the evaluator (--split)")
    add("--evaluator_overrides", nargs="*", default=[],
        help="key=value options passed to the evaluator as --key value (true/false: --key / --no-key)")
    add("--launcher", default="",
        help="command that runs the trainer script instead of the current python, e.g. "
             "'torchrun --nproc_per_node 8' (evaluation always runs in one process)")
    add("--trainer_command", default="train_jdacs.py", help="trainer script (or '-m module')")
    add("--evaluator_command", default="-m jdacs.evaluate", help="evaluator script or '-m module'")
    add_synthetic_data_options(add, default_views=5,
                               scans_help="the fractions' scans + synthetic_test_scans test scans")
    add("--paper_rows", action=argparse.BooleanOptionalAction, default=True,
        help="add the paper's 5 %% row (labelled as the paper's) to the table")
    add("--child_output", action=argparse.BooleanOptionalAction, default=True,
        help="show the trainers' and evaluators' output (always copied to <sweep>/logs/)")
    add("--dry_run", action=argparse.BooleanOptionalAction, default=False,
        help="print the plan and the table of what exists, run nothing")
    return parser


def parse_sweep_options(argv: list[str] | None = None) -> argparse.Namespace:
    """CLI > environment > config file > defaults; unknown config keys fail with the nearest valid key."""
    args = parse_options(build_sweep_parser(), argv)
    args.argv = ["eval/run_dtu_sweep.py", *(sys.argv[1:] if argv is None else argv)]
    validate_inits(args.init_names, args.init_checkpoints)
    return args


def validate_inits(names: list[str], checkpoints: list[str]) -> None:
    bad = [n for n in names if not NAME_PATTERN.match(n)]
    if bad:
        raise ValueError(f"init names must be letters, digits, '_', '-' or '.', got {bad}")
    if len(set(names)) != len(names):
        raise ValueError(f"init names must be distinct, got {names}")
    pretrained = [n for n in names if n != "scratch"]
    if len(checkpoints) != len(pretrained):
        raise ValueError(f"--init_checkpoints needs one entry per non-scratch init name {pretrained}, "
                         f"got {len(checkpoints)}: {checkpoints}")


def sweep_dir(args: argparse.Namespace) -> Path:
    return Path(args.sweeps_dir) / args.sweep_name


def cell_expname(sweep_name: str, fraction: int, init: str, seed: int) -> str:
    """The deterministic run name of a cell."""
    return f"{sweep_name}_dtu{fraction}_{init}_seed{seed}"


def fraction_list_scans(fraction: int) -> list[int]:
    """The scans of the trainer's shipped list for --dtu_fraction (configs/jdacs/lists/dtu_train_<F>pct.txt)."""
    path = FRACTION_LISTS / f"dtu_train_{fraction}pct.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no DTU fraction list for {fraction} %")
    return [int(token) for line in path.read_text().splitlines() for token in line.split("#", 1)[0].split()]


def synthetic_scans(fractions: list[int], num_test_scans: int) -> list[int]:
    """Scans synthetic data needs: the largest fraction's training scans (⊇ the others) + the first test scans."""
    from multiview.data.readers.dtu import read_dtu_scan_list

    return sorted(fraction_list_scans(max(fractions))) + read_dtu_scan_list("test")[:num_test_scans]


def plan_sweep(args: argparse.Namespace) -> list[Cell]:
    """The cells of the sweep (module docstring); writes the derived configs, checks nothing has changed."""
    folder = sweep_dir(args)
    runs_dir = folder / "runs"
    overrides = parse_overrides(args.overrides, RESERVED_TRAINER_KEYS)
    base = read_config_items(args.base_config)
    if config_value(base, "dtu_scans"):
        raise ValueError(f"{args.base_config}: sets dtu_scans, which would override every cell's --dtu_fraction")
    prefix = synthetic_data_steps(args.synthetic_data, args.synthetic_views, args.synthetic_size,
                                  args.synthetic_seed, folder / "logs")
    if args.synthetic_dtu:
        prefix.append(synthetic_data_step("dtu_train", args.synthetic_dtu, 0, args.synthetic_views,
                                          args.synthetic_size, args.synthetic_seed,
                                          synthetic_scans(args.fractions, args.synthetic_test_scans),
                                          folder / "logs"))
    header = [f"written by the DTU sweep {args.sweep_name!r}; every cell trains with this file"]
    pretrain_steps, checkpoints = {}, {}
    for name, entry in zip([n for n in args.init_names if n != "scratch"], args.init_checkpoints):
        path = Path(entry)
        if path.suffix == ".txt":
            expname = f"{args.sweep_name}_pretrain_{name}"
            pretrain_steps[name] = train_step(
                f"pretrain {name}", folder, args.trainer_command, args.launcher,
                folder / f"pretrain_{name}_config.txt", path,
                parse_overrides(args.pretrain_overrides, RESERVED_TRAINER_KEYS), runs_dir, expname, args.seeds[0],
                header=[f"written by the DTU sweep {args.sweep_name!r}: pretraining of init {name!r}"])
            checkpoints[name] = runs_dir / expname / "ckpt" / "latest.pt"
        else:
            checkpoints[name] = path / "ckpt" / "latest.pt" if path.is_dir() else path
    evaluator_arguments = ["--split", args.split, *cli_arguments(parse_overrides(args.evaluator_overrides))]
    cells = []
    for fraction in args.fractions:
        for init in args.init_names:
            for seed in args.seeds:
                expname = cell_expname(args.sweep_name, fraction, init, seed)
                run_dir = runs_dir / expname
                train = train_step("finetune", folder, args.trainer_command, args.launcher,
                                   folder / "train_config.txt", args.base_config, overrides, runs_dir, expname,
                                   seed, ["--dtu_fraction", str(fraction)], checkpoints.get(init), header)
                evaluate = evaluate_step(run_dir, args.evaluator_command, evaluator_arguments,
                                         run_dir / "eval" / args.split / "summary.json",
                                         folder / "logs" / f"{expname}.eval.log")
                steps = [*prefix, *([pretrain_steps[init]] if init in pretrain_steps else []), train, evaluate]
                cells.append(Cell(expname, steps, {"fraction": fraction, "init": init, "seed": seed,
                                                   "run": str(run_dir.relative_to(folder)),
                                                   "init_from": str(checkpoints[init]) if init in checkpoints
                                                   else None}))
    return cells


def write_manifest(args: argparse.Namespace, cells: list[Cell]) -> Path:
    """sweep.json: the plan (cells with fraction, init, seed, run), options and provenance of this launch."""
    path = sweep_dir(args) / "sweep.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    options = {k: v for k, v in vars(args).items() if k not in ("config", "value_sources", "argv")}
    launch = {**provenance(args.argv, with_device=False), "config": args.config}
    manifest = {"kind": "dtu_fraction_sweep", "name": args.sweep_name, "split": args.split,
                "init_names": args.init_names, "seeds": args.seeds, "fractions": args.fractions,
                "options": options, "launches": previous.get("launches", []) + [launch],
                "cells": [{"name": c.name, **c.info} for c in cells]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def sweep_entries(folder: Path, manifest: dict) -> list[FractionEntry]:
    """Table 5 entries of a sweep folder from its manifest (cells without results yet have result None)."""
    entries = []
    for cell in manifest["cells"]:
        eval_dir = folder / cell["run"] / "eval" / manifest.get("split", "test")
        result = load_eval_result(eval_dir) if (eval_dir / "per_image.json").is_file() else None
        entries.append(FractionEntry(str(cell["fraction"]), cell["init"], cell["seed"], result))
    return entries


def tabulate_sweep(folder: Path, made_by: dict | None = None, paper_rows: bool = True,
                   out_dir: Path | None = None, stem: str = "results") -> str:
    """Write <out_dir>/<stem>.md/.csv/.json (default: the sweep folder's results.*) from its sweep.json;
    returns the markdown."""
    manifest = json.loads((folder / "sweep.json").read_text())
    entries = sweep_entries(folder, manifest)
    title = (f"DTU fraction sweep `{manifest['name']}` (Table 5 layout): JDACS finetuned on DTU, "
             f"evaluated on the {manifest['split']} scans")
    table = fraction_table(entries, title, manifest["init_names"], made_by, paper_rows)
    markdown = table.markdown()
    out_dir = Path(out_dir or folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(markdown)
    write_records(fraction_records(entries), out_dir / f"{stem}.csv", out_dir / f"{stem}.json",
                  {"sweep": manifest["name"], "seeds": manifest["seeds"], "made_by": made_by})
    return markdown


def run_sweep(args: argparse.Namespace) -> RunReport:
    """Plan, run what is missing, tabulate; prints the table."""
    cells = plan_sweep(args)
    write_manifest(args, cells)
    report = run_cells(cells, dry_run=args.dry_run, child_output=args.child_output)
    markdown = tabulate_sweep(sweep_dir(args), provenance(args.argv, with_device=False), args.paper_rows)
    print(markdown)
    print(f"tables: {sweep_dir(args) / 'results.md'} (.csv, .json)")
    return report
