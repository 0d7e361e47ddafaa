"""Resumable study runner: cells of steps, each step one child command with a file that says it is done.

A `Step` is finished when its `done_file` exists. Evaluation steps name the file their evaluator writes
last (`<run>/eval/<split>/summary.json`); training steps let the runner write a small JSON record
(`write_done`) after the child exits with status 0. A `Cell` (one row entry of a table: e.g. fraction ×
initialisation × seed) is finished when its last step is; the runner skips finished cells and finished
steps, so re-running a study after a kill continues where it stopped. A training step that was killed
half-way is simply run again: the trainers resume from `<run>/ckpt/latest.pt` (the engine's `--resume`,
on by default), which `Step.partial_file` names so the log says so.

Children run with `subprocess` (their output is shown and copied to `Step.log_file`), with the
repository root prepended to PYTHONPATH so `python -m jdacs.evaluate` and the root scripts import this
checkout's packages. A non-zero exit stops the study with `StepFailed` naming the step and its log.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from multiview.studies.provenance import REPO_ROOT


class StepFailed(RuntimeError):
    """A child command exited with a non-zero status (or did not write its done file)."""


@dataclass
class Step:
    """One child command of a cell.

    Attributes:
        name: short label ("pretrain", "train", "evaluate").
        command: the argv of the child.
        done_file: exists <=> the step is finished.
        write_done: the runner writes `done_file` (a JSON record of the command) after a zero exit;
            otherwise the command must write it itself (checked).
        requires: files that must exist before the command runs (e.g. an init checkpoint).
        partial_file: a file whose presence means an earlier attempt got part-way (a checkpoint).
        log_file: where the child's output is copied (None: not copied).
        prepare: called just before the command runs (e.g. writes a subset folder or a derived config).
    """

    name: str
    command: list[str]
    done_file: Path
    write_done: bool = False
    requires: list[Path] = field(default_factory=list)
    partial_file: Path | None = None
    log_file: Path | None = None
    prepare: Callable[[], None] | None = None

    def is_done(self) -> bool:
        return Path(self.done_file).is_file()


@dataclass
class Cell:
    """A group of steps whose last step's done file holds (or leads to) one result; `info` describes it."""

    name: str
    steps: list[Step]
    info: dict = field(default_factory=dict)

    def is_done(self) -> bool:
        return bool(self.steps) and self.steps[-1].is_done()


@dataclass
class RunReport:
    """What the runner did: per cell "done before" (skipped), "ran" or "planned" (dry run)."""

    status: dict[str, str] = field(default_factory=dict)
    steps_run: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for value in self.status.values() if value == status)


def child_environment(extra: dict | None = None) -> dict:
    """os.environ with the repository root first on PYTHONPATH (plus `extra`)."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra or {})
    return env


def run_command(command: list[str], log_file: Path | None = None, echo: bool = True) -> int:
    """Run a child, copying its combined stdout/stderr to our stdout (if `echo`) and to `log_file`.

    Returns the exit status. On KeyboardInterrupt the child is terminated before the interrupt propagates.
    """
    log = None
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_file, "ab")
        log.write(f"\n$ {shlex.join(command)}\n".encode())
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_environment())
    try:
        assert process.stdout is not None
        while True:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            if echo:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            if log is not None:
                log.write(chunk)
                log.flush()
        return process.wait()
    except BaseException:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()
        if log is not None:
            log.close()


def _write_done_record(step: Step, started: float, seconds: float) -> None:
    record = {"step": step.name, "command": shlex.join(step.command), "returncode": 0,
              "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
              "seconds": round(seconds, 3)}
    path = Path(step.done_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    temporary.replace(path)


def run_step(step: Step, label: str, echo: Callable[[str], None] = print, child_output: bool = True) -> None:
    """Run one unfinished step (see the module docstring); raises StepFailed on failure."""
    missing = [str(p) for p in step.requires if not Path(p).exists()]
    if missing:
        raise StepFailed(f"{label}: cannot run {step.name}: missing {', '.join(missing)}")
    if step.prepare is not None:
        step.prepare()
    again = " (continuing from its checkpoint)" if step.partial_file and Path(step.partial_file).is_file() else ""
    echo(f"{label}: {step.name}{again}: {shlex.join(step.command)}")
    started = time.time()
    status = run_command(step.command, step.log_file, echo=child_output)
    seconds = time.time() - started
    where = f" (output in {step.log_file})" if step.log_file else ""
    if status != 0:
        raise StepFailed(f"{label}: {step.name} exited with status {status}{where}: {shlex.join(step.command)}")
    if step.write_done:
        _write_done_record(step, started, seconds)
    elif not step.is_done():
        raise StepFailed(f"{label}: {step.name} finished but did not write {step.done_file}{where}")
    echo(f"{label}: {step.name} done in {seconds:.1f} s")


def run_cells(cells: list[Cell], dry_run: bool = False, echo: Callable[[str], None] = print,
              child_output: bool = True) -> RunReport:
    """Run every unfinished step of every unfinished cell, in order (see the module docstring)."""
    report = RunReport()
    planned: set[Path] = set()  # dry run: steps shared by several cells are listed once
    for number, cell in enumerate(cells, start=1):
        label = f"[{number}/{len(cells)}] {cell.name}"
        if cell.is_done():
            report.status[cell.name] = "done before"
            echo(f"{label}: finished before ({cell.steps[-1].done_file}), skipped")
            continue
        for step in cell.steps:
            if step.is_done():
                continue
            if dry_run:
                if Path(step.done_file) not in planned:
                    echo(f"{label}: would run {step.name}: {shlex.join(step.command)}")
                planned.add(Path(step.done_file))
                continue
            run_step(step, label, echo, child_output)
            report.steps_run.append(f"{cell.name}/{step.name}")
        report.status[cell.name] = "planned" if dry_run else "ran"
    return report


def python_command(target: str, launcher: str = "") -> list[str]:
    """argv prefix for a python script or `-m module` target, optionally behind a launcher.

    `target` is a script path (a relative one is looked up in the working directory, then in the
    repository root) or `-m package.module`, followed by fixed arguments if any. `launcher` (e.g.
    "torchrun --nproc_per_node 8") replaces `sys.executable`.
    """
    parts = shlex.split(target)
    if not parts:
        raise ValueError("empty command")
    if parts[0] != "-m" and parts[0].endswith(".py"):
        script = Path(parts[0])
        if not script.is_absolute() and not script.is_file() and (REPO_ROOT / script).is_file():
            parts[0] = str(REPO_ROOT / script)
        elif not script.is_file() and not (REPO_ROOT / script).is_file():
            raise FileNotFoundError(f"{script}: script not found (relative paths are looked up in the working "
                                    f"directory, then in {REPO_ROOT})")
    prefix = shlex.split(launcher) if launcher else [sys.executable]
    return prefix + parts


def resumable_main(parse, run, argv: list[str] | None = None) -> int:
    """The body of the sweep / study scripts: `run(parse(argv))`; a failed step prints how to continue and
    returns exit status 1 (finished cells are kept, so the same command resumes)."""
    args = parse(argv)
    try:
        run(args)
    except StepFailed as error:
        print(f"error: {error}\nFix the cause and run the same command again: finished cells are kept.")
        return 1
    return 0
