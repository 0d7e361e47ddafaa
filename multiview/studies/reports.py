"""`eval/make_tables.py`: every paper-layout table and plot from the result files found under some folders.

What is found where:
* a sweep folder (`sweep.json`, `multiview.studies.dtu_sweep`) -> its Table 5 (fraction x initialisation);
* a study folder (`study.json`, `multiview.studies.pretrain_study`) -> its Tables 4/6 (rows: pretraining
  source) and, for a data_size study, the Fig. 5 plot;
* any other evaluation folder (`per_image.json`, `multiview.studies.results`) of a run not claimed by a
  sweep or study: IBRNet runs -> Table 3 (rows: runs), MVS runs -> Table 5 (rows: the run's dtu_fraction,
  cells: scratch / pretrained from its init_from, the mean over its seeds).

Writes into `out_dir`: one `<name>.md` (+ .csv/.json, plots as .png and .svg) per table and `tables.md`
with all of them; every table is headed by the evaluations' command, commit, device and data and by the
command and commit that made the table.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path

from multiview.studies.dtu_sweep import tabulate_sweep
from multiview.studies.pretrain_study import tabulate_study
from multiview.studies.results import EvalResult, find_eval_results
from multiview.studies.tables import (
    FractionEntry,
    fraction_label,
    fraction_records,
    fraction_table,
    init_label,
    render_table,
    write_records,
)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def find_manifests(paths: list[str | Path], name: str) -> list[Path]:
    """Folders holding `name` (sweep.json / study.json) at or below the given paths."""
    found = set()
    for path in map(Path, paths):
        if (path / name).is_file():
            found.add(path.resolve())
        if path.is_dir():
            found.update(p.parent.resolve() for p in path.rglob(name))
    return sorted(found)


def _claimed_runs(folder: Path, manifest: dict) -> set[Path]:
    runs = set()
    for cell in manifest.get("cells", []):
        for key in ("run", "finetune_run"):
            if cell.get(key):
                runs.add((folder / cell[key]).resolve())
    return runs


def loose_render_table(results: list[EvalResult], made_by: dict | None) -> str:
    groups: OrderedDict = OrderedDict()
    for result in results:
        groups.setdefault(result.run_dir.name, []).append(result)
    title = "IBRNet evaluation (Table 3 layout): rows = runs, PSNR↑ SSIM↑ LPIPS↓ per dataset"
    return render_table(list(groups.items()), title, "run", made_by=made_by)


def loose_fraction_entries(results: list[EvalResult]) -> list[FractionEntry]:
    entries = []
    for result in results:
        seed = result.config_value("seed")
        entries.append(FractionEntry(fraction_label(result), init_label(result),
                                     int(seed) if seed is not None and str(seed).lstrip("-").isdigit() else None,
                                     result))
    return entries


def make_reports(paths: list[str | Path], out_dir: str | Path, made_by: dict | None = None,
                 paper_rows: bool = True) -> list[Path]:
    """Write every table (module docstring) into out_dir; returns the files written (tables.md first)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, claimed = [], set()
    for folder in find_manifests(paths, "sweep.json"):
        manifest = json.loads((folder / "sweep.json").read_text())
        claimed |= _claimed_runs(folder, manifest)
        sections.append(tabulate_sweep(folder, made_by, paper_rows, out_dir, f"table5_{_safe(manifest['name'])}"))
    for folder in find_manifests(paths, "study.json"):
        manifest = json.loads((folder / "study.json").read_text())
        claimed |= _claimed_runs(folder, manifest)
        kind = "tables4_6" if manifest["study"] == "where" else "fig5"
        sections.append(tabulate_study(folder, made_by, out_dir, f"{kind}_{_safe(manifest['name'])}"))
    loose = [r for r in find_eval_results(paths) if r.run_dir.resolve() not in claimed]
    render = [r for r in loose if r.kind == "render"]
    depth = [r for r in loose if r.kind == "depth"]
    if render:
        table = loose_render_table(render, made_by)
        (out_dir / "table3.md").write_text(table.markdown())
        table.write_csv(out_dir / "table3.csv")
        sections.append(table.markdown())
    if depth:
        entries = loose_fraction_entries(depth)
        title = "MVS depth accuracy (Table 5 layout): rows = DTU fraction of each run's config"
        table = fraction_table(entries, title, sorted({e.init for e in entries}, key=lambda i: i != "scratch"),
                               made_by, paper_rows)
        (out_dir / "table5.md").write_text(table.markdown())
        write_records(fraction_records(entries), out_dir / "table5.csv", out_dir / "table5.json")
        sections.append(table.markdown())
    if not sections:
        raise FileNotFoundError(f"no results found under {', '.join(map(str, paths))} (no per_image.json, "
                                "sweep.json or study.json)")
    index = out_dir / "tables.md"
    index.write_text("\n".join(sections))
    return [index, *sorted(p for p in out_dir.iterdir() if p != index)]
