"""Train IBRNet: `python train_ibrnet.py --config configs/ibrnet/demo.txt` (torchrun for several GPUs)."""

from ibrnet.options import build_ibrnet_parser
from ibrnet.train import run
from multiview.engine.options import parse_options


def main(argv=None) -> dict:
    parser = build_ibrnet_parser()
    return run(parse_options(parser, argv), parser)


if __name__ == "__main__":
    main()
