#!/usr/bin/env python3
"""conv2d on the GPU: minidl's im2col + GEMM against cuDNN (through PyTorch).

For each shape NxCxHxW:OxK[:sS][:pP] (as `minidl bench conv` takes them), in
rounds that alternate the two:
  minidl   `minidl bench conv --device cuda --json` (CUDA events; every result
           checked against the CPU before it is timed);
  cuDNN    torch.nn.functional.conv2d on the same shapes, fp32 with TF32 off
           (torch.backends.cudnn.allow_tf32 = False: strict fp32, as minidl's
           default), cudnn.benchmark on (cuDNN picks its fastest algorithm
           once per shape), timed with torch.cuda.Event around the forward and
           around forward + backward, the median of many runs after warm-up.
Each ratio is taken round by round and the median printed with its range.

PyTorch is only a comparator, in this script alone (the GPU machine's image
holds it; minidl neither builds nor tests against it).

    python3 tools/bench/conv_vs_cudnn.py --minidl build/gpu/minidl --rounds 3
"""
import argparse
import json
import statistics
import subprocess
import sys

import torch

DEFAULT_SHAPES = ["128x1x28x28:32x3:p1", "128x32x14x14:64x3:p1", "128x64x14x14:128x1", "128x64x28x28:64x3:p1"]


def parse(spec):
    head, *opts = spec.split(":")
    n, c, h, w = (int(v) for v in head.split("x"))
    o, k = (int(v) for v in opts[0].split("x"))
    stride, pad = 1, 0
    for opt in opts[1:]:
        if opt.startswith("s"):
            stride = int(opt[1:])
        elif opt.startswith("p"):
            pad = int(opt[1:])
        else:
            sys.exit(f"{spec}: '{opt}' is neither sS nor pP")
    return n, c, h, w, o, k, stride, pad


def time_cuda(fn, runs):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1e-3)
    return statistics.median(times)


def cudnn_round(spec, runs):
    n, c, h, w, o, k, stride, pad = parse(spec)
    g = torch.Generator(device="cuda").manual_seed(5)
    x = torch.randn(n, c, h, w, device="cuda", generator=g, requires_grad=True)
    wt = torch.randn(o, c, k, k, device="cuda", generator=g, requires_grad=True)
    b = torch.randn(o, device="cuda", generator=g, requires_grad=True)
    y = torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=pad)
    gy = torch.randn_like(y)

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=pad)

    def both():
        torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=pad).backward(gy)

    return time_cuda(forward, runs), time_cuda(both, runs)


def minidl_round(binary, shapes, min_time):
    out = subprocess.run([binary, "bench", "conv", "--device", "cuda", "--json", "--min-time", str(min_time),
                          "--shapes", *shapes], check=True, capture_output=True, text=True).stdout
    j = json.loads(out.strip().splitlines()[-1])
    return {r["shape"]: (r["forward"]["median"], r["forward_backward"]["median"]) for r in j["results"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minidl", default="build/default/minidl")
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50, help="timed runs per cuDNN figure")
    ap.add_argument("--min-time", type=float, default=0.3, help="minidl's --min-time per figure")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("conv_vs_cudnn: PyTorch sees no GPU")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"GPU {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}, torch {torch.__version__}")
    rounds = []
    for r in range(args.rounds):
        m = minidl_round(args.minidl, args.shapes, args.min_time)
        t = {s: cudnn_round(s, args.runs) for s in args.shapes}
        rounds.append((m, t))
    print("| shape | minidl fwd | cuDNN fwd | cuDNN / minidl | minidl fwd+bwd | cuDNN fwd+bwd | cuDNN / minidl |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for s in args.shapes:
        fwd = [m[s][0] / t[s][0] for m, t in rounds]  # > 1: cuDNN faster
        both = [m[s][1] / t[s][1] for m, t in rounds]
        mf, tf = statistics.median(m[s][0] for m, _ in rounds), statistics.median(t[s][0] for _, t in rounds)
        mb, tb = statistics.median(m[s][1] for m, _ in rounds), statistics.median(t[s][1] for _, t in rounds)
        print(f"| {s} | {mf * 1e6:.1f} µs | {tf * 1e6:.1f} µs | {statistics.median(fwd):.2f}x ({min(fwd):.2f}-{max(fwd):.2f}) "
              f"| {mb * 1e6:.1f} µs | {tb * 1e6:.1f} µs | {statistics.median(both):.2f}x ({min(both):.2f}-{max(both):.2f}) |")
        results.append({"shape": s, "minidl": [mf, mb], "cudnn": [tf, tb], "cudnn_over_minidl": [fwd, both]})
    print(json.dumps({"benchmark": "conv_vs_cudnn", "results": results}))


if __name__ == "__main__":
    main()
