"""Evaluation results of runs, read back from the evaluators' files for tables and plots.

An evaluation folder is any folder holding `per_image.json` (the evaluators write it with a CSV twin and a
`summary.json`): `jdacs.evaluate` writes `<run>/eval/<split>/`, `eval/eval_ibrnet.py` writes under
`<run>/eval/`. Records of `per_image.json` (a JSON list, or a dict holding the list under "per_image",
"images" or "records") are one image each:

* depth records (MVS) hold "abs_error_mm" and "accuracy_<X>mm" (plus "num_valid_pixels"; records without a
  valid pixel are left out of the means, as `multiview.metrics.depth.aggregate_depth_metrics` does);
* render records (IBRNet) hold "psnr", "ssim" and "lpips" (null when LPIPS was not computed) and
  "dataset" (else the dataset is the name of the folder holding per_image.json).

Table cells are always recomputed here as the mean of the per-image values (never copied from a
summary), so a table is exactly what its per-image files say. The summary is read for provenance:
"command", "commit", "device" and the data ("data", "data_root", "datasets", "dataset"), where present.
A run's settings come from its resolved `config.txt` (written by the engine into the run folder).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from multiview.studies.config_files import config_value, read_config_items

DEPTH_KEYS = ("accuracy_2mm", "accuracy_4mm", "accuracy_8mm", "abs_error_mm")
RENDER_KEYS = ("psnr", "ssim", "lpips")
PROVENANCE_KEYS = ("command", "commit", "device", "data")
_DATA_KEYS = ("data", "data_root", "datasets", "dataset")


def as_number(value) -> float | None:
    """A metric value as float: numbers as they are, the strings "inf"/"-inf" (non-finite floats written by
    the evaluators as text) as infinities; None for missing, null, NaN or anything else."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "-inf", "infinity", "-infinity"):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def mean_of(records: list[dict], key: str) -> float:
    """Mean of the values of `key` over the records that have one (NaN when none does)."""
    values = [v for v in (as_number(r.get(key)) for r in records) if v is not None]
    return sum(values) / len(values) if values else math.nan


def read_per_image(path: str | Path) -> list[dict]:
    """The list of per-image records of a per_image.json (see the module docstring)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read per-image results ({error})") from error
    if isinstance(data, dict):
        for key in ("per_image", "images", "records"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a JSON list of per-image records")
    return data


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    return data if isinstance(data, dict) else {}


def find_run_dir(eval_dir: Path) -> Path:
    """The run folder of an evaluation folder: the nearest ancestor holding config.txt, else the folder
    holding the nearest `eval/` ancestor, else the parent."""
    for folder in [eval_dir, *eval_dir.parents]:
        if (folder / "config.txt").is_file():
            return folder
    for folder in [eval_dir, *eval_dir.parents]:
        if folder.name == "eval":
            return folder.parent
    return eval_dir.parent


@dataclass
class EvalResult:
    """One evaluation folder: its per-image records, summary and the run's config items."""

    eval_dir: Path
    run_dir: Path
    records: list[dict]
    summary: dict = field(default_factory=dict)
    config: OrderedDict = field(default_factory=OrderedDict)

    @property
    def kind(self) -> str:
        """"depth" (MVS), "render" (IBRNet) or "unknown", from the records' keys."""
        keys = set().union(*(r.keys() for r in self.records)) if self.records else set()
        if "abs_error_mm" in keys or any(k.startswith("accuracy_") for k in keys):
            return "depth"
        if "psnr" in keys:
            return "render"
        return "unknown"

    @property
    def name(self) -> str:
        return self.run_dir.name

    def depth_means(self) -> dict[str, float]:
        """Mean of each depth metric over the images with ground truth."""
        scored = [r for r in self.records if r.get("num_valid_pixels", 1) != 0]
        keys = [k for k in DEPTH_KEYS if any(k in r for r in scored)]
        keys += sorted({k for r in scored for k in r if k.startswith("accuracy_") and k not in keys})
        return {key: mean_of(scored, key) for key in keys} | {"num_images": len(scored)}

    def datasets(self) -> list[str]:
        """Datasets of the render records, in first-seen order."""
        return list(dict.fromkeys(self.dataset_of(r) for r in self.records))

    def dataset_of(self, record: dict) -> str:
        return str(record.get("dataset") or self.eval_dir.name)

    def render_means(self, dataset: str) -> dict[str, float]:
        """Mean PSNR/SSIM/LPIPS over the images of one dataset (NaN for a metric not computed)."""
        records = [r for r in self.records if self.dataset_of(r) == dataset]
        return {key: mean_of(records, key) for key in RENDER_KEYS} | {"num_images": len(records)}

    def config_value(self, key: str, default=None):
        return config_value(self.config, key, default)

    def provenance(self) -> dict[str, str]:
        """command/commit/device/data of the evaluation from summary.json — top level, else its "provenance" or
        "protocol" section — with the run's config as the fallback for device and data."""
        sections = [self.summary] + [self.summary[k] for k in ("provenance", "protocol")
                                     if isinstance(self.summary.get(k), dict)]

        def find(*keys):
            for section in sections:
                for key in keys:
                    if section.get(key) not in (None, "", [], {}):
                        return section[key]
            return None

        device = find("device") or self.config_value("device")
        data = find(*_DATA_KEYS)
        if data is None and self.config_value("data_root"):
            data = f"{self.config_value('data_root')}: {self.config_value('val_datasets')}"
        values = {"command": find("command"), "commit": find("commit"), "device": device, "data": data}
        return {key: "not recorded" if value is None else
                (json.dumps(value) if isinstance(value, (dict, list)) else str(value)) for key, value in values.items()}


def load_eval_result(eval_dir: str | Path) -> EvalResult:
    """Read one evaluation folder (per_image.json, summary.json) and its run's config.txt."""
    eval_dir = Path(eval_dir)
    per_image = eval_dir / "per_image.json"
    if not per_image.is_file():
        raise FileNotFoundError(f"{per_image}: per-image results not found")
    run_dir = find_run_dir(eval_dir)
    config = read_config_items(run_dir / "config.txt") if (run_dir / "config.txt").is_file() else OrderedDict()
    return EvalResult(eval_dir, run_dir, read_per_image(per_image), _read_json(eval_dir / "summary.json"), config)


def find_eval_results(paths: list[str | Path]) -> list[EvalResult]:
    """Every evaluation folder (holding per_image.json) under the given folders, sorted by path."""
    found = set()
    for path in paths:
        path = Path(path)
        if path.is_file() and path.name == "per_image.json":
            found.add(path.parent.resolve())
        elif path.is_dir():
            found.update(p.parent.resolve() for p in path.rglob("per_image.json"))
        else:
            raise FileNotFoundError(f"{path}: no such folder")
    return [load_eval_result(folder) for folder in sorted(found)]
