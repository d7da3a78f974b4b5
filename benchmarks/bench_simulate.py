"""``bnmft simulate``: the numpy backend against the torch backend (float64, CPU).

Both backends sample the same kind of network (width N, batch B, depth L) and evaluate phi by
the Activation's numpy function; the weights are drawn by numpy's Generator or by torch's,
matrix products and the batchnorm steps run in numpy or torch. Rounds are interleaved
(numpy, torch, numpy, torch, ...) so that a change in machine load affects both alike; the
medians and their ratio are printed.

Run:  python benchmarks/bench_simulate.py [--width 512] [--depth 30] [--samples 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bnmft.numerics.simulate import simulate, torch_available
from bnmft.pipeline import activation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not torch_available():
        raise SystemExit("PyTorch is not installed (pip install 'bnmft[torch]')")
    act = activation(args.activation)
    backends = ("numpy", "torch")

    def once(name):
        t0 = time.perf_counter()
        simulate(act, args.batch_size, args.width, args.depth, args.samples, seed=1,
                 backend_name=name)
        return time.perf_counter() - t0

    for name in backends:  # warm up (imports, first allocations)
        once(name)
    times = {name: [] for name in backends}
    for _ in range(args.repeat):
        for name in backends:
            times[name].append(once(name))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"{args.activation}, B = {args.batch_size}, N = {args.width}, L = {args.depth}, "
          f"{args.samples} networks; median of {args.repeat} interleaved runs")
    for name in backends:
        print(f"  {name:6s} {med[name]:8.3f} s   (min {min(times[name]):.3f} s)")
    print(f"  numpy / torch = {med['numpy'] / med['torch']:.2f}")


if __name__ == "__main__":
    main()
