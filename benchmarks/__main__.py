"""Run every benchmark and print its figures: ``python -m benchmarks [name ...]``."""

from __future__ import annotations

import sys

from benchmarks import bench_ingest

BENCHES = {"ingest": bench_ingest}


def main(names: list[str]) -> None:
    for name in names or list(BENCHES):
        mod = BENCHES[name]
        print("\n".join(mod.report(mod.run())), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
