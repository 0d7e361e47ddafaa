"""Shared fixtures: a seeded numpy generator and random rigid transforms (float64).

Each pytest process uses one torch thread: `make test` runs two xdist workers on two cores, and
oversubscribed threads make small ops up to 100x slower here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) uniformly random proper rotations (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def random_rigid(rng):
    """Factory: random_rigid(n, scale=2.0) -> (n, 4, 4) float64 rigid transforms."""

    def make(n: int, scale: float = 2.0) -> np.ndarray:
        T = np.zeros((n, 4, 4))
        T[:, :3, :3] = _random_rotations(rng, n)
        T[:, :3, 3] = rng.normal(scale=scale, size=(n, 3))
        T[:, 3, 3] = 1.0
        return T

    return make
