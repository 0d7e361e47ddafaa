"""Train MVSNet with JDACS: `python train_jdacs.py --config configs/jdacs/demo.txt` (torchrun for several GPUs)."""

from jdacs.options import build_jdacs_parser
from jdacs.train import run
from multiview.engine.options import parse_options


def main(argv=None) -> dict:
    parser = build_jdacs_parser()
    return run(parse_options(parser, argv), parser)


if __name__ == "__main__":
    main()
