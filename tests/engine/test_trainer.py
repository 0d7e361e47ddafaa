import os

import pytest
import torch
import torch.multiprocessing as mp

from multiview.engine.checkpoint import atomic_save, load_checkpoint
from multiview.engine.options import build_parser, parse_options
from multiview.engine.trainer import Trainer
from tests.engine.toy_task import ToyTask


def _args(tmp_path, *extra):
    argv = ["--runs_dir", str(tmp_path), "--expname", "toy", "--device", "cpu", "--num_iterations", "6",
            "--log_every", "1", "--validate_every", "3", "--checkpoint_every", "3", "--no-progress",
            "--lr_decay_steps", "4", *extra]
    return parse_options(build_parser("toy"), argv)


def test_training_reduces_the_loss_and_writes_run_outputs(tmp_path):
    task = ToyTask()
    validation = Trainer(task, _args(tmp_path, "--num_iterations", "40", "--lr_decay_steps", "1000"),
                         build_parser("toy")).run()
    assert sum(task.losses[-5:]) < 0.5 * sum(task.losses[:5])
    run = tmp_path / "toy"
    assert (run / "ckpt" / "latest.pt").is_file() and (run / "train.log").is_file()
    assert (run / "config.txt").is_file() and list((run / "tb").glob("events.*"))
    assert "weight_norm" in validation
    assert len(list((run / "ckpt").glob("step_*.pt"))) <= 3  # keep_checkpoints


def test_resume_gives_the_identical_next_losses(tmp_path):
    uninterrupted = ToyTask()
    Trainer(uninterrupted, _args(tmp_path / "a")).run()
    first = ToyTask()
    Trainer(first, _args(tmp_path / "b", "--num_iterations", "3")).run()  # checkpoint at step 3
    resumed = ToyTask()
    trainer = Trainer(resumed, _args(tmp_path / "b"))
    assert trainer.step == 3
    trainer.run()
    assert first.losses + resumed.losses == uninterrupted.losses  # bit-identical, dropout included
    state = load_checkpoint(tmp_path / "b" / "toy" / "ckpt" / "latest.pt")
    assert state["step"] == 6 and state["scheduler"]["last_epoch"] == 6


def test_init_from_loads_weights_only(tmp_path):
    Trainer(ToyTask(), _args(tmp_path / "pre", "--num_iterations", "3")).run()
    source = tmp_path / "pre" / "toy" / "ckpt" / "latest.pt"
    trainer = Trainer(ToyTask(), _args(tmp_path / "ft", "--init_from", str(source)))
    assert trainer.step == 0
    reference = load_checkpoint(source)["model"]
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, reference[key])


def test_a_step_frees_the_gradients_it_applied(tmp_path):
    """Gradients are released right after the optimizer step (not kept through the next forward pass), so
    nothing accumulates into the next step and no gradient memory is held while activations are allocated."""
    trainer = Trainer(ToyTask(), _args(tmp_path, "--grad_clip", "1.0"))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step(trainer.task.training_dataset()[(0, 1000)])
    assert all(p.grad is None for p in trainer.model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.model.parameters()))  # the step was applied


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Unpicklable()}, path)
    assert load_checkpoint(path) == {"a": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_missing_checkpoint_error_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def _ddp_worker(rank, world_size, port, tmp_path, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    trainer = Trainer(ToyTask(), _args(tmp_path, "--num_iterations", "1", "--validate_every", "0"))
    batch = trainer.task.training_dataset()[(0, 1000 + rank)]
    loss, _ = next(trainer.task.training_stages(trainer.ddp_model, batch, 0))
    loss.backward()
    queue.put((rank, [p.grad.numpy().copy() for p in trainer.model.parameters()]))  # by value, not shared memory
    torch.distributed.destroy_process_group()


def test_two_process_gloo_gradients_equal_single_process_mean(tmp_path):
    """DDP averages gradients: each rank's gradient equals the single-process gradient of both batches."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = 29500 + os.getpid() % 1000
    processes = [context.Process(target=_ddp_worker, args=(r, 2, port, tmp_path, queue)) for r in range(2)]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    task = ToyTask()
    model = task.build_model()
    grads = None
    for rank in range(2):
        model.zero_grad()
        batch = task.training_dataset()[(0, 1000 + rank)]
        torch.manual_seed(0 + rank)  # the trainer seeds rank r with seed + r: same dropout masks
        loss, _ = next(task.training_stages(model, batch, 0))
        loss.backward()
        grads = [p.grad.clone() / 2 for p in model.parameters()] if grads is None else [
            g + p.grad / 2 for g, p in zip(grads, model.parameters())]
    for rank in range(2):
        for expected, got in zip(grads, results[rank]):
            torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-6, rtol=1e-5)
