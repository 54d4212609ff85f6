#!/usr/bin/env python3
"""Runs every built-in scenario of nearcast-sim and prints the results table of
docs/simulator.md (Markdown), from each run's summary.json.

    python3 sim/library.py [--peers 10000] [--bin target/release/nearcast-sim] [--out DIR]
        [--jobs 2] [--only default,skype-2007]

Build first: cargo build --release -p nearcast-sim. Every scenario runs with all four
baselines at its own warm-up and duration; runs already in --out are reused. compare-30
(30 peers, against real processes) is left to tests/compare-sim-real.sh.
"""

import argparse
import json
import os
import subprocess
import sys

BASELINES = ["nearcast", "prefix_only", "random_swarm", "seeder_only"]


def scenario_names(binary):
    out = subprocess.run([binary, "list"], check=True, capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def run(binary, name, peers, jobs, out_dir):
    folder = os.path.join(out_dir, name)
    summary = os.path.join(folder, "summary.json")
    if not os.path.exists(summary):
        cmd = [binary, "run", name, "--peers", str(peers), "--jobs", str(jobs), "--out", folder]
        print("running:", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(summary) as f:
        return json.load(f)


def fmt(x, digits):
    return "–" if x is None else f"{x:.{digits}f}"


def row(name, s):
    b = s["baselines"]
    get = lambda key, digits: " / ".join(fmt(b[k].get(key), digits) if k in b else "–" for k in BASELINES)
    same_as = " / ".join(
        fmt(b[k].get("same_as_when_available"), 3) if k in b and k != "seeder_only" else "–"
        for k in BASELINES[:3]
    )
    n = b.get("nearcast", {})
    ttfb = n.get("ttfb_ms", {})
    faults = "; ".join(
        f"{f['fault']}: lowest minute {fmt(f.get('min_success'), 3)}, recovery "
        f"{fmt(f.get('recovery_s'), 0)} s, re-attach {fmt(f.get('reattach_s'), 0)} s"
        for f in n.get("faults", [])
    )
    sn = n.get("supernodes", {})
    notes = f"{sn.get('mean', 0):.0f} supernodes, attached {fmt(sn.get('attached_leaves'), 3)}"
    if faults:
        notes += "; " + faults.replace("None", "never")
    return (
        f"| {name} | {get('fetch_success', 5)} | {get('seeder_over_bound', 2)} | {same_as} "
        f"| {ttfb.get('p50', '–')}/{ttfb.get('p95', '–')} | {notes} |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=10000)
    ap.add_argument("--bin", default="target/release/nearcast-sim")
    ap.add_argument("--out", default="/tmp/nearcast-library")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    args = ap.parse_args()
    names = scenario_names(args.bin)
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    else:
        # compare-30 is its own study (tests/compare-sim-real.sh), at its own 30 peers.
        names = [n for n in names if n != "compare-30"]
    print("| scenario | fetch success | seeder egress ÷ compulsory-miss bound | same AS when available "
          "| TTFB p50/p95 ms (nearcast) | nearcast: supernodes, leaves attached, faults |")
    print("|---|---|---|---|---|---|")
    for name in names:
        print(row(name, run(args.bin, name, args.peers, args.jobs, args.out)), flush=True)


if __name__ == "__main__":
    main()
