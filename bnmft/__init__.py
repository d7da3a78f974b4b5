"""bnmft: a symbolic-numeric derivation engine for the mean-field theory of batch norm.

Public API (stable), one function per stage of the pipeline (:mod:`bnmft.pipeline`):

* :func:`activation` -- parse an activation (registered name or expression in ``x``);
* :func:`derivation` -- every BSB1 quantity as a :class:`DerivedQuantity` in a frozen
  :class:`Derivation` (moment forms always, closed forms where they exist);
* :func:`analyze` -- numbers for given batch sizes, to a requested number of digits;
* :func:`generate` -- generated numpy / C sources of the closed forms (for an activation
  without them: sphere quadrature + moment forms, verified against mpmath when generated);
* :func:`verify` -- every route against independent mpmath references;
* :func:`verify_rigorous` -- two certified enclosures (Arb ball arithmetic) per quantity;
* :func:`report` -- all of the above for one activation (:class:`Report`);
* :func:`spectrum_derivation`, :func:`spectrum`, :func:`verify_spectrum` -- the forward and
  backward spectra at the BSB1 point (derived, evaluated, verified).
* :class:`InvalidInput` -- the ``ValueError`` raised for input bnmft refuses (an
  activation it cannot handle, a batch size outside 4..10^15 or ``math.inf``); one line.
* :func:`vanilla` -- the baseline without batchnorm: ``q*``, ``c*``, ``chi_1``, depth scales;
* :func:`transition`, :func:`transition_structure` -- the BSB1 -> BSB2 transition and the
  block structure beyond it;
* ``epsilon=``, ``sigma_w=`` of :func:`analyze` and :func:`spectrum` -- batchnorm with
  ``eps > 0``; :func:`regularised_derivation`, :func:`verify_regularised`,
  :func:`epsilon_scan` (where the signal dies and where gradients stop exploding).
* :func:`simulate` -- sampled finite-width networks against the theory; :func:`tune` -- the
  gamma, beta or eps at which the predicted trainable depth ``16 xi`` reaches a target.

* :func:`kernel` -- the depth-L kernel of a wide BN (or vanilla) network on a data set.
* :func:`gp` -- GP regression with the NNGP kernel of a deep batchnorm (or vanilla) network:
  posterior mean and variance at test inputs, jitter used, test metrics.

Each accepts a spec string, an :class:`Activation` or a :class:`Derivation`. The stages are
the subpackages ``bnmft.derive``, ``bnmft.numerics`` and ``bnmft.codegen``; no public name
shadows them. Names are imported on first use, so ``import bnmft`` is cheap.
"""

__version__ = "0.1.0"

_LAZY = {
    "Activation": "bnmft.derive",
    "ActivationError": "bnmft.derive",
    "Derivation": "bnmft.derive",
    "DerivedQuantity": "bnmft.derive",
    "InvalidInput": "bnmft.derive",
    "activation": "bnmft.derive.activation",
    "Number": "bnmft.numerics",
    "Analysis": "bnmft.numerics",
    "Check": "bnmft.numerics",
    "NumericalFailure": "bnmft.numerics",
    "derivation": "bnmft.pipeline",
    "analyze": "bnmft.pipeline",
    "generate": "bnmft.pipeline",
    "verify": "bnmft.pipeline",
    "verify_rigorous": "bnmft.pipeline",
    "report": "bnmft.pipeline",
    "vanilla": "bnmft.pipeline",
    "transition": "bnmft.pipeline",
    "transition_structure": "bnmft.pipeline",
    "Report": "bnmft.pipeline",
    "spectrum_derivation": "bnmft.pipeline",
    "spectrum": "bnmft.pipeline",
    "verify_spectrum": "bnmft.pipeline",
    "regularised_derivation": "bnmft.pipeline",
    "verify_regularised": "bnmft.pipeline",
    "epsilon_scan": "bnmft.pipeline",
    "simulate": "bnmft.pipeline",
    "tune": "bnmft.pipeline",

    "kernel": "bnmft.pipeline",
    "gp": "bnmft.pipeline",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bnmft' has no attribute {name!r}")


def __dir__():
    return __all__
