#!/usr/bin/python3
"""Sparse matmul, minidl against PyTorch, side by side.

For each weight shape, sparsity (uniformly random zeros) and batch size, the
product y = x · Wᵀ four ways: minidl's dense GEMM and its CSR kernel (`minidl
bench sparse`), and PyTorch's dense `torch.mm` and CSR matmul
(`W.to_sparse_csr() @ xᵀ`, transposed back as minidl does), with the same thread
count. The whole grid runs in rounds, minidl's then PyTorch's, the order flipped
every round; each ratio is taken round by round and the median printed with its
spread.

PyTorch is only a comparator: Debian's python3-torch, installed for this script alone.

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tools/bench/sparse_vs_torch.py --threads 2
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import torch


def torch_grid(shapes, sparsities, batches, min_time):
    """{(shape, sparsity, batch): (dense seconds, csr seconds)} — medians."""
    out = {}
    g = torch.Generator().manual_seed(0)
    for shape in shapes:
        rows, cols = (int(v) for v in shape.split("x"))
        w0 = torch.randn(rows, cols, generator=g) / cols ** 0.5
        scores = torch.rand(rows, cols, generator=g)
        for s in sparsities:
            drop = round(s * rows * cols)
            w = w0.clone().flatten()
            if drop:
                w[torch.argsort(scores.flatten())[:drop]] = 0
            w = w.view(rows, cols)
            csr = w.to_sparse_csr()
            for b in batches:
                x = torch.randn(b, cols, generator=g)
                ref = torch.mm(x, w.t())
                got = (csr @ x.t()).t().contiguous()
                assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4), f"torch CSR is wrong at {shape} {s} {b}"

                def median(fn):
                    for _ in range(2):
                        fn()
                    times, total = [], 0.0
                    while total < min_time or len(times) < 5:
                        t0 = time.perf_counter()
                        fn()
                        dt = time.perf_counter() - t0
                        times.append(dt)
                        total += dt
                    return statistics.median(times)

                out[(shape, s, b)] = (median(lambda: torch.mm(x, w.t())),
                                      median(lambda: (csr @ x.t()).t().contiguous()))
    return out


def minidl_grid(binary, shapes, sparsities, batches, min_time, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [binary, "bench", "sparse", "--shapes", *shapes, "--sparsity", *map(str, sparsities), "--batch",
           *map(str, batches), "--formats", "csr", "--min-time", str(min_time), "--json"]
    res = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    out = {}
    for r in res["results"]:
        key = (r["shape"], r["sparsity"], r["batch"])
        if r["implementation"] in ("dense", "csr"):
            out.setdefault(key, {})[r["implementation"]] = r["time"]["median_s"]
    return {k: (v["dense"], v["csr"]) for k, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="./build/default/minidl")
    p.add_argument("--shapes", nargs="+", default=["512x784", "1024x1024", "4096x4096"])
    p.add_argument("--sparsity", nargs="+", type=float, default=[0.5, 0.7, 0.9, 0.95, 0.99])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 32, 256])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.1, help="seconds per variant per cell per round")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rounds = []
    for r in range(a.rounds):
        order = ["minidl", "torch"] if r % 2 == 0 else ["torch", "minidl"]
        got = {}
        for who in order:
            if who == "minidl":
                got[who] = minidl_grid(a.binary, a.shapes, a.sparsity, a.batch, a.min_time, a.threads)
            else:
                got[who] = torch_grid(a.shapes, a.sparsity, a.batch, a.min_time)
        rounds.append(got)
    rows = []
    for shape in a.shapes:
        for b in a.batch:
            for s in a.sparsity:
                key = (shape, s, b)
                csr_ratio = [r["torch"][key][1] / r["minidl"][key][1] for r in rounds]
                vs_dense_torch = [r["torch"][key][0] / r["torch"][key][1] for r in rounds]
                vs_dense_minidl = [r["minidl"][key][0] / r["minidl"][key][1] for r in rounds]
                rows.append({"shape": shape, "batch": b, "sparsity": s,
                             "minidl_csr_over_torch_csr": statistics.median(csr_ratio),
                             "spread": [min(csr_ratio), max(csr_ratio)],
                             "torch_csr_vs_torch_dense": statistics.median(vs_dense_torch),
                             "minidl_csr_vs_minidl_dense": statistics.median(vs_dense_minidl),
                             "minidl_csr_ms": statistics.median(r["minidl"][key][1] for r in rounds) * 1e3,
                             "torch_csr_ms": statistics.median(r["torch"][key][1] for r in rounds) * 1e3})
    if a.json:
        print(json.dumps({"torch": torch.__version__, "threads": a.threads, "rounds": a.rounds, "results": rows}))
        return
    print(f"PyTorch {torch.__version__}, {a.threads} threads, {a.rounds} interleaved rounds; "
          "ratios > 1: minidl faster")
    print(f"{'shape':>10} {'batch':>5} {'sparsity':>8} {'minidl CSR':>11} {'torch CSR':>10} {'minidl/torch':>13} "
          f"{'[min, max]':>14} {'torch CSR vs dense':>19} {'minidl CSR vs dense':>20}")
    for r in rows:
        print(f"{r['shape']:>10} {r['batch']:>5} {100 * r['sparsity']:>7.1f}% {r['minidl_csr_ms']:>9.3f}ms "
              f"{r['torch_csr_ms']:>8.3f}ms {r['minidl_csr_over_torch_csr']:>12.2f}x "
              f"[{r['spread'][0]:.2f}, {r['spread'][1]:.2f}]{'':>2} {r['torch_csr_vs_torch_dense']:>18.2f}x "
              f"{r['minidl_csr_vs_minidl_dense']:>19.2f}x")


if __name__ == "__main__":
    main()
