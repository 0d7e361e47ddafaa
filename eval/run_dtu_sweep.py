"""The DTU 5/15/25 % sweep of the MVImgNet paper (Table 5): finetune JDACS from scratch and from pretrained
checkpoints on each fraction, evaluate on the DTU test scans, tabulate. Resumable: run it again to continue.

    python eval/run_dtu_sweep.py --config configs/sweeps/dtu_fraction.txt        # real DTU, paper settings
    python eval/run_dtu_sweep.py --config configs/sweeps/dtu_fraction_demo.txt   # embedded synthetic data
    python eval/run_dtu_sweep.py --config ... --launcher "torchrun --nproc_per_node 8"
    python eval/run_dtu_sweep.py --help                                          # every option

See `multiview/studies/dtu_sweep.py` for the plan, the run names and the outputs.
"""

from __future__ import annotations

from multiview.studies.cells import resumable_main
from multiview.studies.dtu_sweep import parse_sweep_options, run_sweep


def main(argv: list[str] | None = None) -> int:
    return resumable_main(parse_sweep_options, run_sweep, argv)


if __name__ == "__main__":
    raise SystemExit(main())
