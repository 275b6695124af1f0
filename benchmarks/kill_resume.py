"""SIGKILL training at random moments, resume it, and count the runs that end bit-identical.

The procedure of tests/test_kill_resume.py, over more trials. One uninterrupted reference run
of the tutorials' network on mnist-sample (CPU, fp32) is timed first. Each trial then starts the
same run with ``netfit train``, SIGKILLs it at a random moment of the training left, resumes it
with ``netfit train --resume`` and kills that again, ``--kills`` times in all, and lets a last
resume finish; its ``model.safetensors`` must equal the reference's bit for bit and its
``metrics.csv`` must have one row per epoch. A kill before the first checkpoint leaves nothing
to resume: ``--resume`` must say so (exit 2), and the trial starts a fresh run.

Kills are not held back once the last epoch's checkpoint is on disk: a kill while the final
files are written counts too, and the next resume must finish the run from that checkpoint.

    .venv/bin/python benchmarks/kill_resume.py [--trials 20] [--kills 3] [--epochs 6] [--seed 0] \\
        [--json benchmarks/results/kill-resume.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from netfit.checkpoint import list_checkpoints

TRAIN = [sys.executable, "-m", "netfit.cli", "train"]
TIMEOUT = 600  # seconds for any one process
SPEC = """\
[model]
hidden = [512, 256]
dropout = 0.1
[data]
dataset = "mnist-sample"
[train]
epochs = {epochs}
device = "cpu"
"""


def start(args: list, logs: Path) -> tuple[subprocess.Popen, Path, Path]:
    """Run ``netfit train *args`` with its output going to two new files under ``logs``."""
    n = len(list(logs.glob("*.out")))
    stdout, stderr = logs / f"{n}.out", logs / f"{n}.err"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen([*TRAIN, *map(str, args)], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    return proc, stdout, stderr


def wait_for(predicate, proc: subprocess.Popen):
    """Poll ``predicate`` until it is true (returned) or the process exits (None)."""
    deadline = time.monotonic() + TIMEOUT
    while not (found := predicate()):
        if proc.poll() is not None:
            return None
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{proc.args} showed no progress in {TIMEOUT} s")
        time.sleep(0.005)
    return found


def run_folder(out: Path) -> Path | None:
    runs = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")] if out.is_dir() else []
    return runs[0] if runs else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def epochs_done(checkpoint: Path) -> float:
    state = json.loads((checkpoint / "state.json").read_text())
    return state["global_step"] / state["steps_per_epoch"]


def last_line(path: Path) -> str:
    lines = path.read_text().strip().splitlines()
    return lines[-1] if lines else ""


def reference_run(spec: Path, out: Path) -> tuple[dict[str, torch.Tensor], float]:
    """The uninterrupted run's weights and its fastest epoch's seconds (what kills are aimed with)."""
    proc = subprocess.run([*TRAIN, spec, "--out", out, "--quiet"], capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        sys.exit(f"the reference run failed: {proc.stderr.strip()}")
    run_dir = run_folder(out)
    with open(run_dir / "metrics.csv", newline="") as f:
        # Other work on the machine can slow an epoch many times over; none can make one faster.
        epoch_s = min(float(row["epoch_time_s"]) for row in csv.DictReader(f))
    return load_file(run_dir / "model.safetensors"), epoch_s


def same_as_reference(run_dir: Path, reference: dict[str, torch.Tensor], epochs: int) -> bool:
    weights = load_file(run_dir / "model.safetensors")
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [int(row["epoch"]) for row in csv.DictReader(f)]
    return (weights.keys() == reference.keys() and all(torch.equal(weights[k], v) for k, v in reference.items())
            and rows == list(range(1, epochs + 1)))


def trial(spec: Path, folder: Path, kills_wanted: int, epochs: int, epoch_s: float, rng: random.Random,
          reference: dict[str, torch.Tensor]) -> dict:
    """One run killed ``kills_wanted`` times and resumed to the end; what happened, attempt by attempt."""
    out, logs = folder / "out", folder / "logs"
    logs.mkdir(parents=True)
    aim = 0.8  # kills land within this fraction of the training left; halved whenever training outruns them
    attempts: list[dict] = []
    kills = early_kills = restarts = 0
    run_dir = None
    while True:
        if run_dir is None:
            proc, stdout, stderr = start([spec, "--out", out, "--quiet"], logs)
            run_dir = wait_for(lambda: run_folder(out), proc)  # training starts now
            attempt = {"command": "train", "resumed_from": None}
            left = epochs
        else:
            checkpoint = latest_checkpoint(run_dir)
            if checkpoint is None:
                early = subprocess.run([*TRAIN, "--resume", run_dir, "--quiet"], capture_output=True, text=True,
                                       timeout=TIMEOUT)
                attempts.append({"command": "resume", "resumed_from": None, "exit_code": early.returncode,
                                 "message": early.stderr.strip()})
                if early.returncode != 2 or "no checkpoint" not in early.stderr:
                    result = {"outcome": "error", "message": early.stderr.strip()}
                    break
                shutil.rmtree(run_dir)  # nothing to resume: train it again
                run_dir, early_kills = None, early_kills + 1
                continue
            proc, stdout, stderr = start(["--resume", run_dir], logs)
            attempt = {"command": "resume", "resumed_from": checkpoint.name}
            left = epochs - epochs_done(checkpoint)
        attempts.append(attempt)
        final = attempt["command"] == "resume" and kills >= kills_wanted  # this one may finish
        killed_after = None
        if not final and (attempt["command"] == "train"
                          or wait_for(lambda: "resuming from" in stdout.read_text(), proc)):
            began = time.monotonic()
            time.sleep(rng.uniform(0, aim * left * epoch_s))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed_after = time.monotonic() - began
        attempt["exit_code"] = code = proc.wait(TIMEOUT)
        if code == -signal.SIGKILL and killed_after is not None:  # our kill, not the OOM killer's
            kills += 1
            attempt["kill_after_s"] = round(killed_after, 4)
            latest = latest_checkpoint(run_dir)
            attempt["latest_after_kill"] = latest.name if latest else None
            continue
        if code != 0:
            attempt["message"] = last_line(stderr)
            result = {"outcome": "unresumable" if attempt["command"] == "resume" else "error",
                      "message": attempt["message"]}
            break
        if final:
            result = {"outcome": "identical" if same_as_reference(run_dir, reference, epochs) else "different"}
            break
        # Training finished before the kills were done (the machine got faster): aim earlier, start over.
        restarts += 1
        aim /= 2
        shutil.rmtree(run_dir)
        run_dir, kills = None, 0
    return {**result, "identical": result["outcome"] == "identical", "kills": kills, "early_kills": early_kills,
            "restarts": restarts, "attempts": attempts}


def describe(n: int, t: dict) -> str:
    times = ", ".join(f"{a['kill_after_s']:.2f} s" for a in t["attempts"] if "kill_after_s" in a)
    starts = ", ".join(a["resumed_from"] for a in t["attempts"] if a["resumed_from"])
    line = f"trial {n:3d}: {t['outcome']:<11} {t['kills']} kills at {times or '-'}; resumed from {starts or '-'}"
    if t["early_kills"] or t["restarts"]:
        line += f" ({t['early_kills']} of the kills before any checkpoint; {t['restarts']} restarts)"
    return line + (f"; {t['message']}" if "message" in t else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial before the last resume")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times (training's own seed is fixed)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every trial's details here")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    trials = []
    with tempfile.TemporaryDirectory(prefix="netfit-kill-resume-") as tmp:
        spec = Path(tmp) / "spec.toml"
        spec.write_text(SPEC.format(epochs=args.epochs))
        reference, epoch_s = reference_run(spec, Path(tmp) / "reference")
        print(f"reference run: {args.epochs} epochs, fastest {epoch_s:.3f} s")
        for n in range(args.trials):
            trials.append(trial(spec, Path(tmp) / f"trial-{n}", args.kills, args.epochs, epoch_s, rng, reference))
            print(describe(n, trials[-1]), flush=True)

    identical = sum(t["identical"] for t in trials)
    print(f"{len(trials)} trials, {identical} bit-identical")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                       f"torch {torch.__version__}",
            "settings": {"trials": args.trials, "kills": args.kills, "epochs": args.epochs, "seed": args.seed,
                         "fastest_epoch_s": epoch_s},
            "summary": {"trials": len(trials), "bit_identical": identical},
            "trials": trials,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
