"""bnmft: a symbolic-numeric derivation engine for the mean-field theory of batch norm.

Public API (stable):

* :func:`activation` -- parse an activation (registered name or expression in ``x``);
* :func:`derivation` -- moment forms and closed forms of every BSB1 quantity;
* :func:`analyze` -- numbers for given batch sizes, to a requested number of digits;
* :class:`InvalidInput` -- the ``ValueError`` raised for input bnmft refuses (an
  activation it cannot handle, a batch size outside 4..10^15 or ``math.inf``); one line.

The stages are the subpackages ``bnmft.derive``, ``bnmft.numerics`` and ``bnmft.codegen``;
no public name shadows them.
"""

__version__ = "0.1.0"

from bnmft.derive.activation import Activation, ActivationError, activation  # noqa: E402
from bnmft.derive.derivation import derive as derivation  # noqa: E402
from bnmft.derive.errors import InvalidInput  # noqa: E402
from bnmft.numerics.evaluate import analyze  # noqa: E402

__all__ = [
    "Activation", "ActivationError", "InvalidInput", "activation", "analyze", "derivation",
    "__version__",
]
