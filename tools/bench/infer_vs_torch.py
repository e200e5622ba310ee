#!/usr/bin/python3
"""Inference latency, minidl against PyTorch, side by side.

The same zoo model (tools/bench/torch_models.py mirrors it) in eval mode without
autograd (minidl: NoGradGuard; torch: torch.inference_mode), on the first images
of the Fashion-MNIST test set, normalised the same way, with the same thread
count, at each batch size. Rounds alternate minidl, torch, minidl, torch ... and
the ratio is taken round by round.

PyTorch is only a comparator: Debian's python3-torch, installed for this script alone.

    /usr/bin/python3 tools/bench/infer_vs_torch.py --models mlp cnn --batch 1 128 --threads 2
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402
from train_vs_torch import load_batches  # noqa: E402


def torch_latency(model_name, x, min_time, warmup):
    torch.manual_seed(0)
    model = torch_models.build(model_name)
    model.eval()
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        times, total = [], 0.0
        while total < min_time or len(times) < 10:
            t0 = time.perf_counter()
            model(x)
            dt = time.perf_counter() - t0
            times.append(dt)
            total += dt
    return times


def minidl_latency(binary, model_name, batch, min_time, warmup, threads, data):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, "bench", "infer", "--model", model_name, "--batch", str(batch), "--data", data,
                          "--min-time", str(min_time), "--warmup-runs", str(warmup), "--json", "--raw"],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["results"][0]["seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per framework per round")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--binary", default="build/default/minidl")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    results = []
    for name in args.models:
        for batch in args.batch:
            x = load_batches(args.data, batch, 1, split="t10k")[0][0]
            rounds = []
            for _ in range(args.rounds):
                m = statistics.median(minidl_latency(args.binary, name, batch, args.min_time, args.warmup,
                                                     args.threads, args.data))
                t = statistics.median(torch_latency(name, x, args.min_time, args.warmup))
                rounds.append({"minidl_s": m, "torch_s": t, "speedup": t / m})
            speedups = [r["speedup"] for r in rounds]
            results.append({"model": name, "batch": batch, "rounds": rounds,
                            "minidl_median_s": statistics.median(r["minidl_s"] for r in rounds),
                            "torch_median_s": statistics.median(r["torch_s"] for r in rounds),
                            "speedup_median": statistics.median(speedups),
                            "speedup_min": min(speedups), "speedup_max": max(speedups)})
    if args.json:
        print(json.dumps({"benchmark": "infer vs torch", "torch": torch.__version__, "threads": args.threads,
                          "results": results}))
        return
    print(f"inference latency (eval, no autograd), {args.threads} threads, torch {torch.__version__}, "
          f"{args.rounds} alternating rounds")
    print(f"{'model':8} {'batch':>5} {'minidl':>12} {'torch':>12} {'torch/minidl':>14}  (range over rounds)")
    for r in results:
        print(f"{r['model']:8} {r['batch']:5d} {r['minidl_median_s'] * 1e6:9.1f} us {r['torch_median_s'] * 1e6:9.1f} us "
              f"{r['speedup_median']:13.2f}x  ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})")


if __name__ == "__main__":
    main()
