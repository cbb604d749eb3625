"""Run every benchmark and print its figures: ``python -m benchmarks [name ...]``."""

from __future__ import annotations

import sys

from benchmarks import bench_decode, bench_ingest, bench_proxy, bench_report, bench_serve, bench_validate

BENCHES = {"report": bench_report, "ingest": bench_ingest, "proxy": bench_proxy, "decode": bench_decode, "serve": bench_serve, "validate": bench_validate}


def main(names: list[str]) -> None:
    for name in names or list(BENCHES):
        mod = BENCHES[name]
        print("\n".join(mod.report(mod.run())), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
