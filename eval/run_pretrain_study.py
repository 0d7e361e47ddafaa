"""The MVImgNet paper's pretraining studies for IBRNet or JDACS: where to pretrain (Tables 4 and 6: MVImgNet,
MVImgNet-small, CO3D) and more data, more power (Fig. 5: nested MVImgNet subsets). Pretrain, finetune,
evaluate, tabulate, plot. Resumable: run it again to continue.

    python eval/run_pretrain_study.py --config configs/studies/jdacs_data_size_demo.txt   # synthetic demo
    python eval/run_pretrain_study.py --config configs/studies/ibrnet_where.txt          # paper scale
    python eval/run_pretrain_study.py --help                                      # every option

See `multiview/studies/pretrain_study.py` (plan, outputs) and `multiview/studies/subsets.py` (subsets).
"""

from __future__ import annotations

from multiview.studies.cells import resumable_main
from multiview.studies.pretrain_study import parse_study_options, run_study


def main(argv: list[str] | None = None) -> int:
    return resumable_main(parse_study_options, run_study, argv)


if __name__ == "__main__":
    raise SystemExit(main())
