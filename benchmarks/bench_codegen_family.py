"""CPU time per B of the family modules (slope, alpha as array arguments) against the
fixed-parameter modules: 10^5 batch sizes log-uniform in [4, 1e6], parameters uniform
(slope in [-2, 2], alpha in [0.55, 4.5]), best of 5 interleaved repeats, time.process_time.

    python benchmarks/bench_codegen_family.py
"""
import time

import numpy as np

from bnmft.derive import symbolic_activation, derive
from bnmft.derive.activation import activation
from bnmft.codegen import generate, load_c, load_numpy
rng = np.random.default_rng(0)
n = 10**5
B = np.exp(rng.uniform(np.log(4), np.log(1e6), n))
mods = {}
for label, act, arg in [("leaky family", symbolic_activation("leaky_relu"), rng.uniform(-2, 2, n)),
                        ("leaky_relu:0.2", activation("leaky_relu:0.2"), None),
                        ("alpha family", symbolic_activation("alpha_relu"),
                         rng.uniform(0.55, 4.5, n)),
                        ("alpha_relu:1.5", activation("alpha_relu:1.5"), None)]:
    d = derive(act)
    name = "bm_" + label.replace(" ", "_").replace(":", "_").replace(".", "_")
    mods[label] = (load_c(generate(d, lang="c", module=name), name),
                   load_numpy(generate(d, lang="numpy", module=name), name), arg)
res = {k: {"c": [], "np": []} for k in mods}
for r in range(5):
    for k, (c, py, arg) in mods.items():
        args = () if arg is None else (arg,)
        t = time.process_time(); c.all(B, *args); res[k]["c"].append(time.process_time() - t)
        t = time.process_time()
        for q in py.__all__: getattr(py, q)(B, *args)
        res[k]["np"].append(time.process_time() - t)
for k, v in res.items():
    c_ns, np_ns = min(v["c"]) / n * 1e9, min(v["np"]) / n * 1e9
    print(f"{k:16s} C fused {c_ns:7.0f} ns/B   numpy all eight {np_ns:7.0f} ns/B")
