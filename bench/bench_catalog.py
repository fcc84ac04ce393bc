"""1. Importing 100,000 image files into a session: catalog.register on a fresh Store.

The files are small PNG/JPEG copies of 8 encoded images (registration reads headers only).
They were just written, so the OS page cache is warm: this is the CPU cost of registering,
not the cost of a cold disk. Also measured: registering the same folder again (all known).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Report, Timer, fresh_dir, image_folder, parser  # noqa: E402


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    total = 100_000
    count = 20_000 if args.quick else total   # --quick: the first 20 sub-folders
    report = Report("catalog", args.quick)
    report.details["files"] = count

    from hitl import catalog
    from hitl.imaging import header_info
    from hitl.store import Store

    with Timer() as t:
        folder = image_folder(total)
    report.details["generate_or_reuse_s"] = round(t.seconds, 2)

    tmp = fresh_dir("catalog")
    try:
        store = Store(tmp / "hitl.duckdb")
        sources = [str(folder)] if count == total else \
            [str(folder / f"d{i:04d}") for i in range(count // 1000)]
        n = f"{count // 1000}k"
        with Timer() as t:
            found, skipped, missing = catalog.find_files(sources)
        report.add(f"find_files (os.walk) of {n} files", t.seconds, "s")
        # time the database insert inside register by wrapping this Store's add_images
        inner, spent = store.add_images, {}

        def timed_add(frame):
            with Timer() as ta:
                n = inner(frame)
            spent["add_images"] = ta.seconds
            return n
        store.add_images = timed_add
        with Timer() as t:
            rep = catalog.register(store, sources)
        del store.add_images
        added = rep.added
        report.add(f"register {n} files on a fresh Store", t.seconds, "s", note=rep.summary())
        if count != total:
            report.add("register 100k, extrapolated", t.seconds * total / count, "s")
        report.add("register throughput", added / t.seconds, "files/s")
        report.add("  of which Store.add_images (DuckDB insert)", spent.get("add_images"), "s")
        report.add("  of which finding + header reads",
                   t.seconds - spent.get("add_images", 0.0), "s")
        # the same header reads, serial loop (what register does) vs an 8-thread pool (alternated)
        from concurrent.futures import ThreadPoolExecutor
        sample = [str(p) for p in found[:10_000]]
        serial, pooled = [], []
        for _ in range(2):
            with Timer() as ts:
                for path in sample:
                    header_info(path, 100_000_000)
            serial.append(ts.seconds)
            with Timer() as tp:
                with ThreadPoolExecutor(max_workers=8) as pool:
                    list(pool.map(lambda path: header_info(path, 100_000_000), sample,
                                  chunksize=256))
            pooled.append(tp.seconds)
        report.add("header_info, serial loop, per file", min(serial) / len(sample) * 1000, "ms",
                   note=f"best of 2 over the same {len(sample):,} files")
        report.add("header_info, 8-thread pool (for comparison), per file",
                   min(pooled) / len(sample) * 1000, "ms",
                   note="parsing holds the GIL: the threads only add switching")
        report.add("images added", added, "", "==", count)
        report.add("unreadable", len(rep.unreadable), "", "==", 0)
        if not args.quick:
            with Timer() as t:
                again = catalog.register(store, sources)
            report.add(f"register the same {n} again (all known)", t.seconds, "s",
                       note=again.summary())
        store.close()
        report.details["db_bytes"] = (tmp / "hitl.duckdb").stat().st_size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    main()
