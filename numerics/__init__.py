"""numerics: :class:`~bnmft.derive.Derivation` -> numbers with honest digits, and their
verification against independent references.

The stage's interface:

* :func:`analyze` -- every quantity of a derivation at given batch sizes (:class:`Analysis`
  of :class:`Number` objects: value at its computed precision, digits achieved, route);
  closed forms at ``digits <= FLOAT_DIGITS`` through float64 kernels over all batch sizes
  at once (``float_kernels=False``: mpmath at each);
* :func:`verify` -- every route against the mpmath sphere-quadrature reference
  (:class:`Check` objects), :func:`unavailable_routes` for those that cannot run;
  :func:`verify_spectrum` the same per eigenvalue of a spectrum (and the brute-force
  operators);
* :func:`analyze_spectrum` -- the forward and backward spectra of a
  :class:`~bnmft.derive.Spectrum` (:class:`SpectrumAnalysis`: space, dimension, Number);
* :func:`numbers_from_moments` -- quantities from sphere moments computed by any route;
* :func:`decimal_string`, :data:`FLOAT_DIGITS`, :data:`MAX_DIGITS` -- printing and limits;
* :class:`NumericalFailure` -- a route that did not converge;
* :func:`analyze_vanilla` -- fixed points, slopes and depth scales of a vanilla network
  (:class:`VanillaAnalysis`);
* :func:`alpha_transitions`, :func:`parameter_transitions` -- where the BSB1 point stops
  attracting (:class:`Transition`; :class:`NoSignChange` for a bracket without one), and
  :func:`covariance_structure` -- the blocks the iterated covariance map settles into
  (:class:`Structure`).

* :func:`analyze_regularised` -- batchnorm with ``eps > 0`` and ``sigma_w``: the fixed
  point of the scale equation, ``q*``, ``c*`` and both spectra (:class:`RegularisedAnalysis`;
  a dead signal is the regime ``"no nonzero fixed point"``), :func:`check_parameters`;
  :func:`scale_number` (``q*`` times ``sigma_w^2`` at ``eps = 0``); :func:`epsilon_scan`
  (:class:`EpsilonScan`: the eps where the signal dies and where gradients stop exploding).

It takes derivations from ``bnmft.derive`` and never derives on its own.
"""

from .evaluate import Analysis, NumericalFailure, analyze, closed_number, numbers_from_moments
from .spectrum import SpectrumAnalysis, SpectrumNumber, analyze_spectrum
from .precision import FLOAT_DIGITS, MAX_DIGITS, Number, agreeing_digits, decimal_string
from .precision import scale_number
from .epsilon import NoFixedPoint, RegularisedAnalysis, analyze_regularised, check_parameters
from .epsilon import EpsilonScan, epsilon_scan
from .transition import ALPHA_BRACKET, PARAMETER_BRACKETS, NoSignChange, Structure, Transition
from .transition import alpha_transitions, covariance_structure, parameter_transitions
from .vanilla import VanillaAnalysis, analyze_vanilla
from .verification import DEFAULT_BATCH_SIZES, Check, unavailable_routes, verify, verify_spectrum
from .verification import verify_regularised

__all__ = [
    "ALPHA_BRACKET",
    "NoFixedPoint",
    "EpsilonScan",
    "epsilon_scan",
    "RegularisedAnalysis",
    "analyze_regularised",
    "check_parameters",
    "scale_number",
    "Analysis",
    "Check",
    "DEFAULT_BATCH_SIZES",
    "FLOAT_DIGITS",
    "MAX_DIGITS",
    "Number",
    "NoSignChange",
    "NumericalFailure",
    "SpectrumAnalysis",
    "SpectrumNumber",
    "PARAMETER_BRACKETS",
    "Structure",
    "Transition",
    "VanillaAnalysis",
    "agreeing_digits",
    "alpha_transitions",
    "analyze",
    "analyze_spectrum",
    "analyze_vanilla",
    "closed_number",
    "covariance_structure",
    "decimal_string",
    "numbers_from_moments",
    "parameter_transitions",
    "unavailable_routes",
    "verify",
    "verify_spectrum",
    "verify_regularised",
]
