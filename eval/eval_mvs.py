"""Depth accuracy of MVS runs on DTU, tabulated in the MVImgNet paper's Table 5 layout.

    python eval/eval_mvs.py --runs sweeps/dtu_fraction/runs/* [--split test] [--labels ...] [--recompute]
        [--evaluator_overrides lights=all] [--out DIR]

Evaluates each run with `python -m jdacs.evaluate` unless it already has RUN/eval/SPLIT/summary.json, then
prints the table (rows: DTU fraction from each run's config; cells: scratch / pretrained from its init_from).
See `multiview/studies/mvs_evaluation.py`.
"""

from __future__ import annotations

import sys

from multiview.studies.mvs_evaluation import build_parser, evaluate_runs, mvs_table, write_mvs_table
from multiview.studies.provenance import provenance


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    evaluate_runs(args.runs, args.split, args.recompute, args.evaluator_command, args.evaluator_overrides,
                  args.child_output)
    made_by = provenance(["eval/eval_mvs.py", *(sys.argv[1:] if argv is None else argv)], with_device=False)
    table, entries = mvs_table(args.runs, args.split, args.labels, made_by, args.paper_rows)
    print(table.markdown())
    if args.out is not None:
        for path in write_mvs_table(table, entries, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
