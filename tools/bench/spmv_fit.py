#!/usr/bin/env python3
"""Panels or loads at batch 1: the measurements behind spmv_panels_pay.

Runs `minidl bench sparse --batch 1 --formats csr` with MINIDL_SPMV=loads and
MINIDL_SPMV=panels in alternating rounds (loads panels, panels loads, ...),
takes each cell's median over the rounds, and then

  - fits the two cost models of ops/cpu/spmm.cpp by least squares, on the
    matrices whose panel layout stays in cache (under --cache-fit bytes):
        loads  = a · nnz + b · rows          panels = c · steps + d · slice_panels
  - prints, for every cell, both times, the padding (slots per non-zero), the
    rule's pick and what the pick costs against the faster of the two;
  - sums that up as a geometric mean over the cells, beside "always the panels"
    and "always the loads".

The rule it checks is the one in ops/cpu/spmm.cpp, with its constants as
options, so a reader on another CPU can refit them:

  tools/bench/spmv_fit.py --minidl build/default/minidl --rounds 3 --out-dir runs/spmv-fit
  tools/bench/spmv_fit.py --from runs/spmv-fit --row-cost 14      # re-read, try a constant
"""
import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys

SHAPES = "256x512 512x784 128x3136 1024x1024 2048x2048 4096x4096 3072x768 768x3072 4096x1024 1024x4096"
SPARSITIES = "0.5 0.7 0.8 0.85 0.9 0.95 0.975 0.99"
LANES, WIDTH = 16, 32  # PanelMatrixArg::kPanelLanes, kPanelWidth


def sweep(o):
    os.makedirs(o.out_dir, exist_ok=True)
    for r in range(o.rounds):
        order = ("loads", "panels") if r % 2 == 0 else ("panels", "loads")
        for fetch in order:
            out = os.path.join(o.out_dir, f"{fetch}-{r}.json")
            cmd = [o.minidl, "bench", "sparse", "--batch", "1", "--formats", "csr", "--shapes", *o.shapes.split(),
                   "--sparsity", *o.sparsity.split(), "--min-time", str(o.min_time), "--json-out", out, "--json"]
            print(f"round {r + 1}/{o.rounds}: MINIDL_SPMV={fetch}", file=sys.stderr)
            done = subprocess.run(cmd, env={**os.environ, "MINIDL_SPMV": fetch}, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}{done.stdout}")


def load(directory):
    """Median time per (shape, sparsity) for each fetch, and the panel layout's size."""
    times, layout, cpu = {}, {}, None
    files = sorted(glob.glob(os.path.join(directory, "*.json")))
    if not files:
        sys.exit(f"{directory}: no *.json from a sweep")
    for path in files:
        fetch = os.path.basename(path).split("-")[0]
        if fetch not in ("loads", "panels"):
            sys.exit(f"{path}: expected loads-N.json or panels-N.json")
        doc = json.load(open(path))
        cpu = doc.get("cpu", cpu)
        for c in doc["conversions"]:
            if c["panel_bytes"]:
                layout[(c["shape"], c["sparsity"])] = c
        for r in doc["results"]:
            if r["implementation"] == "csr":
                times.setdefault((r["shape"], r["sparsity"], fetch), []).append(r["time"]["median_s"])
    cells = []
    for (shape, sparsity, fetch), t in sorted(times.items()):
        if fetch != "loads" or (shape, sparsity, "panels") not in times:
            continue
        c = layout.get((shape, sparsity))
        if c is None:
            sys.exit(f"{shape} at {sparsity}: no panel layout in the panels sweep (run it with MINIDL_SPMV=panels)")
        rows, cols = map(int, shape.split("x"))
        slice_panels = -(-rows // LANES) * -(-cols // WIDTH)
        slots = (c["panel_bytes"] - 4 * (slice_panels + 1)) // 5  # 4 B value + 1 B column a slot
        cells.append({"shape": shape, "sparsity": sparsity, "rows": rows, "nnz": c["nnz"],
                      "steps": slots // LANES, "slice_panels": slice_panels, "csr_bytes": c["bytes"],
                      "panel_bytes": c["panel_bytes"], "loads_s": statistics.median(t),
                      "panels_s": statistics.median(times[(shape, sparsity, "panels")])})
    return cells, cpu


def fit(points):
    """Least squares y ≈ p·u + q·v, no intercept, by the 2×2 normal equations."""
    suu = sum(u * u for u, v, y in points)
    suv = sum(u * v for u, v, y in points)
    svv = sum(v * v for u, v, y in points)
    suy = sum(u * y for u, v, y in points)
    svy = sum(v * y for u, v, y in points)
    det = suu * svv - suv * suv
    return (suy * svv - svy * suv) / det, (suu * svy - suv * suy) / det


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minidl", default="build/default/minidl")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--shapes", default=SHAPES)
    p.add_argument("--sparsity", default=SPARSITIES)
    p.add_argument("--min-time", type=float, default=0.1)
    p.add_argument("--out-dir", default="runs/spmv-fit", help="where the sweeps' JSON goes")
    p.add_argument("--from", dest="source", help="re-read a directory of sweeps instead of running them")
    p.add_argument("--threads", type=int, default=2, help="the sweeps' threads (the cache budget is per thread)")
    p.add_argument("--cache-fit", type=float, default=1.6e6, help="fit on layouts under this many bytes")
    # The rule of ops/cpu/spmm.cpp, spmv_panels_pay.
    p.add_argument("--row-cost", type=float, default=20)
    p.add_argument("--step-cost", type=float, default=6)
    p.add_argument("--panel-cost", type=float, default=6)
    p.add_argument("--cache-bytes", type=float, default=2 << 20, help="per thread")
    p.add_argument("--bytes-ratio", type=float, default=1.4)
    o = p.parse_args()
    if o.source is None:
        sweep(o)
    cells, cpu = load(o.source or o.out_dir)
    if not cells:
        sys.exit("no cell has both a loads and a panels time")
    print(f"cpu: {cpu}")

    # The fits, in ns of one core (the sweeps run --threads threads).
    in_cache = [c for c in cells if c["panel_bytes"] < o.cache_fit]
    if len(in_cache) < 3:
        sys.exit(f"only {len(in_cache)} cells under --cache-fit {o.cache_fit:.0f} bytes: too few to fit")
    per_nnz, per_row = fit([(c["nnz"], c["rows"], c["loads_s"] * 1e9 * o.threads) for c in in_cache])
    per_step, per_panel = fit([(c["steps"], c["slice_panels"], c["panels_s"] * 1e9 * o.threads) for c in in_cache])
    print(f"fitted on {len(in_cache)} cells with the layout under {o.cache_fit / 1e6:.1f} MB, ns of one core:")
    print(f"  loads:  {per_nnz:.3f} a non-zero, {per_row:.2f} a row")
    print(f"  panels: {per_step:.3f} a step, {per_panel:.2f} a slice's panel")
    print(f"  in units of a non-zero: rows {per_row / per_nnz:.1f}, steps {per_step / per_nnz:.1f}, "
          f"slice panels {per_panel / per_nnz:.1f}  (the rule: {o.row_cost:g}, {o.step_cost:g}, {o.panel_cost:g})\n")

    def panels_pay(c):
        if c["panel_bytes"] > o.cache_bytes * o.threads:
            return c["panel_bytes"] <= o.bytes_ratio * c["csr_bytes"]
        return o.step_cost * c["steps"] + o.panel_cost * c["slice_panels"] < c["nnz"] + o.row_cost * c["rows"]

    print(f"{'shape':10s} {'sparsity':>8s} {'loads':>9s} {'panels':>9s} {'L/P':>5s} {'padding':>7s} "
          f"{'panel MB':>8s} {'x CSR':>5s} {'pick':>6s} {'cost':>5s}")
    costs = {"the rule": [], "always the panels": [], "always the loads": []}
    for c in cells:
        loads, panels = c["loads_s"], c["panels_s"]
        pick = panels_pay(c)
        best = min(loads, panels)
        cost = (panels if pick else loads) / best
        costs["the rule"].append(cost)
        costs["always the panels"].append(panels / best)
        costs["always the loads"].append(loads / best)
        print(f"{c['shape']:10s} {c['sparsity']:8.3f} {loads * 1e6:7.1f}us {panels * 1e6:7.1f}us {loads / panels:5.2f} "
              f"{c['steps'] * LANES / c['nnz']:7.2f} {c['panel_bytes'] / 1e6:8.2f} "
              f"{c['panel_bytes'] / c['csr_bytes']:5.2f} {'panels' if pick else 'loads':>6s} {cost:5.2f}")
    print("\nagainst the faster of the two in each cell (geometric mean, worst):")
    for name, v in costs.items():
        geo = math.exp(sum(map(math.log, v)) / len(v))
        print(f"  {name:18s} {geo:.3f}  {max(v):.2f}")


if __name__ == "__main__":
    main()
