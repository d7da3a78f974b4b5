"""derive: activation -> :class:`Derivation` (SymPy).

The stage's interface; later stages (``numerics``, ``codegen``) use only these names.

* :func:`activation` -- parse and analyse an activation (registered name or expression);
* :func:`derive` -- every BSB1 quantity as a :class:`DerivedQuantity` (moment form always,
  closed form where one exists, domain, provenance, parameters), gathered in a frozen,
  hashable :class:`Derivation`;
* :data:`QUANTITIES`, :data:`RELATIONS` -- the quantity names, and those defined through
  others (``xi = 1/log(rate)``, ``16 xi``);
* :func:`derive_spectrum` -- the forward and backward spectra at the BSB1 point as a
  frozen :class:`Spectrum` of :class:`SpectralEntry` objects (space, dimension, eigenvalue
  as a :class:`DerivedQuantity` of kind ``"eigenvalue"``), from ultrasymmetric operators
  (:class:`UltrasymmetricOperator`);
* :class:`SphereMoment`, :class:`Point` -- the moments the forms are written in;
* :func:`numpy_function` -- a lean numpy lambdify for forms and relations.
"""

from .activation import Activation, ActivationError, activation, symbolic_activation
from .bsb1 import QUANTITIES, RELATIONS, TRAINABLE_DEPTH_FACTOR
from .derivation import derive
from .moments import Point, SphereMoment, moments_in, moments_of
from .numpyfn import numpy_function
from .quantity import Derivation, DerivedQuantity, Provenance, SpectralEntry, Spectrum
from .spectrum import derive_spectrum
from .symbols import B, BSB1_DOMAIN, x
from .ultrasymmetric import UltrasymmetricOperator

__all__ = [
    "Activation",
    "ActivationError",
    "B",
    "BSB1_DOMAIN",
    "Derivation",
    "DerivedQuantity",
    "Point",
    "Provenance",
    "QUANTITIES",
    "RELATIONS",
    "SpectralEntry",
    "Spectrum",
    "SphereMoment",
    "TRAINABLE_DEPTH_FACTOR",
    "UltrasymmetricOperator",
    "activation",
    "derive",
    "derive_spectrum",
    "moments_in",
    "moments_of",
    "numpy_function",
    "symbolic_activation",
    "x",
]
