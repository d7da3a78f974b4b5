"""`bnmft verify --rigorous`: the cost of certified enclosures, per activation and batch size.

For each activation and batch size, in library use (warm: derivation and moment forms
cached by one warm-up call each), interleaved A B A B ... over R rounds (default 3):

* A, `bnmft.analyze(act, [B], D)`: the project's non-rigorous high-precision numbers;
* B, `bnmft.verify_rigorous(act, [B], D)`: two certified Arb enclosures per quantity.

Prints the median CPU time of each (process time: the machine may be shared), their ratio
B/A, the fewest digits any enclosure certified and whether every check passed (overlap and
the requested digits).

Run: python benchmarks/bench_rigorous.py [--digits D] [--rounds R] [--sizes 4,8,32]
     [--activations relu,tanh]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import bnmft

ACTIVATIONS = ["relu", "leaky_relu", "leaky_relu:0.2", "alpha_relu:1.5", "tanh", "erf"]


def cpu(fn, *args) -> tuple[float, object]:
    t0 = time.process_time()
    out = fn(*args)
    return time.process_time() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="4,8,32")
    ap.add_argument("--activations", default=",".join(ACTIVATIONS))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    acts = args.activations.split(",")
    D = args.digits
    print(f"digits {D}, rounds {args.rounds}, CPU seconds (medians)")
    print(f"{'activation':16s} {'B':>6s} {'analyze':>9s} {'rigorous':>9s} {'ratio':>7s} "
          f"{'min digits':>10s}  ok")
    totals = {}
    for act in acts:
        deriv = bnmft.derivation(act)
        bnmft.analyze(deriv, [sizes[0]], D)  # warm-up: caches, imports
        bnmft.verify_rigorous(deriv, [sizes[0]], min(D, 8))
        for B in sizes:
            ta, tb = [], []
            checks = []
            for _ in range(args.rounds):
                t, _out = cpu(bnmft.analyze, deriv, [B], D)
                ta.append(t)
                t, checks = cpu(bnmft.verify_rigorous, deriv, [B], D)
                tb.append(t)
            a, b = statistics.median(ta), statistics.median(tb)
            totals[act] = totals.get(act, 0.0) + b
            least = min(min(c.first.digits, c.second.digits) for c in checks)
            least_text = "exact" if least == math.inf else str(int(least))
            ok = all(c.ok for c in checks)
            print(f"{act:16s} {B:>6d} {a:>9.4f} {b:>9.4f} {b / a:>7.1f} {least_text:>10s}  "
                  f"{'yes' if ok else 'NO'}", flush=True)
    print()
    for act, t in totals.items():
        print(f"{act:16s} rigorous total over B = {args.sizes}: {t:.1f} s CPU")


if __name__ == "__main__":
    main()
