#!/usr/bin/python3
"""Training-step time, minidl against PyTorch, side by side.

Both frameworks train the same model (tools/bench/torch_models.py mirrors the
zoo) with AdamW (lr 1e-3, weight decay 0.01) on the same batches: the first
BATCHES batches of the Fashion-MNIST training set, in order, normalised with the
same mean and std. Both get the same thread count. Rounds alternate
minidl, torch, minidl, torch ... so machine drift hits both alike; each round
reports the median step time, and the ratio is taken round by round.

PyTorch is only a comparator: Debian's python3-torch, installed for this script alone.

    /usr/bin/python3 tools/bench/train_vs_torch.py --models mlp cnn --threads 2
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

MEAN, STD = 0.2860, 0.3530


def load_batches(data_dir, batch, batches, split="train"):
    with gzip.open(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    out = []
    for b in range(batches):
        x = images[b * batch:(b + 1) * batch].astype(np.float32) / 255.0
        x = (x - MEAN) / STD
        out.append((torch.from_numpy(x), torch.from_numpy(labels[b * batch:(b + 1) * batch].astype(np.int64))))
    return out


def torch_steps(model_name, batches, min_time, warmup):
    torch.manual_seed(0)
    model = torch_models.build(model_name)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(i):
        x, y = batches[i % len(batches)]
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    times, total, i = [], 0.0, 0
    while total < min_time or len(times) < 10:
        t0 = time.perf_counter()
        step(i)
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
        i += 1
    return times


def minidl_steps(binary, model_name, batch, batches, min_time, warmup, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, "bench", "train-step", "--model", model_name, "--batch", str(batch), "--batches",
                          str(batches), "--min-time", str(min_time), "--warmup-runs", str(warmup), "--json", "--raw"],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per framework per round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--binary", default="build/default/minidl")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    batches = load_batches(args.data, args.batch, args.batches)
    results = []
    for name in args.models:
        rounds = []
        for _ in range(args.rounds):
            m = statistics.median(minidl_steps(args.binary, name, args.batch, args.batches, args.min_time,
                                               args.warmup, args.threads))
            t = statistics.median(torch_steps(name, batches, args.min_time, args.warmup))
            rounds.append({"minidl_s": m, "torch_s": t, "speedup": t / m})
        speedups = [r["speedup"] for r in rounds]
        results.append({"model": name, "rounds": rounds,
                        "minidl_median_s": statistics.median(r["minidl_s"] for r in rounds),
                        "torch_median_s": statistics.median(r["torch_s"] for r in rounds),
                        "speedup_median": statistics.median(speedups),
                        "speedup_min": min(speedups), "speedup_max": max(speedups)})
    meta = {"benchmark": "train-step vs torch", "torch": torch.__version__, "threads": args.threads,
            "batch": args.batch, "optimizer": "AdamW(lr=1e-3, wd=0.01)", "results": results}
    if args.json:
        print(json.dumps(meta))
        return
    print(f"training step (forward + backward + AdamW), batch {args.batch}, {args.threads} threads, "
          f"torch {torch.__version__}, {args.rounds} alternating rounds")
    print(f"{'model':10} {'minidl':>12} {'torch':>12} {'torch/minidl':>14}  (range over rounds)")
    for r in results:
        print(f"{r['model']:10} {r['minidl_median_s'] * 1e3:9.2f} ms {r['torch_median_s'] * 1e3:9.2f} ms "
              f"{r['speedup_median']:13.2f}x  ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})")


if __name__ == "__main__":
    main()
