"""derive: activation -> :class:`Derivation` (SymPy).

The stage's interface; later stages (``numerics``, ``codegen``) use only these names.

* :func:`activation` -- parse and analyse an activation (registered name or expression);
* :func:`derive` -- every BSB1 quantity as a :class:`DerivedQuantity` (moment form always,
  closed form where one exists, domain, provenance, parameters), gathered in a frozen,
  hashable :class:`Derivation`;
* :data:`QUANTITIES`, :data:`RELATIONS` -- the quantity names, and those defined through
  others (``xi = 1/log(rate)``, ``16 xi``);
* :class:`SphereMoment`, :class:`Point` -- the moments the forms are written in;
* :func:`numpy_function` -- a lean numpy lambdify for forms and relations;
* :func:`derive_vanilla` -- the vanilla (no batchnorm) length and correlation maps and their
  slopes (:class:`VanillaDerivation` of :class:`VanillaForm` in :class:`GaussianMoment`
  symbols and :data:`VANILLA_SYMBOLS`), :data:`VANILLA_QUANTITIES`, :data:`VANILLA_RELATIONS`
  (depth scales), :func:`vanilla_parameter` (``sigma_w``, ``sigma_b``; :class:`ParameterError`).
"""

from .activation import Activation, ActivationError, activation, symbolic_activation
from .bsb1 import QUANTITIES, RELATIONS, TRAINABLE_DEPTH_FACTOR
from .derivation import derive
from .moments import Point, SphereMoment, moments_in, moments_of
from .numpyfn import numpy_function
from .quantity import Derivation, DerivedQuantity, Provenance
from .symbols import B, BSB1_DOMAIN, x
from .vanilla import QUANTITIES as VANILLA_QUANTITIES
from .vanilla import RELATIONS as VANILLA_RELATIONS
from .vanilla import SYMBOLS as VANILLA_SYMBOLS
from .vanilla import GaussianMoment, ParameterError, VanillaDerivation, VanillaForm
from .vanilla import derive_vanilla
from .vanilla import parameter as vanilla_parameter

__all__ = [
    "Activation",
    "ActivationError",
    "B",
    "BSB1_DOMAIN",
    "Derivation",
    "DerivedQuantity",
    "GaussianMoment",
    "ParameterError",
    "Point",
    "Provenance",
    "QUANTITIES",
    "RELATIONS",
    "SphereMoment",
    "TRAINABLE_DEPTH_FACTOR",
    "VANILLA_QUANTITIES",
    "VANILLA_RELATIONS",
    "VANILLA_SYMBOLS",
    "VanillaDerivation",
    "VanillaForm",
    "activation",
    "derive",
    "derive_vanilla",
    "moments_in",
    "moments_of",
    "numpy_function",
    "symbolic_activation",
    "vanilla_parameter",
    "x",
]
