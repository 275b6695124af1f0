"""On paper: an epoch of 6 million images (100x Fashion-MNIST) on N GPUs, from measured step costs.

Measured (read from benchmarks/results/):
- the per-step time of netfit on one H100, 784-512-256-10, graph engine, bf16: epoch time / steps
  at batch 64 and 512 (h100-compare.json, Adam at a constant rate, the median of the epochs after
  the first); h100-fashion-mnist-fast.json's batch-512 figure (AdamW, one-cycle) is printed as a
  cross-check;
- the per-step time of an eager loop on the same H100 (h100-compare.json, "device-tensors": a
  hand-written loop over tensors on the GPU), because under torchrun netfit runs the eager engine
  (DDP's all-reduce is not captured in a CUDA graph); netfit's own eager step on the H100 was not
  measured;
- the gloo all-reduce of the same gradient between 2 CPU processes (cpu-ddp-scaling.json), shown
  for scale only: GPUs all-reduce over NCCL.

Assumed (not measured here; change them with the options):
- compute per step grows linearly in the per-GPU batch through the two measured points, and
  stays there below 64 rows (a step of a few rows costs its kernel launches); above 512 rows the
  line is an extrapolation;
- ring all-reduce of S bytes over N GPUs: 2(N-1) steps, each paying a latency alpha, and
  2(N-1)/N x S bytes through each GPU's slowest link: T = 2(N-1) alpha + 2(N-1)/N S / beta;
- inside one node (N <= 8): NVLink 4, 900 GB/s per H100 in both directions together (NVIDIA's
  H100 SXM datasheet), so beta = 450 GB/s one way, alpha = 5 us per step;
- across nodes (N > 8, 8 GPUs per node): NDR InfiniBand, 400 Gb/s = 50 GB/s per GPU (one
  ConnectX-7 port per GPU, as in NVIDIA's DGX H100), beta = 50 GB/s, alpha = 10 us per step
  (switch, NIC and software), for every step of the ring;
- DDP puts this network's whole gradient (2.1 MB) in one bucket (cpu-ddp-scaling.json records
  the layout), so the all-reduce starts after the backward pass and nothing overlaps it:
  step = compute + all-reduce;
- the data sits on every GPU (netfit keeps the training set on each rank's device: 6M x 784
  bytes = 4.7 GB of uint8 images), so no input pipeline time is counted.

    PYTHONPATH=src .venv/bin/python benchmarks/scaling_model.py
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
IMAGES = 6_000_000
GPUS_PER_NODE = 8


def steps(rows: int, batch: int) -> int:
    return math.ceil(rows / batch)


def measured(results: Path) -> dict:
    compare = json.loads((results / "h100-compare.json").read_text())
    fast = json.loads((results / "h100-fashion-mnist-fast.json").read_text())
    out: dict = {"graph": {}, "eager": {}, "sources": {}}
    for run in compare["runs"]:
        batch = run["batch_size"]
        for kind, name in (("graph", "netfit"), ("eager", "device-tensors")):
            r = run["results"][name]
            later = r["epoch_times"][1:]  # the first epoch carries warm-up and capture
            out[kind].setdefault(batch, []).extend(t / steps(r["train_rows"], batch) for t in later)
    fast_steps = steps(60_000, 512)  # fashion-mnist-fast.toml as it was then: 784-512-256, 60,000 images, batch 512
    fast_per_step = [t / fast_steps for run in fast["runs"] for t in run["epoch_seconds"][1:]]
    out["sources"] = {
        "graph_64_compare_us": 1e6 * statistics.median(out["graph"][64]),
        "graph_512_compare_us": 1e6 * statistics.median(out["graph"][512]),
        "graph_512_fast_us": 1e6 * statistics.median(fast_per_step),
    }
    for kind in ("graph", "eager"):
        out[kind] = {b: statistics.median(v) for b, v in out[kind].items()}
    cpu = results / "cpu-ddp-scaling.json"
    if cpu.exists():
        c = json.loads(cpu.read_text())
        out["gloo"] = {"flat_s": c["comm"]["allreduce_ddp_buckets"]["median_s"],
                       "one_float_s": c["comm"]["allreduce_1_float"]["median_s"],
                       "buckets": c["comm"]["ddp_buckets_elements"], "parameters": c["comm"]["parameters"]}
    return out


def compute_s(per_step: dict[int, float], batch: float) -> float:
    (b0, t0), (b1, t1) = sorted(per_step.items())
    slope = max(0.0, (t1 - t0) / (b1 - b0))
    return t0 + slope * (max(batch, b0) - b0)


def allreduce_s(n: int, size: float, a: argparse.Namespace) -> float:
    if n == 1:
        return 0.0
    alpha, beta = (a.alpha_intra, a.bw_intra) if n <= GPUS_PER_NODE else (a.alpha_inter, a.bw_inter)
    return 2 * (n - 1) * alpha * a.alpha_scale + 2 * (n - 1) / n * size / beta


def table(per_step: dict[int, float], size: float, a: argparse.Namespace, title: str) -> None:
    print(f"\n{title}\n")
    print("| GPUs | global batch | per-GPU batch | compute us/step | all-reduce us/step | steps/epoch | "
          "s/epoch (6M images) | speed-up | efficiency |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for batch in a.global_batches:
        base = None
        for n in a.gpus:
            local = batch / n
            c, r = compute_s(per_step, local), allreduce_s(n, size, a)
            epoch = steps(IMAGES, batch) * (c + r)
            base = base or epoch
            mark = "*" if local > max(per_step) else ""
            print(f"| {n} | {batch} | {local:g} | {c * 1e6:.0f}{mark} | {r * 1e6:.0f} | {steps(IMAGES, batch):,} | "
                  f"{epoch:.2f} | {base / epoch:.2f}x | {base / epoch / n:.0%} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--gpus", default="1,2,8,16,64")
    p.add_argument("--global-batches", default="512,4096")
    p.add_argument("--parameters", type=int, default=535_818, help="784*512+512 + 512*256+256 + 256*10+10")
    p.add_argument("--bw-intra", type=float, default=450e9, help="bytes/s one way per GPU inside a node (NVLink 4)")
    p.add_argument("--bw-inter", type=float, default=50e9, help="bytes/s per GPU across nodes (NDR 400 Gb/s)")
    p.add_argument("--alpha-intra", type=float, default=5e-6, help="seconds per ring step inside a node")
    p.add_argument("--alpha-inter", type=float, default=10e-6, help="seconds per ring step across nodes")
    p.add_argument("--alpha-scale", type=float, default=1.0, help="multiply both latencies (sensitivity)")
    a = p.parse_args()
    a.gpus = [int(x) for x in a.gpus.split(",")]
    a.global_batches = [int(x) for x in a.global_batches.split(",")]
    size = 4.0 * a.parameters  # fp32 gradients (bf16 autocast keeps fp32 weights and gradients)

    m = measured(a.results)
    s = m["sources"]
    print(f"gradient: {a.parameters:,} fp32 parameters = {size / 1e6:.2f} MB")
    print(f"measured, one H100, netfit graph engine (bf16): {s['graph_64_compare_us']:.0f} us/step at batch 64, "
          f"{s['graph_512_compare_us']:.0f} (h100-compare) and {s['graph_512_fast_us']:.0f} "
          f"(h100-fashion-mnist-fast: AdamW, one-cycle, another session) us/step at batch 512; used: "
          f"h100-compare's (same recipe at both batches)")
    print(f"measured, one H100, eager hand-written loop (fp32): {m['eager'][64] * 1e6:.0f} us/step at batch 64, "
          f"{m['eager'][512] * 1e6:.0f} at batch 512")
    if "gloo" in m:
        g = m["gloo"]
        print(f"measured, this 2-core CPU, gloo between 2 processes: the whole gradient {g['flat_s'] * 1e3:.2f} ms "
              f"(DDP buckets {g['buckets']}), 1 float {g['one_float_s'] * 1e3:.3f} ms")
    print(f"assumed: NVLink {a.bw_intra / 1e9:.0f} GB/s one way and {a.alpha_intra * 1e6:g} us per ring step "
          f"(N <= {GPUS_PER_NODE}); InfiniBand {a.bw_inter / 1e9:.0f} GB/s and {a.alpha_inter * 1e6:g} us per ring "
          f"step (N > {GPUS_PER_NODE}); latencies x {a.alpha_scale:g}")
    for n in a.gpus[1:]:
        r = allreduce_s(n, size, a)
        alpha = (a.alpha_intra if n <= GPUS_PER_NODE else a.alpha_inter) * a.alpha_scale
        print(f"  all-reduce on {n} GPUs: {r * 1e6:.0f} us, of which latency {2 * (n - 1) * alpha * 1e6:.0f} us")

    table(m["graph"], size, a, "Compute per step: netfit's graph engine on one H100 (* = extrapolated above 512 rows)")
    table(m["eager"], size, a, "Compute per step: the eager loop on one H100 (what a torchrun'd netfit runs)")


if __name__ == "__main__":
    main()
