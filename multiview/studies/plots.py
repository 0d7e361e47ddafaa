"""The "more data, more power" plot (paper Fig. 5): a metric after finetuning against the number of
pretraining videos, one line per series (e.g. per evaluation dataset), written as PNG and SVG with
matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Series:
    """One line: label, x = number of pretraining videos, y = metric values (NaN points are left out)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]


def plot_data_size(series: Sequence[Series], out_stem: str | Path, y_label: str, title: str,
                   x_label: str = "number of pretraining videos (MVImgNet instances)",
                   subtitle: str | None = None) -> list[Path]:
    """Write `<out_stem>.png` and `<out_stem>.svg`; returns both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 3.8), dpi=150)
    try:
        for line in series:
            points = sorted((x, y) for x, y in zip(line.x, line.y) if y is not None and not math.isnan(y))
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=line.label)
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        title = textwrap.fill(title, 64)  # long study names would run off the figure
        axes.set_title(title if subtitle is None else f"{title}\n{subtitle}", fontsize=9)
        axes.grid(True, alpha=0.3)
        if any(line.label for line in series):
            axes.legend(fontsize=8)
        figure.tight_layout()
        out_stem = Path(out_stem)
        out_stem.parent.mkdir(parents=True, exist_ok=True)
        paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
        for path in paths:
            figure.savefig(path)
    finally:
        plt.close(figure)
    return paths
