"""A tiny regression task on the shared engine: batches depend only on the StepSampler seed."""

from __future__ import annotations

import torch


class ToyDataset(torch.utils.data.Dataset):
    def __getitem__(self, item):
        step, seed = item
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(32, 4, generator=generator)
        return {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1}

    def __len__(self):
        return 1


class ToyTask:
    def __init__(self):
        self.losses: list[float] = []

    def build_model(self):
        with torch.random.fork_rng():  # same initial weights everywhere, global stream untouched
            torch.manual_seed(123)
            return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1))

    def parameter_groups(self, model):
        return [{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[2].parameters(), "lr": 5e-3}]

    def training_dataset(self):
        return ToyDataset()

    def training_stages(self, model, batch, step):
        loss = ((model(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        self.losses.append(loss.item())
        yield loss, {"loss": loss.item()}

    def validate(self, model, step, run_dir):
        return {"weight_norm": float(sum(p.norm() for p in model.parameters()))}, {}
