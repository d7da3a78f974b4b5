"""Limits of the input bnmft accepts, without dependencies (the command line reads them
before any command runs)."""

#: Smallest batch size: the BSB1 formulas hold for ``B >= 4`` (paper, Sec. 3.1).
MIN_BATCH_SIZE = 4
#: Largest finite batch size (integers are exact in float64 up to 2^53 ~ 9e15).
MAX_BATCH_SIZE = 10**15
#: Most batch sizes one call evaluates.
MAX_BATCH_SIZES = 1_000_000
#: Batch sizes checked when none are given.
DEFAULT_BATCH_SIZES = (4, 6, 8, 32, 1000, 10**6)

#: Largest ``--digits`` accepted (mpmath quadrature cost grows quickly beyond this).
MAX_DIGITS = 60
