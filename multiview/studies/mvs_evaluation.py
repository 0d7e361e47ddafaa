"""`eval/eval_mvs.py`: evaluate MVS runs on DTU (or reuse their results) and tabulate them in Table 5 layout.

Each run is evaluated with `python -m jdacs.evaluate --run RUN --split SPLIT` unless its
`RUN/eval/SPLIT/summary.json` exists (`recompute` evaluates again). Rows are the DTU fraction of each run
(its config's `dtu_fraction`, or "N scans" for explicit `dtu_scans`), cells the initialisations
("scratch" without `init_from`, else "pretrained", or the `labels` given per run) — several runs with the
same fraction and label (seeds) are averaged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from multiview.studies.cells import Cell, run_cells
from multiview.studies.config_files import parse_overrides
from multiview.studies.results import load_eval_result
from multiview.studies.steps import cli_arguments, evaluate_step
from multiview.studies.tables import FractionEntry, Table, fraction_label, fraction_records, fraction_table, init_label
from multiview.studies.tables import write_records as write_table_records


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eval/eval_mvs.py", allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="run folders (holding config.txt, ckpt/)")
    parser.add_argument("--split", default="test", help="DTU split to evaluate (jdacs.evaluate --split)")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="initialisation label per run (default: scratch / pretrained from the run's init_from)")
    parser.add_argument("--recompute", action=argparse.BooleanOptionalAction, default=False,
                        help="evaluate again even where RUN/eval/SPLIT/summary.json exists")
    parser.add_argument("--evaluator_command", default="-m jdacs.evaluate", help="evaluator script or '-m module'")
    parser.add_argument("--evaluator_overrides", nargs="*", default=[],
                        help="key=value evaluator options (--key value), e.g. lights=all")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for table5.md/.csv/.json (default: print the table only)")
    parser.add_argument("--paper_rows", action=argparse.BooleanOptionalAction, default=True,
                        help="add the paper's 5 %% row (labelled as the paper's)")
    parser.add_argument("--child_output", action=argparse.BooleanOptionalAction, default=True,
                        help="show the evaluator's output")
    return parser


def evaluate_runs(runs: list[Path], split: str, recompute: bool, evaluator_command: str,
                  evaluator_overrides: list[str], child_output: bool = True) -> None:
    """Run the evaluator for each run lacking results (every run with `recompute`)."""
    arguments = ["--split", split, *cli_arguments(parse_overrides(evaluator_overrides))]
    cells = []
    for run in runs:
        if not (run / "config.txt").is_file():
            raise FileNotFoundError(f"{run}: not a run folder (no config.txt)")
        summary = run / "eval" / split / "summary.json"
        if recompute and summary.is_file():
            summary.unlink()
        cells.append(Cell(run.name, [evaluate_step(run, evaluator_command, arguments, summary)]))
    run_cells(cells, child_output=child_output)


def mvs_table(runs: list[Path], split: str, labels: list[str] | None, made_by: dict | None,
              paper_rows: bool = True) -> tuple[Table, list[FractionEntry]]:
    """Table 5 of evaluated runs (module docstring)."""
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"--labels needs one label per run ({len(runs)}), got {len(labels)}")
    entries = []
    for index, run in enumerate(runs):
        result = load_eval_result(run / "eval" / split)
        seed = result.config_value("seed")
        entries.append(FractionEntry(fraction_label(result), labels[index] if labels else init_label(result),
                                     int(seed) if seed is not None and str(seed).lstrip("-").isdigit() else None,
                                     result))
    inits = sorted(dict.fromkeys(e.init for e in entries), key=lambda name: name != "scratch")
    title = f"DTU depth accuracy on the {split} scans (Table 5 layout)"
    return fraction_table(entries, title, inits, made_by, paper_rows), entries


def write_mvs_table(table: Table, entries: list[FractionEntry], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table5.md").write_text(table.markdown())
    write_table_records(fraction_records(entries), out / "table5.csv", out / "table5.json")
    return [out / "table5.md", out / "table5.csv", out / "table5.json"]
