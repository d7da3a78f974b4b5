"""Start-up time of the command line and of ``import bnmft``.

Times whole processes with ``time.perf_counter``, interleaved round by round so that a
change in machine load affects every command alike, and prints the median of each:

* ``python -c pass`` -- the interpreter alone (the floor);
* ``python -c "import bnmft"``;
* ``python -m bnmft.cli --help``, ``--version`` and ``analyze --help``.

Run:  python benchmarks/bench_startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    'python -c "import bnmft"': ["-c", "import bnmft"],
    "bnmft --help": ["-m", "bnmft.cli", "--help"],
    "bnmft --version": ["-m", "bnmft.cli", "--version"],
    "bnmft analyze --help": ["-m", "bnmft.cli", "analyze", "--help"],
}


def wall_time(args: list[str]) -> float:
    """Seconds one ``python ARGS`` process takes, start to exit."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (default 15)")
    args = parser.parse_args()

    for argv in COMMANDS.values():  # warm the file cache and the bytecode
        wall_time(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, argv in COMMANDS.items():
            times[name].append(wall_time(argv))

    floor = statistics.median(times["python -c pass"])
    print(f"median of {args.repeat} interleaved runs, Python {sys.version.split()[0]}")
    print(f"{'command':28s} {'median ms':>10s} {'min ms':>8s} {'above floor':>12s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:28s} {1e3 * med:10.1f} {1e3 * min(ts):8.1f} {1e3 * (med - floor):9.1f} ms")


if __name__ == "__main__":
    main()
