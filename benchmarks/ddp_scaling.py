"""Two processes on this machine's cores: what `torchrun --nproc_per_node 2` costs and where the time goes.

Measures, each part in fresh processes:

(a) seconds per epoch of a spec (default configs/fashion-mnist.toml, 784-512-256-10) with one
    process (`netfit train`) and with `torchrun --nproc_per_node 2 -m netfit train`, at the same
    global batch (each batch size given), read from the run's metrics.csv. Runs alternate
    (1 process, 2 processes, 1, 2, ...); the last epoch of each run is the timed one (the first
    is warm-up).
(b) the parts of one 2-process step, with torch.distributed and netfit's own step directly:
    - the all-reduce of the network's gradient with gloo between 2 processes (torchrun'd worker):
      one flat tensor, and DDP's own bucket layout (read from a DDP model's comm hook), median
      of many; also a 1-float all-reduce (the round trip alone);
    - the compute of one step (gather, forward, backward, fused Adam: netfit's EagerEngine) at the
      per-rank half batch with 1 thread, in a fresh process with the other core idle; and the
      whole batch with 2 threads (the 1-process step);
    - inside the 2-process worker: the same half-batch step on both ranks at once without DDP
      (the cores shared, no communication); with netfit's DDP wrapper (Ranks.wrap); and without
      DDP but with one flat all-reduce of the gradient between backward and the optimizer step,
      timing the all-reduce call itself (what an all-reduce costs inside a training step).
(c) prints a table, the explanation check (2-process step = half-batch compute + all-reduce +
    the rest, the rest measured as the difference) and writes JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/ddp_scaling.py --json benchmarks/results/cpu-ddp-scaling.json
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()
MARK = "RESULT "


# ----------------------------------------------------------------------------- workers

def _training(spec_path: str, batch: int):
    """netfit's own pieces for the spec at ``batch``: the prepared data, network, loss and an engine factory."""
    import numpy as np
    import torch

    from netfit.engines import EagerEngine, StepPlan
    from netfit.optim import build_optimizer
    from netfit.spec import load_spec
    from netfit.start import start_training

    spec = load_spec(spec_path, [f"train.batch_size={batch}", "train.device=cpu"])
    start = start_training(spec)

    def engine(model, shares=None):
        optimizer = build_optimizer(model.parameters(), spec.train.optimizer, spec.train.lr, spec.train.weight_decay)
        plan = StepPlan(model=model, loss_fn=start.loss_fn, optimizer=optimizer, train=start.data.train,
                        batch_size=batch, full_steps=1, rest=0, rates=np.full(1, spec.train.lr),
                        clip_grad_norm=None, autocast_dtype=None, shares=shares)
        return EagerEngine(plan)

    return start, engine, torch


def _time_steps(engine, torch, rows_of, steps: int, warmup: int) -> list[float]:
    """Seconds of each of ``steps`` steps (after ``warmup`` untimed ones); ``rows_of(i)`` gives step i's rows."""
    times = []
    for i in range(warmup + steps):
        rows = rows_of(i)
        t0 = time.perf_counter()
        engine._step(rows)  # CPU: the loss comes back computed, so the step is done when this returns
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def _orders(torch, n: int, count: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(count)])


def worker_compute(args) -> None:
    """One process, ``--threads`` threads: median seconds of netfit's step at ``--batch`` rows."""
    import torch

    torch.set_num_threads(args.threads)
    start, engine_of, torch = _training(args.spec, args.batch)
    model = start.network
    engine = engine_of(model)
    n = len(start.data.train)
    need = (args.steps + args.warmup) * args.batch
    order = _orders(torch, n, need // n + 1)
    times = _time_steps(engine, torch, lambda i: order[i * args.batch:(i + 1) * args.batch], args.steps, args.warmup)
    print(MARK + json.dumps({"batch": args.batch, "threads": torch.get_num_threads(), "steps": len(times),
                             "median_s": statistics.median(times), "mean_s": statistics.fmean(times),
                             "train_rows": n}), flush=True)


def worker_comm(args) -> None:
    """Under torchrun (2 processes, 1 thread each): gloo all-reduce times and in-situ steps."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from netfit.distributed import Ranks

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    out: dict = {"world_size": size, "threads_per_process": torch.get_num_threads()}

    def timed_allreduce(sizes: list[int], iters: int, warmup: int = 10) -> list[float]:
        """Seconds of each round: every tensor of ``sizes`` all-reduced (issued async back to back, as DDP does)."""
        tensors = [torch.ones(s) for s in sizes]
        times = []
        for i in range(warmup + iters):
            dist.barrier()
            t0 = time.perf_counter()
            works = [dist.all_reduce(t, async_op=True) for t in tensors]
            for w in works:
                w.wait()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        return times

    def stats(times: list[float]) -> dict:
        return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times),
                "p10_s": sorted(times)[len(times) // 10], "p90_s": sorted(times)[9 * len(times) // 10],
                "count": len(times)}

    start, engine_of, torch = _training(args.spec, args.batches[0])
    initial = copy.deepcopy(start.network)
    params = sum(p.numel() for p in initial.parameters())
    out["parameters"] = params
    out["gradient_bytes"] = 4 * params

    # DDP's bucket layout for this network: a plain DDP (default bucket_cap_mb) with a hook that records it.
    seen: list[list[int]] = [[]]

    def recording_hook(_state, bucket):
        seen[-1].append(bucket.buffer().numel())
        return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda f: f.value()[0])

    probe = DistributedDataParallel(copy.deepcopy(initial))
    probe.register_comm_hook(None, recording_hook)
    x = torch.zeros(8, 784)
    for _ in range(3):  # DDP rebuilds its buckets after the first step: read the last step's
        seen.append([])
        probe(x).sum().backward()
    buckets = seen[-1]
    out["ddp_buckets_elements"] = buckets
    del probe

    out["allreduce_1_float"] = stats(timed_allreduce([1], args.iters))
    out["allreduce_flat"] = stats(timed_allreduce([params], args.iters))
    out["allreduce_ddp_buckets"] = stats(timed_allreduce(buckets, args.iters))

    # Steps inside the job: each rank on its half of every global batch, 1 thread each, both ranks at once.
    insitu = {}
    ranks = Ranks(rank, size, int(os.environ.get("LOCAL_RANK", rank)), int(os.environ.get("LOCAL_WORLD_SIZE", size)),
                  job=True)
    n = len(start.data.train)
    for batch in args.batches:
        _, engine_of, _ = _training(args.spec, batch) if batch != args.batches[0] else (start, engine_of, torch)
        need = (args.steps + args.warmup) * batch
        order = _orders(torch, n, need // n + 1)
        part = ranks.shard(batch)

        local = engine_of(copy.deepcopy(initial))  # no DDP: compute only, the two cores shared
        dist.barrier()
        alone = _time_steps(local, torch, lambda i: order[i * batch:(i + 1) * batch][part], args.steps, args.warmup)

        network, shares = ranks.wrap(copy.deepcopy(initial), torch.device("cpu"))
        ddp = engine_of(network, shares)
        dist.barrier()

        def rows_of(i: int) -> torch.Tensor:
            rows = order[i * batch:(i + 1) * batch]
            return rows[shares.take(len(rows))]

        with_ddp = _time_steps(ddp, torch, rows_of, args.steps, args.warmup)
        del network, ddp

        # Without DDP: the local step with one flat all-reduce of the gradient between backward and
        # the optimizer step, timing the all-reduce call itself: what the all-reduce costs inside a step.
        plain = copy.deepcopy(initial)
        manual = engine_of(plain)
        optimizer_step, inside = manual.plan.optimizer.step, []

        def step_with_allreduce(*a, **k):
            grads = [q.grad for q in plain.parameters()]
            flat = torch.cat([g.reshape(-1) for g in grads])
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            inside.append(time.perf_counter() - t0)
            flat.mul_(1.0 / size)
            for f, g in zip(torch.split(flat, [g.numel() for g in grads]), grads):
                g.copy_(f.view_as(g))
            return optimizer_step(*a, **k)

        manual.plan.optimizer.step = step_with_allreduce
        dist.barrier()
        by_hand = _time_steps(manual, torch, lambda i: order[i * batch:(i + 1) * batch][part], args.steps, args.warmup)
        insitu[str(batch)] = {"rows_per_rank": part.stop - part.start, "compute_both_ranks": stats(alone),
                              "ddp_step": stats(with_ddp), "manual_allreduce_step": stats(by_hand),
                              "allreduce_inside_step": stats(inside[args.warmup:])}
    out["insitu"] = insitu
    dist.barrier()
    if rank == 0:
        print(MARK + json.dumps(out), flush=True)
    dist.destroy_process_group()


# ----------------------------------------------------------------------------- orchestration

def _python() -> list[str]:
    return [sys.executable]


def _env(threads: int | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("OMP_NUM_THREADS", None)  # torchrun would set 1; netfit sets its own from the cores
    return env


def _result(cmd: list[str], env: dict) -> dict:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    sys.exit(f"no result from: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _torchrun(nproc: int) -> list[str]:
    return [*_python(), "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def epoch_run(spec: str, batch: int, epochs: int, processes: int) -> dict:
    """One `netfit train` (or torchrun of it) in fresh processes; the epoch times from its metrics.csv."""
    with tempfile.TemporaryDirectory() as out:
        tail = ["train", spec, "--set", f"train.epochs={epochs}", "--set", f"train.batch_size={batch}",
                "--set", "train.device=cpu", "--out", out, "--quiet"]
        cmd = ([*_python(), "-m", "netfit"] if processes == 1 else [*_torchrun(processes), "-m", "netfit"]) + tail
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        (metrics,) = Path(out).glob("*/metrics.csv")
        with metrics.open() as f:
            times = [float(r["epoch_time_s"]) for r in csv.DictReader(f)]
        run_json = json.loads((metrics.parent / "run.json").read_text())
    return {"processes": processes, "batch": batch, "epoch_times_s": times, "wall_s": wall,
            "recorded_processes": run_json.get("training", {}).get("processes")}


def machine() -> dict:
    import torch

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": name, "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "python": platform.python_version(), "gloo": torch.distributed.is_gloo_available()}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="configs/fashion-mnist.toml")
    parser.add_argument("--batches", default="64,512", help="global batch sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training run (the last is timed)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of 1- and 2-process runs")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per step measurement")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--iters", type=int, default=300, help="timed all-reduces per size")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", choices=["compute", "comm"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batches = [int(b) for b in str(args.batches).split(",")]
    if args.worker == "compute":
        return worker_compute(args)
    if args.worker == "comm":
        return worker_comm(args)

    load_before = load()
    print(f"load average before (1, 5, 15 min): {load_before}", flush=True)
    common = ["--spec", args.spec, "--steps", str(args.steps), "--warmup", str(args.warmup)]

    # (a) epochs, alternating 1 and 2 processes
    runs = []
    for batch in args.batches:
        for _ in range(args.rounds):
            for processes in (1, 2):
                run = epoch_run(args.spec, batch, args.epochs, processes)
                runs.append(run)
                print(f"  batch {batch}, {processes} process(es): epochs {[round(t, 3) for t in run['epoch_times_s']]} s",
                      flush=True)

    # (b) parts of a step
    compute = []
    for batch in args.batches:
        for b, threads in ((batch // 2, 1), (batch, 2)):
            compute.append(_result([*_python(), str(SCRIPT), "--worker", "compute", "--batch", str(b), "--threads",
                                    str(threads), *common], _env()))
            print(f"  step of {b} rows, {threads} thread(s): {compute[-1]['median_s'] * 1e3:.2f} ms", flush=True)
    comm = _result([*_torchrun(2), str(SCRIPT), "--worker", "comm", "--batches", ",".join(map(str, args.batches)),
                    "--iters", str(args.iters), *common], _env())
    load_after = load()

    from netfit.step import steps_per_epoch

    rows = compute[0]["train_rows"]
    summary = []
    for batch in args.batches:
        timed = {p: [r["epoch_times_s"][-1] for r in runs if r["batch"] == batch and r["processes"] == p] for p in (1, 2)}
        epoch = {p: statistics.median(t) for p, t in timed.items()}
        steps = {p: (lambda full, rest: full + (rest > 0))(*steps_per_epoch(rows, batch, p)) for p in (1, 2)}
        step = {p: epoch[p] / steps[p] for p in (1, 2)}
        half = next(c for c in compute if c["batch"] == batch // 2 and c["threads"] == 1)["median_s"]
        whole = next(c for c in compute if c["batch"] == batch and c["threads"] == 2)["median_s"]
        allreduce = comm["allreduce_ddp_buckets"]["median_s"]
        insitu = comm["insitu"][str(batch)]
        rest = step[2] - half - allreduce
        summary.append({
            "batch": batch, "train_rows": rows, "steps_per_epoch": steps[1],
            "epoch_s_1_process": epoch[1], "epoch_s_2_processes": epoch[2], "ratio_2_over_1": epoch[2] / epoch[1],
            "step_s_1_process": step[1], "step_s_2_processes": step[2],
            "compute_whole_batch_2_threads_s": whole, "compute_half_batch_1_thread_s": half,
            "allreduce_ddp_buckets_s": allreduce,
            "compute_half_batch_both_ranks_s": insitu["compute_both_ranks"]["median_s"],
            "ddp_step_insitu_s": insitu["ddp_step"]["median_s"],
            "manual_allreduce_step_insitu_s": insitu["manual_allreduce_step"]["median_s"],
            "allreduce_inside_step_s": insitu["allreduce_inside_step"]["median_s"],
            "rest_s": rest,
            "shares": {"compute": half / step[2], "allreduce": allreduce / step[2], "rest": rest / step[2]},
        })

    print()
    print(f"machine: {machine()}")
    print(f"load average before {load_before}, after {load_after}")
    print(f"network: {comm['parameters']:,} parameters, gradient {comm['gradient_bytes'] / 1e6:.2f} MB fp32; "
          f"DDP buckets (elements): {comm['ddp_buckets_elements']}")
    print(f"gloo all-reduce, 2 processes: 1 float {comm['allreduce_1_float']['median_s'] * 1e3:.3f} ms, "
          f"whole gradient flat {comm['allreduce_flat']['median_s'] * 1e3:.3f} ms, "
          f"in DDP's buckets {comm['allreduce_ddp_buckets']['median_s'] * 1e3:.3f} ms (medians)")
    print()
    print("| global batch | s/epoch, 1 process (2 threads) | s/epoch, 2 processes (1 thread each) | 2 / 1 |")
    print("|---:|---:|---:|---:|")
    for s in summary:
        print(f"| {s['batch']} | {s['epoch_s_1_process']:.2f} | {s['epoch_s_2_processes']:.2f} | "
              f"{s['ratio_2_over_1']:.2f}x |")
    print()
    print("| ms per step | " +
          " | ".join(f"batch {s['batch']}" for s in summary) + " |")
    print("|---|" + "---:|" * len(summary))
    lines = [("1 process: epoch time / steps", "step_s_1_process"),
             ("  its compute alone, whole batch, 2 threads", "compute_whole_batch_2_threads_s"),
             ("2 processes: epoch time / steps", "step_s_2_processes"),
             ("  compute, half batch, 1 thread, other core idle", "compute_half_batch_1_thread_s"),
             ("  gloo all-reduce of the gradient (DDP's buckets)", "allreduce_ddp_buckets_s"),
             ("  rest (difference)", "rest_s"),
             ("  in the job: half-batch compute on both ranks at once, no DDP", "compute_half_batch_both_ranks_s"),
             ("  in the job: netfit's DDP step (compute + all-reduce + hooks)", "ddp_step_insitu_s"),
             ("  in the job: no DDP, one flat all-reduce after backward, by hand", "manual_allreduce_step_insitu_s"),
             ("    of which the all-reduce call", "allreduce_inside_step_s")]
    for label, key in lines:
        print(f"| {label} | " + " | ".join(f"{s[key] * 1e3:.2f}" for s in summary) + " |")
    print()
    for s in summary:
        sh = s["shares"]
        print(f"batch {s['batch']}: 2-process step {s['step_s_2_processes'] * 1e3:.2f} ms = compute "
              f"{s['compute_half_batch_1_thread_s'] * 1e3:.2f} ({sh['compute']:.0%}) + all-reduce "
              f"{s['allreduce_ddp_buckets_s'] * 1e3:.2f} ({sh['allreduce']:.0%}) + rest {s['rest_s'] * 1e3:.2f} "
              f"({sh['rest']:.0%})")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": "PYTHONPATH=src python " + " ".join(sys.argv),
            "machine": machine(), "load_average_before": load_before, "load_average_after": load_after,
            "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "batch", "threads", "json")},
            "summary": summary, "epoch_runs": runs, "compute": compute, "comm": comm,
        }, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
