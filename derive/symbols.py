"""The symbols every derivation shares.

``B`` is the batch size, kept symbolic (positive); ``x`` is the argument of the
activation ``phi``. Derived formulas are expressions in these symbols only (plus
activation parameters such as ``alpha``), so that codegen and numerics can read them.
"""

import sympy as sp

#: Batch size. Every BSB1 formula is valid for ``B >= 4`` (paper, Sec. 3.1).
B = sp.Symbol("B", positive=True)

#: Argument of the activation function phi.
x = sp.Symbol("x", real=True)

#: Pearson correlation of two unit-variance Gaussians (argument of dual kernels).
c = sp.Symbol("c", real=True)

#: Validity domain shared by all BSB1 quantities.
BSB1_DOMAIN = sp.Ge(B, 4)

#: Correlation of two sphere coordinates in the zero-sum hyperplane: E[z1 z2] = -1/(B-1).
RHO = -1 / (B - 1)
