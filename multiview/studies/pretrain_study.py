"""The pretraining studies of the MVImgNet paper, for IBRNet or JDACS/MVSNet, as resumable cells.

* `study = where` (Tables 4 and 6): pretrain on each source of `sources` — `mvimgnet` (the pretraining
  config's MVImgNet as is), `mvimgnet_small` (a seeded random subset of its training instances with as
  many instances as the CO3D set has sequences, or `mvimgnet_small_size`) and `co3d` (the CO3D set) —
  then finetune each the same way (`finetune_config`), evaluate, one table (rows: source).
* `study = data_size` (Fig. 5, "more data, more power"): pretrain on seeded nested subsets of MVImgNet
  (`subset_percents` of its training instances, `multiview.studies.subsets`), finetune, evaluate, and
  plot the metric against the number of pretraining videos.

With `include_scratch` a row / point without pretraining (finetuning from random weights) is added.
One cell per (source, seed): [synthetic data,] pretrain → finetune (`--init_from` the pretraining's
`ckpt/latest.pt`) → evaluate, each a resumable step (`multiview.studies.cells`). Subsets are folders of
symlinks passed as `train_datasets = [mvimgnet@<folder>]`, recorded as split files (see `subsets`).
The scale (views, resolution, iterations) lives in the base configs the study points to, so the same
study runs on the embedded synthetic data (`configs/studies/*_demo.txt`, base configs
`configs/studies/base_*_demo.txt`) and at paper scale.

Outputs in `<studies_dir>/<study_name>/`: study.json (plan + provenance), subsets/ (split files and a
JSON per source with its number of videos), data/ (symlink folders), runs/, logs/, done/, results.md,
results.csv, results.json and, for data_size, results_fig5_data_size.{png,svg}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import OrderedDict
from pathlib import Path

import configargparse

from multiview.data.registry import parse_dataset_entry
from multiview.engine.options import parse_options
from multiview.studies.cells import Cell, RunReport, Step, run_cells
from multiview.studies.config_files import config_value, parse_overrides, read_config_items
from multiview.studies.dtu_sweep import synthetic_scans
from multiview.studies.plots import Series, plot_data_size
from multiview.studies.provenance import provenance
from multiview.studies.results import DEPTH_KEYS, load_eval_result
from multiview.studies.steps import (
    add_synthetic_data_options,
    cli_arguments,
    evaluate_step,
    synthetic_data_step,
    synthetic_data_steps,
    train_step,
)
from multiview.studies.subsets import (
    count_co3d_sequences,
    nested_subsets,
    subset_size,
    training_instances,
    write_split_file,
    write_symlink_subset,
)
from multiview.studies.tables import dataset_title, depth_table, render_table, write_records

MODELS = {
    "ibrnet": {"trainer": "train_ibrnet.py", "evaluator": "eval/eval_ibrnet.py",
               "pretrain": "configs/ibrnet/pretrain_mvimgnet.txt",
               "finetune": "configs/ibrnet/finetune_ibrnet_data.txt", "metric": "psnr"},
    "jdacs": {"trainer": "train_jdacs.py", "evaluator": "-m jdacs.evaluate",
              "pretrain": "configs/jdacs/pretrain_mvimgnet.txt", "finetune": "configs/jdacs/finetune_dtu.txt",
              "metric": "accuracy_2mm"},
}
WHERE_SOURCES = ("mvimgnet", "mvimgnet_small", "co3d")
SOURCE_LABELS = {"scratch": "none (scratch)", "mvimgnet": "MVImgNet", "mvimgnet_small": "MVImgNet-small",
                 "co3d": "CO3D"}
RESERVED_TRAINER_KEYS = ("config", "expname", "runs_dir", "seed", "init_from")


def build_study_parser() -> configargparse.ArgParser:
    parser = configargparse.ArgParser(
        prog="eval/run_pretrain_study.py", allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="MVImgNet pretraining studies: where to pretrain (Tables 4/6) and more data, more power "
                    "(Fig. 5), for IBRNet or JDACS. Pretrain, finetune, evaluate, tabulate, plot. Resumable.")
    add = parser.add_argument
    add("--config", is_config_file=True, help="study config file (configs/studies/*.txt)")
    add("--study_name", default="pretrain_study", help="name of the study: its folder and its run-name prefix")
    add("--studies_dir", default="studies", help="folder holding every study's folder")
    add("--study", choices=["where", "data_size"], default="where",
        help="where = pretraining source (Tables 4/6); data_size = nested MVImgNet subsets (Fig. 5)")
    add("--model", choices=sorted(MODELS), default="ibrnet", help="which model the study trains")
    add("--pretrain_config", default=None,
        help="trainer config of the pretraining (default: the model's configs/<model>/pretrain_mvimgnet.txt)")
    add("--finetune_config", default=None,
        help="trainer config of the finetuning (default: ibrnet finetune_ibrnet_data.txt, jdacs finetune_dtu.txt)")
    add("--pretrain_overrides", nargs="*", default=[], help="key=value trainer options for every pretraining")
    add("--finetune_overrides", nargs="*", default=[],
        help="key=value trainer options for every finetuning (e.g. dtu_fraction=5 for JDACS)")
    add("--mvimgnet_dataset", default="mvimgnet",
        help="the MVImgNet entry (NAME[@FOLDER] under the pretraining config's data_root) that subsets are drawn from")
    add("--co3d_dataset", default="co3d", help="the CO3D entry (NAME[@FOLDER] under data_root) of the co3d source")
    add("--sources", nargs="+", default=list(WHERE_SOURCES), choices=list(WHERE_SOURCES),
        help="study=where: pretraining sources, in table order")
    add("--mvimgnet_small_size", type=int, default=0,
        help="instances in MVImgNet-small (0 = as many as the CO3D set has sequences)")
    add("--subset_percents", type=float, nargs="+", default=[25.0, 50.0, 100.0],
        help="study=data_size: nested subset sizes in %% of MVImgNet's training instances")
    add("--subset_seed", type=int, default=0, help="seed of the instance order the subsets are drawn from")
    add("--include_scratch", action=argparse.BooleanOptionalAction, default=True,
        help="add a finetuning from random weights (a table row / the plot's point at 0 videos)")
    add("--seeds", type=int, nargs="+", default=[0], help="training seeds (pretraining and finetuning); each a cell")
    add("--split", default="test", help="jdacs: evaluation split (--split of jdacs.evaluate)")
    add("--evaluator_overrides", nargs="*", default=[],
        help="key=value evaluator options (--key value; true/false: --key / --no-key), e.g. for ibrnet "
             "'datasets=deepvoxels nerf_synthetic co3d llff_test'")
    add("--plot_metric", default=None,
        help="data_size plot metric (default: psnr for ibrnet, one line per dataset; accuracy @2/4/8 mm for jdacs)")
    add("--launcher", default="", help="command that runs the trainer instead of python, e.g. "
                                       "'torchrun --nproc_per_node 8'")
    add("--trainer_command", default=None, help="trainer script (default: the model's train_<model>.py)")
    add("--evaluator_command", default=None,
        help="evaluator script or '-m module' (default: eval/eval_ibrnet.py or -m jdacs.evaluate)")
    add_synthetic_data_options(add, default_views=8, scans_help="jdacs: the scans of synthetic_dtu_fraction's "
                                                                "list + synthetic_test_scans official test scans")
    add("--synthetic_dtu_fraction", type=int, default=25, help="DTU fraction whose scans synthetic_dtu holds")
    add("--child_output", action=argparse.BooleanOptionalAction, default=True,
        help="show the trainers' and evaluators' output (always copied to <study>/logs/)")
    add("--dry_run", action=argparse.BooleanOptionalAction, default=False,
        help="print the plan and the tables of what exists, run nothing")
    return parser


def parse_study_options(argv: list[str] | None = None) -> argparse.Namespace:
    args = parse_options(build_study_parser(), argv)
    args.argv = ["eval/run_pretrain_study.py", *(sys.argv[1:] if argv is None else argv)]
    defaults = MODELS[args.model]
    args.pretrain_config = args.pretrain_config or defaults["pretrain"]
    args.finetune_config = args.finetune_config or defaults["finetune"]
    args.trainer_command = args.trainer_command or defaults["trainer"]
    args.evaluator_command = args.evaluator_command or defaults["evaluator"]
    args.plot_metric = args.plot_metric or defaults["metric"]
    return args


def study_dir(args: argparse.Namespace) -> Path:
    return Path(args.studies_dir) / args.study_name


def _merged_items(config: str | Path, overrides: OrderedDict) -> OrderedDict:
    items = read_config_items(config)
    items.update(overrides)
    return items


class SourcePreparation:
    """Builds a source's training data just before its pretraining (the data may only exist by then)."""

    def __init__(self, args: argparse.Namespace, source: str, percent: float | None = None):
        self.args, self.source, self.percent = args, source, percent
        self.folder = study_dir(args)
        items = _merged_items(args.pretrain_config, parse_overrides(args.pretrain_overrides))
        self.data_root = config_value(items, "data_root", "data")

    @property
    def subset_folder(self) -> Path:
        return (self.folder / "data" / self.source).absolute()

    @property
    def info_file(self) -> Path:
        return self.folder / "subsets" / f"{self.source}.json"

    def mvimgnet_root(self) -> Path:
        return parse_dataset_entry(self.args.mvimgnet_dataset, self.data_root)[1]

    def train_datasets(self) -> str:
        """The train_datasets override of this source's pretraining."""
        if self.source == "co3d":
            return self.args.co3d_dataset
        if self.source == "mvimgnet":
            return self.args.mvimgnet_dataset
        return f"mvimgnet@{self.subset_folder}"

    def __call__(self) -> None:
        info = {"source": self.source}
        if self.source == "co3d":
            info["num_videos"] = count_co3d_sequences(parse_dataset_entry(self.args.co3d_dataset, self.data_root)[1])
        else:
            instances = training_instances(self.mvimgnet_root())
            if self.source == "mvimgnet":
                info["num_videos"] = len(instances)
            else:
                if self.percent is not None:
                    size = subset_size(len(instances), self.percent)
                else:
                    size = self.args.mvimgnet_small_size or count_co3d_sequences(
                        parse_dataset_entry(self.args.co3d_dataset, self.data_root)[1])
                    if size > len(instances):
                        raise ValueError(f"MVImgNet-small needs {size} instances (the CO3D set's size) but "
                                         f"{self.mvimgnet_root()} has only {len(instances)} training instances")
                (names,) = nested_subsets(list(instances), [size], self.args.subset_seed)
                split_file = write_split_file(self.folder / "subsets" / f"{self.source}.split.json", names)
                write_symlink_subset(self.subset_folder, instances, names, self.mvimgnet_root())
                info.update(num_videos=len(names), percent=self.percent, subset_seed=self.args.subset_seed,
                            split_file=str(split_file), folder=str(self.subset_folder),
                            of_instances=len(instances))
        info["root"] = str(self.mvimgnet_root()) if self.source != "co3d" else self.args.co3d_dataset
        self.info_file.parent.mkdir(parents=True, exist_ok=True)
        self.info_file.write_text(json.dumps(info, indent=2) + "\n")


def source_list(args: argparse.Namespace) -> list[tuple[str, str, float | None]]:
    """(source name, table label, subset percent or None) in table order."""
    sources = [("scratch", SOURCE_LABELS["scratch"], None)] if args.include_scratch else []
    if args.study == "where":
        return sources + [(s, SOURCE_LABELS[s], None) for s in args.sources]
    for percent in sorted(args.subset_percents):
        subset_size(1000, percent)  # validates the range
        sources.append((f"mvimgnet_{percent:g}pct", f"MVImgNet {percent:g} %", percent))
    return sources


def evaluation_target(args: argparse.Namespace, run_dir: Path) -> tuple[list[str], Path]:
    """(evaluator arguments, the file that says it finished)."""
    extra = cli_arguments(parse_overrides(args.evaluator_overrides))
    if args.model == "jdacs":
        return ["--split", args.split, *extra], run_dir / "eval" / args.split / "summary.json"
    return extra, run_dir / "eval" / "summary.json"


def plan_study(args: argparse.Namespace) -> list[Cell]:
    """The cells of the study (module docstring); writes the derived configs, checks nothing has changed."""
    folder = study_dir(args)
    runs_dir = folder / "runs"
    prefix: list[Step] = synthetic_data_steps(args.synthetic_data, args.synthetic_views, args.synthetic_size,
                                              args.synthetic_seed, folder / "logs")
    if args.synthetic_dtu:
        scans = synthetic_scans([args.synthetic_dtu_fraction], args.synthetic_test_scans)
        prefix.append(synthetic_data_step("dtu_train", args.synthetic_dtu, 0, args.synthetic_views,
                                          args.synthetic_size, args.synthetic_seed, scans, folder / "logs"))
    finetune_overrides = parse_overrides(args.finetune_overrides, RESERVED_TRAINER_KEYS)
    cells = []
    for source, label, percent in source_list(args):
        preparation = SourcePreparation(args, source, percent) if source != "scratch" else None
        for seed in args.seeds:
            steps = list(prefix)
            init_from = None
            pretrain_run = None
            if preparation is not None:
                overrides = parse_overrides(args.pretrain_overrides, RESERVED_TRAINER_KEYS)
                overrides["train_datasets"] = [preparation.train_datasets()]
                expname = f"{args.study_name}_pretrain_{source}_seed{seed}"
                pretrain = train_step(f"pretrain on {label}", folder, args.trainer_command, args.launcher,
                                      folder / f"pretrain_{source}_config.txt", args.pretrain_config, overrides,
                                      runs_dir, expname, seed,
                                      header=[f"written by the study {args.study_name!r}: pretraining on {label}"])
                pretrain.prepare = preparation
                steps.append(pretrain)
                pretrain_run = runs_dir / expname
                init_from = pretrain_run / "ckpt" / "latest.pt"
            expname = f"{args.study_name}_finetune_{source}_seed{seed}"
            run_dir = runs_dir / expname
            steps.append(train_step("finetune", folder, args.trainer_command, args.launcher,
                                    folder / "finetune_config.txt", args.finetune_config, finetune_overrides,
                                    runs_dir, expname, seed, init_from=init_from,
                                    header=[f"written by the study {args.study_name!r}: every finetuning"]))
            arguments, done = evaluation_target(args, run_dir)
            steps.append(evaluate_step(run_dir, args.evaluator_command, arguments, done,
                                       folder / "logs" / f"{expname}.eval.log"))
            cells.append(Cell(f"{source}_seed{seed}", steps, {
                "source": source, "label": label, "percent": percent, "seed": seed,
                "pretrain_run": str(pretrain_run.relative_to(folder)) if pretrain_run else None,
                "finetune_run": str(run_dir.relative_to(folder)),
                "eval_dir": str(done.parent.relative_to(folder))}))
    return cells


def write_manifest(args: argparse.Namespace, cells: list[Cell]) -> Path:
    path = study_dir(args) / "study.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    options = {k: v for k, v in vars(args).items() if k not in ("config", "value_sources", "argv")}
    launch = {**provenance(args.argv, with_device=False), "config": args.config}
    manifest = {"kind": "pretrain_study", "name": args.study_name, "study": args.study, "model": args.model,
                "plot_metric": args.plot_metric, "seeds": args.seeds, "options": options,
                "launches": previous.get("launches", []) + [launch],
                "cells": [{"name": c.name, **c.info} for c in cells]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def _num_videos(folder: Path, source: str) -> int | None:
    if source == "scratch":
        return 0
    path = folder / "subsets" / f"{source}.json"
    return json.loads(path.read_text()).get("num_videos") if path.is_file() else None


def tabulate_study(folder: Path, made_by: dict | None = None, out_dir: Path | None = None,
                   stem: str = "results") -> str:
    """<out_dir>/<stem>.md/.csv/.json (+ <stem>_fig5_data_size.png/.svg for data_size; default: the study
    folder's results.*) of a study folder; returns the markdown."""
    out_dir = Path(out_dir or folder)
    manifest = json.loads((folder / "study.json").read_text())
    rows: OrderedDict = OrderedDict()  # source -> (label, [results of its seeds])
    for cell in manifest["cells"]:
        eval_dir = folder / cell["eval_dir"]
        result = load_eval_result(eval_dir) if (eval_dir / "per_image.json").is_file() else None
        rows.setdefault(cell["source"], (cell["label"], []))[1].append(result)
    model, study = manifest["model"], manifest["study"]
    what = "where to pretrain (Tables 4/6 layout)" if study == "where" else "more data, more power (Fig. 5 data)"
    title = f"Pretraining study `{manifest['name']}`: {model}, {what}; rows: pretraining data, finetuned alike"
    videos = {source: _num_videos(folder, source) for source in rows}
    labels = {s: f"{label} ({videos[s] if videos[s] is not None else '?'} videos)" for s, (label, _) in rows.items()}
    records = []
    if model == "jdacs":
        # one row per source: the first seed's result when several seeds (every seed is in the CSV/JSON)
        groups = [(labels[s], next((r for r in results if r is not None), None)) for s, (_, results) in rows.items()]
        table = depth_table(groups, title, "pretrained on", made_by)
        for source, (_, results) in rows.items():
            for seed, result in zip(manifest["seeds"], results):
                means = result.depth_means() if result is not None else {}
                records.append({"source": source, "num_videos": videos[source], "seed": seed,
                                **{k: means.get(k) for k in DEPTH_KEYS}})
    else:
        groups = [(labels[s], [r for r in results if r is not None]) for s, (_, results) in rows.items()]
        table = render_table(groups, title, "pretrained on", made_by=made_by)
        for source, (_, results) in rows.items():
            for seed, result in zip(manifest["seeds"], results):
                for dataset in result.datasets() if result is not None else []:
                    records.append({"source": source, "num_videos": videos[source], "seed": seed,
                                    "dataset": dataset, **result.render_means(dataset)})
    if len(manifest["seeds"]) > 1:
        table.notes.append(f"Seeds {manifest['seeds']}: " + ("the table shows the first seed's run; every seed is "
                                                            "in results.csv" if model == "jdacs" else
                                                            "each cell is the mean over the images of every seed"))
    markdown = table.markdown()
    if study == "data_size":
        plot = plot_study(out_dir / f"{stem}_fig5_data_size", manifest, records, made_by)
        markdown += f"\n![{manifest['name']}]({plot[0].name})\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(markdown)
    write_records(records, out_dir / f"{stem}.csv", out_dir / f"{stem}.json",
                  {"study": manifest["name"], "kind": study, "model": model, "made_by": made_by})
    return markdown


def plot_study(out_stem: Path, manifest: dict, records: list[dict], made_by: dict | None = None) -> list[Path]:
    """Fig. 5: the plot metric (mean over seeds) against the number of pretraining videos."""
    metric, model = manifest["plot_metric"], manifest["model"]
    if model == "jdacs":
        keys = [k for k in DEPTH_KEYS if k.startswith("accuracy_")] if metric == "accuracy_2mm" else [metric]
        series_keys = [(key.replace("accuracy_", "acc. @").replace("mm", " mm"), key, None) for key in keys]
        y_label = "depth accuracy (%)" if metric == "accuracy_2mm" else metric
    else:
        datasets = list(dict.fromkeys(r["dataset"] for r in records))
        series_keys = [(dataset_title(d), metric, d) for d in datasets]
        y_label = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS"}.get(metric, metric)
    series = []
    for label, key, dataset in series_keys:
        points: dict[int, list[float]] = {}
        for r in records:
            if (dataset is None or r.get("dataset") == dataset) and r["num_videos"] is not None:
                value = r.get(key)
                if value is not None and not math.isnan(value):
                    points.setdefault(r["num_videos"], []).append(value)
        xs = sorted(points)
        series.append(Series(label, xs, [sum(points[x]) / len(points[x]) for x in xs]))
    subtitle = f"commit {made_by.get('commit') or 'unknown'}" if made_by else None
    title = f"{manifest['name']}: {model} finetuned after pretraining on MVImgNet subsets"
    return plot_data_size(series, out_stem, y_label, title, subtitle=subtitle)


def run_study(args: argparse.Namespace) -> RunReport:
    """Plan, run what is missing, tabulate (and plot); prints the table."""
    cells = plan_study(args)
    write_manifest(args, cells)
    report = run_cells(cells, dry_run=args.dry_run, child_output=args.child_output)
    print(tabulate_study(study_dir(args), provenance(args.argv, with_device=False)))
    print(f"tables: {study_dir(args) / 'results.md'} (.csv, .json)")
    return report
