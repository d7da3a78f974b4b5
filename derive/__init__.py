"""derive: activation -> :class:`Derivation` (SymPy).

The stage's interface; later stages (``numerics``, ``codegen``) use only these names.

* :func:`parse_activation` -- parse and analyse an activation (registered name or
  expression; the function ``activation.activation``, renamed here so that it does not
  hide the submodule ``bnmft.derive.activation``);
* :func:`derive` -- every BSB1 quantity as a :class:`DerivedQuantity` (moment form always,
  closed form where one exists, domain, provenance, parameters), gathered in a frozen,
  hashable :class:`Derivation`;
* :data:`QUANTITIES`, :data:`RELATIONS`, :func:`compose` -- the quantity names, and those
  defined through others (``xi = 1/log(rate)``, ``16 xi``);
* :func:`moment_forms` -- the activation-independent moment forms (what codegen ships);
* :func:`derive_spectrum` -- the forward and backward spectra at the BSB1 point as a
  frozen :class:`Spectrum` of :class:`SpectralEntry` objects (space, dimension, eigenvalue
  as a :class:`DerivedQuantity` of kind ``"eigenvalue"``), from ultrasymmetric operators
  (:class:`UltrasymmetricOperator`);
* :func:`derive_regularised` -- batchnorm with ``eps > 0`` and weight scale ``sigma_w``
  (:data:`EPS`, :data:`SIGMA_W`): the scale equation of the fixed point, ``q*``, ``c*`` and
  both spectra in :class:`RadialMoment` symbols (closed forms in :class:`TricomiU` for
  positive-homogeneous ``phi``), gathered in a frozen :class:`RegularisedDerivation`;
* :class:`SphereMoment`, :class:`Point` -- the moments the forms are written in;
* :func:`numpy_function` -- a lean numpy lambdify for forms and relations;
* :class:`InvalidInput`, :func:`check_batch_sizes` -- refused input, one documented
  ``ValueError`` with a one-line message.
* :func:`derive_vanilla` -- the vanilla (no batchnorm) length and correlation maps and their
  slopes (:class:`VanillaDerivation` of :class:`VanillaForm` in :class:`GaussianMoment`
  symbols and :data:`VANILLA_SYMBOLS`), :data:`VANILLA_QUANTITIES`, :data:`VANILLA_RELATIONS`
  (depth scales), :func:`vanilla_parameter` (``sigma_w``, ``sigma_b``; :class:`ParameterError`).
"""

from .activation import Activation, ActivationError, check_defined, symbolic_activation
from .activation import activation as parse_activation
from .bsb1 import QUANTITIES, RATE, RELATIONS, TRAINABLE_DEPTH_FACTOR, compose, moment_forms
from .derivation import derive
from .epsilon import EPS, SIGMA_W, RadialMoment, RegularisedDerivation, TricomiU
from .epsilon import derive_regularised
from .errors import InvalidInput, check_batch_sizes
from .moments import Point, SphereMoment, moments_in, moments_of
from .numpyfn import numpy_function
from .quantity import Derivation, DerivedQuantity, Provenance, SpectralEntry, Spectrum
from .spectrum import derive_spectrum
from .symbols import B, BSB1_DOMAIN, x
from .ultrasymmetric import UltrasymmetricOperator
from .vanilla import QUANTITIES as VANILLA_QUANTITIES
from .vanilla import RELATIONS as VANILLA_RELATIONS
from .vanilla import SYMBOLS as VANILLA_SYMBOLS
from .vanilla import GaussianMoment, ParameterError, VanillaDerivation, VanillaForm
from .vanilla import derive_vanilla
from .vanilla import parameter as vanilla_parameter

__all__ = [
    "EPS",
    "RadialMoment",
    "RegularisedDerivation",
    "SIGMA_W",
    "TricomiU",
    "derive_regularised",
    "Activation",
    "ActivationError",
    "B",
    "BSB1_DOMAIN",
    "Derivation",
    "DerivedQuantity",
    "InvalidInput",
    "GaussianMoment",
    "ParameterError",
    "Point",
    "Provenance",
    "QUANTITIES",
    "RATE",
    "RELATIONS",
    "SpectralEntry",
    "Spectrum",
    "SphereMoment",
    "TRAINABLE_DEPTH_FACTOR",
    "check_batch_sizes",
    "check_defined",
    "compose",
    "derive",
    "moment_forms",
    "UltrasymmetricOperator",
    "derive_spectrum",
    "VANILLA_QUANTITIES",
    "VANILLA_RELATIONS",
    "VANILLA_SYMBOLS",
    "VanillaDerivation",
    "VanillaForm",
    "derive_vanilla",
    "moments_in",
    "moments_of",
    "numpy_function",
    "parse_activation",
    "symbolic_activation",
    "vanilla_parameter",
    "x",
]
