"""Paper-layout markdown tables and plots from the per-image result files under some folders.

    python eval/make_tables.py runs/ sweeps/ studies/ [--out tables]

Table 3 (IBRNet runs: PSNR/SSIM/LPIPS per dataset), Table 5 (DTU fraction x scratch/pretrained, from sweeps
or loose MVS runs), Tables 4/6 (pretraining source, from studies) and the Fig. 5 plot (PNG + SVG), each
headed by the command, commit, device and data it came from. See `multiview/studies/reports.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multiview.studies.provenance import provenance
from multiview.studies.reports import make_reports


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eval/make_tables.py", allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="folders searched for results (runs, sweeps, studies)")
    parser.add_argument("--out", type=Path, default=Path("tables"), help="folder the tables and plots are written to")
    parser.add_argument("--paper_rows", action=argparse.BooleanOptionalAction, default=True,
                        help="add the paper's Table 5 row (labelled as the paper's) where it applies")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    made_by = provenance(["eval/make_tables.py", *(sys.argv[1:] if argv is None else argv)], with_device=False)
    try:
        written = make_reports(args.paths, args.out, made_by, args.paper_rows)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(written[0].read_text())
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
