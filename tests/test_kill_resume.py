"""Stop training at random moments, resume it, and get the very same network.

Real processes and real signals. SIGKILL gives the process no chance to clean up, so whatever
is on disk at that instant must be enough to resume from; SIGTERM and SIGINT must finish the
step, write a checkpoint and say how to resume. Either way, on the CPU in fp32, the resumed run
must end with weights equal bit for bit to those of a run that was never interrupted.

Kill times are drawn over the training window, timed on the reference run, so the test adapts
to the machine's speed; every subprocess has a timeout.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from netfit.checkpoint import list_checkpoints
from netfit.rundir import is_finished

pytestmark = pytest.mark.slow

EPOCHS = 6
SPEC = f"""\
[model]
hidden = [512, 256]
dropout = 0.1
[data]
dataset = "mnist-sample"
[train]
epochs = {EPOCHS}
device = "cpu"
"""
TRAIN = [sys.executable, "-m", "netfit.cli", "train"]
TIMEOUT = 300  # seconds for any one process: generous, a loaded machine can be many times slower
KILLS_PER_TRIAL = 2


@dataclass
class Reference:
    spec: Path
    weights: dict[str, torch.Tensor]
    epoch_s: float  # the fastest epoch's time: kills aimed with it land early rather than too late


@dataclass
class Job:
    """A ``netfit train`` process and the files that receive its output."""

    proc: subprocess.Popen
    stdout: Path
    stderr: Path

    def finish(self) -> int:
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {TIMEOUT} s: {self.proc.args}")

    def wait_for(self, predicate, what: str):
        """Poll ``predicate`` until it returns something true; fail if the process exits first."""
        deadline = time.monotonic() + TIMEOUT
        while not (found := predicate()):
            if self.proc.poll() is not None:
                pytest.fail(f"exited with {self.proc.returncode} before {what}: {self.stderr.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {TIMEOUT} s")
            time.sleep(0.005)
        return found


@pytest.fixture
def start(tmp_path):
    """``start(*args) -> Job``: run ``netfit train *args``; whatever still runs at the end is killed."""
    jobs: list[Job] = []

    def run(*args) -> Job:
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        stdout, stderr = logs / f"{len(jobs)}.out", logs / f"{len(jobs)}.err"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            proc = subprocess.Popen([*TRAIN, *map(str, args)], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        jobs.append(Job(proc, stdout, stderr))
        return jobs[-1]

    yield run
    for job in jobs:
        if job.proc.poll() is None:  # the test failed half-way
            job.proc.kill()
            job.proc.wait(TIMEOUT)


def run_folder(out: Path) -> Path | None:
    runs = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")] if out.is_dir() else []
    return runs[0] if runs else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def epochs_done(checkpoint: Path) -> float:
    state = json.loads((checkpoint / "state.json").read_text())
    return state["global_step"] / state["steps_per_epoch"]


def assert_same_weights(run_dir: Path, reference: Reference) -> None:
    weights = load_file(run_dir / "model.safetensors")
    assert weights.keys() == reference.weights.keys()
    for name, tensor in reference.weights.items():
        assert torch.equal(weights[name], tensor), f"{name} differs from the uninterrupted run"
    with open(run_dir / "metrics.csv", newline="") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(1, EPOCHS + 1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """One uninterrupted run of the spec, shared by every test here."""
    folder = tmp_path_factory.mktemp("reference")
    spec = folder / "spec.toml"
    spec.write_text(SPEC)
    proc = subprocess.run([*TRAIN, spec, "--out", folder / "out", "--quiet"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    run_dir = run_folder(folder / "out")
    with open(run_dir / "metrics.csv", newline="") as f:
        # Other work on the machine can slow any epoch many times over; none can make one faster.
        epoch_s = min(float(row["epoch_time_s"]) for row in csv.DictReader(f))
    return Reference(spec, load_file(run_dir / "model.safetensors"), epoch_s)


def test_sigkill_at_random_moments_then_resume_is_bit_identical(reference, tmp_path, start):
    rng = random.Random(2024)
    aim = 0.8  # kills land within this fraction of the training left; halved whenever training outruns them
    for trial in range(2):
        out = tmp_path / f"trial-{trial}"
        kills = early_kills = resumes = restarts = 0
        run_dir = None
        while True:
            if run_dir is None:
                job = start(reference.spec, "--out", out)
                run_dir = job.wait_for(lambda: run_folder(out), "a run folder")  # training starts now
                left = EPOCHS
            else:
                checkpoint = latest_checkpoint(run_dir)
                if checkpoint is None:
                    # Killed before the first checkpoint: nothing to resume, and the CLI must say so.
                    early = subprocess.run([*TRAIN, "--resume", run_dir, "--quiet"], capture_output=True,
                                           text=True, timeout=TIMEOUT)
                    assert early.returncode == 2 and "no checkpoint" in early.stderr, early.stderr
                    shutil.rmtree(run_dir)
                    run_dir, early_kills = None, early_kills + 1
                    continue
                resumes += 1
                job = start("--resume", run_dir)
                if kills >= KILLS_PER_TRIAL:
                    assert job.finish() == 0, job.stderr.read_text()
                    break
                job.wait_for(lambda: "resuming from" in job.stdout.read_text(), "the resume note")
                left = EPOCHS - epochs_done(checkpoint)
            time.sleep(rng.uniform(0, aim * left * reference.epoch_s))
            if job.proc.poll() is None:
                os.kill(job.proc.pid, signal.SIGKILL)
            code = job.finish()
            # A kill that lands after run.json is written (while the process exits) finds a finished
            # run, which a resume rightly refuses: that is training outrunning the kill, as below.
            if code == -signal.SIGKILL and not is_finished(run_dir):
                kills += 1
                continue
            assert code in (0, -signal.SIGKILL), job.stderr.read_text()
            # Training finished before the kills were done (the machine got faster): aim earlier, start over.
            restarts += 1
            assert restarts <= 3, f"trial {trial}: training kept finishing before {KILLS_PER_TRIAL} kills"
            aim /= 2
            shutil.rmtree(run_dir)
            run_dir, kills, resumes = None, 0, 0

        assert kills >= KILLS_PER_TRIAL and resumes >= 1
        assert_same_weights(run_dir, reference)
        print(f"trial {trial}: {kills} kills ({early_kills} before any checkpoint), {resumes} resumes, "
              f"{restarts} restarts")


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_with_a_checkpoint_and_resume_exactly(reference, tmp_path, start, signum,
                                                                       exit_code):
    out = tmp_path / "out"
    job = start(reference.spec, "--out", out, "--quiet")
    run_dir = job.wait_for(lambda: run_folder(out), "a run folder")
    job.wait_for(lambda: (run_dir / "checkpoints" / "epoch-0001").is_dir(), "the first checkpoint")
    time.sleep(random.Random(int(signum)).uniform(0, reference.epoch_s))
    os.kill(job.proc.pid, signum)

    assert job.finish() == exit_code
    stderr = job.stderr.read_text()
    assert f"resume with: netfit train --resume {run_dir}" in stderr
    named = re.search(r"checkpoint written to (\S+?);", stderr)
    assert named, stderr
    checkpoint = Path(named[1])
    assert checkpoint.is_dir() and checkpoint == latest_checkpoint(run_dir)
    assert re.fullmatch(r"epoch-\d{4}(\+\d{7})?", checkpoint.name)
    assert not (run_dir / "run.json").exists()

    resumed = start("--resume", run_dir, "--quiet")
    assert resumed.finish() == 0, resumed.stderr.read_text()
    assert_same_weights(run_dir, reference)
