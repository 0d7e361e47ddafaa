"""Nested, seeded scan-level subsets of DTU's 79 official training scans for `--dtu_fraction`.

Rule (our choice; the MVImgNet paper does not say which scans its 5/15/25 % used): the 79 scans of
`read_dtu_scan_list("train")` are put in one seeded order — ascending sha256 of "dtu_fraction/<seed>/<scan>",
which no library version can change — and a fraction p % takes the first round(79·p/100) scans of that
order: 5 % -> 4 scans (3.95), 15 % -> 12 (11.85), 25 % -> 20 (19.75), 100 % -> all 79. Subsets are nested
by construction (prefixes of one order). The lists shipped in `configs/jdacs/lists/` are seed 0
(`python -m jdacs.fractions` rewrites them; a test checks they match).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from multiview.data.errors import DataFormatError
from multiview.data.readers.dtu import read_dtu_scan_list

FRACTIONS = (5, 15, 25, 100)
LISTS_DIR = Path(__file__).resolve().parents[1] / "configs" / "jdacs" / "lists"


def _order_key(seed: int, scan: int) -> bytes:
    return hashlib.sha256(f"dtu_fraction/{seed}/{scan}".encode()).digest()


def dtu_fraction_scans(fraction_percent: int, seed: int = 0) -> list[int]:
    """The scans (sorted) of a `fraction_percent` % subset of the 79 DTU training scans (module docstring)."""
    if not 1 <= fraction_percent <= 100:
        raise ValueError(f"fraction_percent must be in [1, 100], got {fraction_percent}")
    scans = read_dtu_scan_list("train")
    count = round(len(scans) * fraction_percent / 100)
    if count == 0:
        raise ValueError(f"{fraction_percent} % of {len(scans)} scans rounds to 0 scans")
    return sorted(sorted(scans, key=lambda scan: _order_key(seed, scan))[:count])


def fraction_list_name(fraction_percent: int) -> str:
    """File name of a fraction's list, e.g. 5 -> "dtu_train_5pct.txt"."""
    return f"dtu_train_{fraction_percent}pct.txt"


def fraction_list_path(fraction_percent: int) -> Path:
    """The shipped list file of one of FRACTIONS under configs/jdacs/lists/ (seed 0)."""
    if fraction_percent not in FRACTIONS:
        raise ValueError(f"--dtu_fraction must be one of {FRACTIONS}, got {fraction_percent}")
    return LISTS_DIR / fraction_list_name(fraction_percent)


def write_fraction_lists(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Write `dtu_train_{5,15,25,100}pct.txt` (sorted scan numbers, one per line, `#` header) to out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fraction in FRACTIONS:
        scans = dtu_fraction_scans(fraction, seed)
        header = [
            f"# DTU training scans for --dtu_fraction {fraction}: {len(scans)} of the 79 official training scans.",
            f"# Written by jdacs.fractions.write_fraction_lists(seed={seed}): the scans ordered by sha256 of",
            f'# "dtu_fraction/{seed}/<scan>", the first round(79*{fraction}/100) taken (lists are nested).',
        ]
        paths.append(out_dir / fraction_list_name(fraction))
        paths[-1].write_text("\n".join(header + [str(scan) for scan in scans]) + "\n")
    return paths


def read_scan_list_file(path: str | Path) -> list[int]:
    """Scan numbers of a list file (one or more per line); `#` starts a comment, blank lines are ignored."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "scan list file is missing")
    scans = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        for token in line.split("#", 1)[0].split():
            if not token.isdigit():
                raise DataFormatError(path, f"line {number}: expected a scan number, got {token!r}")
            scans.append(int(token))
    if not scans:
        raise DataFormatError(path, "scan list file lists no scans")
    return scans


def main(argv: list[str] | None = None) -> None:
    """`python -m jdacs.fractions [--out DIR] [--seed N]`: (re)write the fraction lists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=LISTS_DIR, help="folder of the list files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scan order")
    args = parser.parse_args(argv)
    for path in write_fraction_lists(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
