"""Run every benchmark, each in its own process, and print one table of all the numbers.

    .venv/bin/python -m bench              # the full suite (~15 min on 2 idle cores)
    .venv/bin/python -m bench --quick      # the short versions
    .venv/bin/python bench/run_all.py --only seg,load

Each bench writes bench/out/<name>[.quick].json; this writes bench/out/summary[.quick].json.
The exit code is 1 when a target failed or a bench crashed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, PYTHON, REPO, Row, machine_info, table  # noqa: E402

# (name of the JSON it writes, script) in the order they run
BENCHES = [
    ("catalog", "bench_catalog.py"),        # 1
    ("next_image", "bench_next_image.py"),  # 2
    ("retrain", "bench_retrain.py"),        # 3
    ("extract", "bench_extract.py"),        # 4
    ("rss", "bench_rss.py"),                # 5
    ("seg", "bench_seg.py"),                # 6-9
    ("load", "bench_load.py"),              # 10
    ("rest", "bench_rest.py"),              # 11
    ("review", "bench_review.py"),          # 12
    ("browser", "bench_browser.py"),        # 13
    ("security", "bench_security.py"),      # 14
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short versions of every bench")
    p.add_argument("--only", help="comma-separated bench names: "
                                  + ", ".join(n for n, _ in BENCHES))
    p.add_argument("--skip", help="comma-separated bench names to leave out")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per bench")
    args = p.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    skip = set(args.skip.split(",")) if args.skip else set()
    unknown = ((only or set()) | skip) - {n for n, _ in BENCHES}
    if unknown:
        p.error(f"unknown bench name(s): {', '.join(sorted(unknown))}")

    started = time.time()
    info = machine_info()
    results, all_rows = [], []
    for name, script in BENCHES:
        if (only and name not in only) or name in skip:
            continue
        out = OUT / f"{name}{'.quick' if args.quick else ''}.json"
        out.unlink(missing_ok=True)
        cmd = [PYTHON, str(REPO / "bench" / script)] + (["--quick"] if args.quick else [])
        print(f"\n### {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        try:
            code = subprocess.run(cmd, cwd=str(REPO), timeout=args.timeout,
                                  env=dict(os.environ, PYTHONUNBUFFERED="1")).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        took = time.time() - t0
        if out.exists() and code == 0:
            result = json.loads(out.read_text())
        else:
            result = {"bench": name, "rows": [], "error": f"exit {code}", "seconds": took}
        results.append(result)
        if result.get("error"):
            all_rows.append(Row(f"[{name}] CRASHED ({result['error']})", None, op="==",
                                target=0))
        for r in result["rows"]:
            all_rows.append(Row(f"[{name}] {r['metric']}", r["measured"], r["unit"], r["op"],
                                r["target"], r.get("note", "")))

    info["loadavg_end"] = os.getloadavg()
    total = time.time() - started
    summary = {"quick": args.quick, "started": started, "seconds": round(total, 1),
               "machine": info, "benches": results}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"summary{'.quick' if args.quick else ''}.json"
    path.write_text(json.dumps(summary, indent=2))
    print()
    print(table(all_rows, f"==== hitl benchmarks{' (quick)' if args.quick else ''}: "
                          f"{total / 60:.1f} min, {info['cpus']} CPUs, load avg "
                          f"{info['loadavg_start'][0]:.1f} at start, "
                          f"{info['loadavg_end'][0]:.1f} at end ===="))
    failed = [r for r in all_rows if r.passed is False]
    print(f"\n{len(failed)} target(s) failed" if failed else "\nall targets met")
    print(f"-> {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
