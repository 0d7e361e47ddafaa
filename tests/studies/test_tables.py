"""Tables and plots from fixture result files: every markdown cell is the mean of the fixture per-image values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from multiview.studies.plots import Series, plot_data_size
from multiview.studies.pretrain_study import tabulate_study
from multiview.studies.reports import make_reports
from multiview.studies.results import find_eval_results, read_per_image

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "results" / "experiments"


def table_rows(markdown: str) -> dict[str, list[str]]:
    """{first cell: the other cells} of the markdown table rows (header and separator skipped)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|:"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values)


def per_image(run: str, split: str | None = None) -> list[dict]:
    folder = FIXTURES / run / "eval" / (split or "")
    return read_per_image(folder / "per_image.json")


def test_table3_cells_are_per_image_means_per_dataset(tmp_path):
    make_reports([FIXTURES / "ibrnet_ft"], tmp_path, {"command": "python eval/make_tables.py x", "commit": "abc"})
    markdown = (tmp_path / "table3.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| run"))
    assert "DeepVoxels PSNR↑" in header and "LLFF LPIPS↓" in header
    row = table_rows(markdown)["ibrnet_ft"]
    records = per_image("ibrnet_ft")
    expected = []
    for dataset in ("deepvoxels", "llff_test"):
        chosen = [r for r in records if r["dataset"] == dataset]
        lpips = [r["lpips"] for r in chosen if r["lpips"] is not None]
        expected += [f"{mean([r['psnr'] for r in chosen]):.2f}", f"{mean([r['ssim'] for r in chosen]):.3f}",
                     f"{mean(lpips):.3f}" if lpips else "–"]
    assert row == expected
    # provenance header from summary.json and from the table maker
    assert "`python eval/eval_ibrnet.py --run runs/ibrnet_ft --datasets deepvoxels llff`" in markdown.replace(
        "experiments/", "runs/")
    assert "0123456789abcdef0123456789abcdef01234567" in markdown
    assert "device: `cpu`" in markdown and "data: `demo_data`" in markdown
    assert "table made by: `python eval/make_tables.py x` at commit `abc`" in markdown
    assert (tmp_path / "table3.csv").read_text().startswith("run,DeepVoxels PSNR↑")


def test_table5_pivots_fraction_by_init_and_averages_seeds(tmp_path):
    runs = [FIXTURES / name for name in ("jdacs_5_scratch_s0", "jdacs_5_scratch_s1", "jdacs_5_pre_s0",
                                         "jdacs_15_scratch_s0")]
    make_reports(runs, tmp_path, None)
    markdown = (tmp_path / "table5.md").read_text()
    rows = table_rows(markdown)

    def run_mean(name, key):
        records = [r for r in per_image(name, "test") if r["num_valid_pixels"] > 0]
        return mean([r[key] for r in records])

    keys = ("accuracy_2mm", "accuracy_4mm", "accuracy_8mm", "abs_error_mm")
    for column, key in enumerate(keys):
        scratch = (run_mean("jdacs_5_scratch_s0", key) + run_mean("jdacs_5_scratch_s1", key)) / 2
        assert rows["5 %"][column] == f"{scratch:.2f} / {run_mean('jdacs_5_pre_s0', key):.2f}"
        assert rows["15 %"][column] == f"{run_mean('jdacs_15_scratch_s0', key):.2f} / –"
    assert rows["5 % (MVImgNet paper, Table 5)"][:3] == ["48.61 / 50.10", "65.18 / 67.97", "75.69 / 78.58"]
    assert "Cells: scratch / pretrained" in markdown
    assert "device: `cpu`" in markdown and "data: `demo_data/dtu_sweep`" in markdown
    records = json.loads((tmp_path / "table5.json").read_text())["records"]
    assert {(r["fraction"], r["init"], r["seed"]) for r in records} == {("5", "scratch", 0), ("5", "scratch", 1),
                                                                         ("5", "pretrained", 0), ("15", "scratch", 0)}


def test_eval_mvs_table_with_labels_reuses_existing_results(tmp_path):
    from multiview.studies.mvs_evaluation import evaluate_runs, mvs_table

    runs = [FIXTURES / "jdacs_5_scratch_s0", FIXTURES / "jdacs_5_pre_s0"]
    evaluate_runs(runs, "test", False, "-m definitely_not_a_module", [])  # summaries exist: nothing runs
    table, entries = mvs_table(runs, "test", ["scratch", "MVImgNet"], None, paper_rows=False)
    assert [e.init for e in entries] == ["scratch", "MVImgNet"]
    assert table_rows(table.markdown())["5 %"][0] == "45.00 / 53.00"
    with pytest.raises(ValueError, match="one label per run"):
        mvs_table(runs, "test", ["scratch"], None)


def test_plot_png_and_svg_are_written(tmp_path):
    paths = plot_data_size([Series("LLFF", [0, 2, 4], [20.0, 21.0, 22.5]),
                            Series("CO3D", [0, 2, 4], [18.0, float("nan"), 19.0])],
                           tmp_path / "fig5", "PSNR (dB)", "test plot")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _fake_study(tmp_path: Path, model_results: dict[str, str]) -> Path:
    """A data_size study folder whose cells point at copies of fixture runs."""
    folder = tmp_path / "study"
    cells = []
    for index, (source, fixture) in enumerate(model_results.items()):
        shutil.copytree(FIXTURES / fixture, folder / "runs" / f"ft_{source}")
        (folder / "subsets").mkdir(parents=True, exist_ok=True)
        (folder / "subsets" / f"{source}.json").write_text(json.dumps({"num_videos": 2 * index + 2}))
        cells.append({"name": source, "source": source, "label": source, "seed": 0,
                      "finetune_run": f"runs/ft_{source}", "eval_dir": f"runs/ft_{source}/eval/test"})
    manifest = {"kind": "pretrain_study", "name": "tiny", "study": "data_size", "model": "jdacs",
                "plot_metric": "accuracy_2mm", "seeds": [0], "cells": cells}
    (folder / "study.json").write_text(json.dumps(manifest))
    return folder


def test_study_table_and_fig5_from_fixture_runs(tmp_path):
    folder = _fake_study(tmp_path, {"mvimgnet_50pct": "jdacs_5_scratch_s1", "mvimgnet_100pct": "jdacs_5_pre_s0"})
    out = tmp_path / "tables"
    written = make_reports([folder], out, {"command": "c", "commit": None})
    names = {p.name for p in written}
    assert {"tables.md", "fig5_tiny.md", "fig5_tiny_fig5_data_size.png", "fig5_tiny_fig5_data_size.svg"} <= names
    assert all((out / n).stat().st_size > 0 for n in names)
    rows = table_rows((out / "fig5_tiny.md").read_text())
    assert rows["mvimgnet_50pct (2 videos)"][0] == "44.00"
    assert rows["mvimgnet_100pct (4 videos)"][0] == "53.00"
    # the claimed runs are not tabulated a second time as loose runs
    assert not (out / "table5.md").exists()
    markdown = tabulate_study(folder, None)
    assert (folder / "results.md").read_text() == markdown
    assert (folder / "results_fig5_data_size.png").stat().st_size > 0


def test_results_are_found_recursively_and_kinds_detected():
    results = find_eval_results([FIXTURES])
    kinds = {r.run_dir.name: r.kind for r in results}
    assert kinds["ibrnet_ft"] == "render" and kinds["jdacs_5_pre_s0"] == "depth"
    assert len(results) == 5


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results found"):
        make_reports([tmp_path], tmp_path / "out")
