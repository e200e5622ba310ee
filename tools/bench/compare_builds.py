#!/usr/bin/env python3
"""Two builds of minidl side by side: the same `minidl bench ...` command run by
each binary in alternating rounds (A B B A A B ...), so drift and order effects
land on both sides.  Prints every median the benchmark reports, per build, and
the ratio A/B per round (> 1: B is faster).

  tools/bench/compare_builds.py --a build/native/minidl --b build/default/minidl \
      --rounds 6 -- bench train-step --model cnn --min-time 2

One binary under two settings: the same path for both, and --a-env / --b-env
(NAME=VALUE, repeatable) for the environment each side runs with:

  tools/bench/compare_builds.py --a build/default/minidl --b build/default/minidl \
      --a-env MINIDL_SPMV=loads --b-env MINIDL_SPMV=panels -- bench sparse --batch 1
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def medians(doc, path=""):
    """Every median_s in a benchmark's JSON, keyed by where it sits."""
    out = {}
    if isinstance(doc, dict):
        # What the entry is: its shape, batch, sparsity and variant, where it says.
        parts = [doc.get(k) for k in ("shape", "batch", "sparsity", "label", "name")]
        label = " ".join(str(p) for p in parts if p is not None) or None
        for k, v in doc.items():
            if k == "median_s":
                out[path or "median"] = v
            elif k not in ("table",):
                sub = path + ("/" if path else "") + (str(label) + ":" if label is not None and k != "stats" else "") + k
                out.update(medians(v, sub))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.update(medians(v, f"{path}[{i}]"))
    return out


def run(binary, args, env):
    """The benchmark's medians, and the CPU it says it ran on."""
    r = subprocess.run([binary] + args + ["--json"], capture_output=True, text=True, env={**os.environ, **env})
    if r.returncode != 0:
        sys.exit(f"{binary} {' '.join(args)} failed:\n{r.stderr}")
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    return medians(doc), doc.get("cpu") if isinstance(doc, dict) else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="first minidl binary")
    p.add_argument("--b", required=True, help="second minidl binary")
    p.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE", help="set for A's runs")
    p.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE", help="set for B's runs")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("bench", nargs=argparse.REMAINDER, help="-- then the minidl arguments")
    o = p.parse_args()
    args = o.bench[1:] if o.bench[:1] == ["--"] else o.bench
    envs = {}
    for side in ("a", "b"):
        pairs = getattr(o, side + "_env")
        bad = [p for p in pairs if "=" not in p or p.startswith("=")]
        if bad:
            sys.exit(f"--{side}-env {bad[0]!r}: expected NAME=VALUE")
        envs[side] = dict(p.split("=", 1) for p in pairs)
    runs = {"a": [], "b": []}
    cpu = None
    for r in range(o.rounds):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        for side in order:
            got, cpu = run(getattr(o, side), args, envs[side])
            runs[side].append(got)
    label = {s: getattr(o, s) + "".join(f" {k}={v}" for k, v in envs[s].items()) for s in ("a", "b")}
    print(f"A = {label['a']}\nB = {label['b']}\ncommand: minidl {' '.join(args)}; {o.rounds} rounds, alternating order")
    if cpu:
        print(f"cpu: {cpu}")
    print(f"{'metric':60s} {'A median':>12s} {'B median':>12s} {'A/B':>7s} {'A/B range':>15s}")
    for key in runs["a"][0]:
        a = [m[key] for m in runs["a"]]
        b = [m[key] for m in runs["b"]]
        ratios = [x / y for x, y in zip(a, b)]
        print(f"{key[:60]:60s} {statistics.median(a) * 1e3:10.4f}ms {statistics.median(b) * 1e3:10.4f}ms "
              f"{statistics.median(ratios):7.3f} {min(ratios):7.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
