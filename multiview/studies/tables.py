"""Markdown tables in the MVImgNet paper's layouts, with a provenance header, plus CSV/JSON twins.

* Table 3 (`render_table`): rows = runs (or pretraining sources: Table 4), column groups = datasets,
  PSNR↑ SSIM↑ LPIPS↓ each the mean of the per-image values of that dataset.
* Table 5 (`fraction_table`): rows = DTU fraction; columns = accuracy @2/4/8 mm (%) and abs error (mm);
  each cell "scratch / pretrained" (one value per initialisation, in the order the header names), the
  mean over the seeds run (the seeds are listed under the table).
* Tables 4/6 for MVSNet (`depth_table`): rows = pretraining source, the depth columns of Table 5.

Every table starts with where it came from: the command, commit, device and data of the evaluations
(from their summary.json files; distinct values listed) and the command and commit that made the table.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from multiview.studies.results import DEPTH_KEYS, RENDER_KEYS, EvalResult

DEPTH_COLUMNS = {"accuracy_2mm": "acc. @2 mm (%) ↑", "accuracy_4mm": "acc. @4 mm (%) ↑",
                 "accuracy_8mm": "acc. @8 mm (%) ↑", "abs_error_mm": "abs. error (mm) ↓"}
RENDER_COLUMNS = {"psnr": "PSNR↑", "ssim": "SSIM↑", "lpips": "LPIPS↓"}
DIGITS = {"psnr": 2, "ssim": 3, "lpips": 3, "accuracy_2mm": 2, "accuracy_4mm": 2, "accuracy_8mm": 2,
          "abs_error_mm": 2}
DATASET_NAMES = {"deepvoxels": "DeepVoxels", "nerf_synthetic": "NeRF-synthetic", "blender": "NeRF-synthetic",
                 "co3d": "CO3D", "llff": "LLFF", "llff_test": "LLFF", "dtu": "DTU"}

# The MVImgNet paper's Table 5 (JDACS on DTU, accuracy @2/4/8 mm in %); only the 5 % row is reproduced here.
PAPER_TABLE5 = {5: {"scratch": {"accuracy_2mm": 48.61, "accuracy_4mm": 65.18, "accuracy_8mm": 75.69},
                    "pretrained": {"accuracy_2mm": 50.10, "accuracy_4mm": 67.97, "accuracy_8mm": 78.58}}}


def format_value(value, digits: int = 2) -> str:
    """A number with fixed decimals; '–' for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


@dataclass
class Table:
    """A titled markdown table with provenance lines above and notes below."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    provenance: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines += [f"- {line}" for line in self.provenance]
        if self.provenance:
            lines.append("")
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(self.columns) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += self.notes
        return "\n".join(lines) + "\n"

    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(self.columns)
            writer.writerows(self.rows)
        return path


def _distinct(values: Sequence[str]) -> str:
    values = list(dict.fromkeys(values))
    return "; ".join(f"`{v}`" if i < 3 else "…" for i, v in enumerate(values[:4])) if values else "unknown"


def provenance_lines(results: Sequence[EvalResult], made_by: dict | None = None) -> list[str]:
    """Header lines: evaluation command(s), commit(s), device(s) and data, then what made the table."""
    records = [r.provenance() for r in results]
    lines = [f"evaluated by: {_distinct([p['command'] for p in records])}",
             f"commit: {_distinct([p['commit'] for p in records])}",
             f"device: {_distinct([p['device'] for p in records])}",
             f"data: {_distinct([p['data'] for p in records])}"]
    if made_by:
        lines.append(f"table made by: `{made_by.get('command', 'unknown')}` at commit "
                     f"`{made_by.get('commit') or 'unknown'}`")
    return lines


def dataset_title(name: str) -> str:
    return DATASET_NAMES.get(name, name)


def render_table(groups: Sequence[tuple[str, Sequence[EvalResult]]], title: str, row_header: str = "run",
                 datasets: Sequence[str] | None = None, made_by: dict | None = None) -> Table:
    """Table 3 layout. `groups`: (row label, the render results of that row — any number of eval folders)."""
    if datasets is None:
        datasets = list(dict.fromkeys(d for _, results in groups for r in results for d in r.datasets()))
    columns = [row_header] + [f"{dataset_title(d)} {RENDER_COLUMNS[k]}" for d in datasets for k in RENDER_KEYS]
    rows = []
    for label, results in groups:
        row = [label]
        for dataset in datasets:
            owners = [r for r in results if dataset in r.datasets()]
            if not owners:
                row += ["–"] * len(RENDER_KEYS)
                continue
            records = [rec for r in owners for rec in r.records if r.dataset_of(rec) == dataset]
            merged = EvalResult(owners[0].eval_dir, owners[0].run_dir, records)
            means = merged.render_means(dataset)
            row += [format_value(means[k], DIGITS[k]) for k in RENDER_KEYS]
        rows.append(row)
    notes = ["Each cell is the mean of the per-image values of that dataset; '–' = not evaluated / not computed."]
    return Table(title, columns, rows, provenance_lines([r for _, rs in groups for r in rs], made_by), notes)


def depth_table(groups: Sequence[tuple[str, EvalResult | None]], title: str, row_header: str = "pretrained on",
                made_by: dict | None = None, extra_columns: dict[str, list[str]] | None = None) -> Table:
    """Rows of depth metrics (Tables 4/6 layout for MVSNet): (label, result or None = not yet evaluated)."""
    extra_columns = extra_columns or {}
    columns = [row_header, *extra_columns, *DEPTH_COLUMNS.values()]
    rows = []
    for index, (label, result) in enumerate(groups):
        means = result.depth_means() if result is not None else {}
        rows.append([label, *(values[index] for values in extra_columns.values()),
                     *(format_value(means.get(k), DIGITS[k]) for k in DEPTH_KEYS)])
    notes = ["Depth accuracy = % of ground-truth-valid pixels with |error| <= X mm at the network's output "
             "resolution, mean over test images (abs. error likewise)."]
    return Table(title, columns, rows, provenance_lines([r for _, r in groups if r is not None], made_by), notes)


@dataclass
class FractionEntry:
    """One finetuned run of a fraction sweep: DTU fraction label, initialisation name, seed, its result."""

    fraction: str
    init: str
    seed: int | None
    result: EvalResult | None

    def means(self) -> dict[str, float]:
        return self.result.depth_means() if self.result is not None else {}


def _fraction_sort_key(label: str):
    return (0, float(label)) if label.replace(".", "", 1).isdigit() else (1, label)


def mean_over_seeds(entries: Sequence[FractionEntry], key: str) -> float:
    values = [e.means().get(key, math.nan) for e in entries]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def fraction_table(entries: Sequence[FractionEntry], title: str, init_order: Sequence[str] | None = None,
                   made_by: dict | None = None, paper_rows: bool = True) -> Table:
    """Table 5 layout (module docstring); `paper_rows` adds the paper's 5 % row (labelled as the paper's)
    when a 5 % row and exactly two initialisations (scratch first) are shown."""
    inits = list(init_order or dict.fromkeys(e.init for e in entries))
    fractions = sorted(dict.fromkeys(e.fraction for e in entries), key=_fraction_sort_key)
    rows = []
    for fraction in fractions:
        row = [f"{fraction} %" if fraction.replace(".", "", 1).isdigit() else fraction]
        for key in DEPTH_KEYS:
            cells = [mean_over_seeds([e for e in entries if e.fraction == fraction and e.init == init], key)
                     for init in inits]
            row.append(" / ".join(format_value(v, DIGITS[key]) for v in cells))
        rows.append(row)
        if paper_rows and fraction == "5" and len(inits) == 2 and inits[0] == "scratch":
            paper = PAPER_TABLE5[5]
            rows.append(["5 % (MVImgNet paper, Table 5)"] + [
                " / ".join(format_value(paper[name].get(key), DIGITS[key]) for name in ("scratch", "pretrained"))
                for key in DEPTH_KEYS])
    seeds = sorted({e.seed for e in entries if e.seed is not None})
    notes = [f"Cells: {' / '.join(inits)}; each value is the mean over seeds {seeds or ['?']} of the mean over "
             "test images. Depth accuracy = % of ground-truth-valid pixels with |error| <= X mm at the "
             "network's output resolution; '–' = not run yet."]
    provenance = provenance_lines([e.result for e in entries if e.result is not None], made_by)
    columns = ["DTU training data", *DEPTH_COLUMNS.values()]
    return Table(title, columns, rows, provenance, notes)


def fraction_records(entries: Sequence[FractionEntry]) -> list[dict]:
    """One flat record per run (fraction, init, seed, run, metrics) for CSV/JSON."""
    records = []
    for e in entries:
        means = e.means()
        records.append({"fraction": e.fraction, "init": e.init, "seed": e.seed,
                        "run": str(e.result.run_dir) if e.result is not None else None,
                        **{k: means.get(k) for k in DEPTH_KEYS}, "num_images": means.get("num_images")})
    return records


def write_records(records: Sequence[dict], csv_path: str | Path | None = None,
                  json_path: str | Path | None = None, extra_json: dict | None = None) -> None:
    """Write flat records as CSV (columns = union of keys, in first-seen order) and/or JSON."""
    if csv_path is not None:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        columns = list(dict.fromkeys(k for r in records for k in r))
        with open(csv_path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, columns)
            writer.writeheader()
            writer.writerows(records)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        payload = {**(extra_json or {}), "records": list(records)}
        Path(json_path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


def fraction_label(result: EvalResult) -> str:
    """The DTU-fraction row label of a run from its config: dtu_fraction, or 'N scans' for explicit --dtu_scans."""
    scans = result.config_value("dtu_scans")
    if isinstance(scans, list) and scans:
        return f"{len(scans)} scans"
    return str(result.config_value("dtu_fraction", "100"))


def init_label(result: EvalResult) -> str:
    """'scratch' without --init_from, else 'pretrained'."""
    return "pretrained" if result.config_value("init_from") else "scratch"
