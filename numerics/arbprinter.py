"""SymPy expressions evaluated in Arb ball arithmetic (python-flint ``arb`` / ``acb``).

:class:`ArbPrinter` is a SymPy :class:`~sympy.printing.printer.Printer` whose ``_print_*``
methods return balls instead of strings: the expression tree is walked by SymPy's own
dispatch (one method per node class), each node becomes one flint call (``arb.acos``,
``arb.gamma``, ``arb.hypgeom_2f1``, ...), and every constant enters exactly (integers,
rationals as a quotient of exact integers, floats by their binary value). Ball arithmetic
makes the result an enclosure: the exact value of the expression at the given (exact or
ball) symbol values lies in the returned ball, whatever the working precision.

Two modes:

* real (``arb``): closed forms at a batch size; a function outside its real domain gives a
  non-finite ball (never a silent complex value);
* complex (``acb``) with the ``analytic`` flag of :func:`flint.acb.integral`: branch
  functions (``sqrt``, non-integer powers, ``log``, ``acos``...) are evaluated with
  ``analytic=True`` when asked, so that a ball touching a branch cut gives a non-finite
  value and the integrator subdivides (Arb's contract for rigorous quadrature).
  Non-analytic nodes (``Abs``, ``Max``, ``Heaviside``, ``Piecewise``) are refused there:
  kinked integrands must be split into their analytic pieces first.
"""

from __future__ import annotations

import sympy as sp
from flint import acb, arb
from sympy.printing.printer import Printer


class NotEvaluable(ValueError):
    """An expression node that has no ball-arithmetic translation here."""


#: SymPy function -> name of the flint method (same name on arb and acb).
_UNARY = {
    sp.sin: "sin", sp.cos: "cos", sp.tan: "tan", sp.sinh: "sinh", sp.cosh: "cosh",
    sp.tanh: "tanh", sp.exp: "exp", sp.atan: "atan", sp.erf: "erf", sp.erfc: "erfc",
    sp.gamma: "gamma", sp.asinh: "asinh",
}
#: Functions with branch cuts: on acb they take the ``analytic`` flag.
_BRANCHED = {sp.log: "log", sp.acos: "acos", sp.asin: "asin", sp.loggamma: "lgamma"}


class ArbPrinter(Printer):
    """Translate a SymPy expression into a function of balls (see the module docstring).

    Each ``_print_*`` method returns a closure ``node(env)``, ``env = (values, analytic)``;
    ``values`` maps each symbol to a ball, ``analytic`` is the flag forwarded to branch
    functions (complex mode only). The tree is walked once by SymPy's dispatch; the
    closures are then called at every quadrature node.
    """

    printmethod = "_arb"

    def __init__(self, complex_mode: bool = False):
        super().__init__()
        self.ball = acb if complex_mode else arb
        self.complex_mode = complex_mode

    def _constant(self, make):
        value = make()
        return lambda env: value

    # -- leaves ------------------------------------------------------------------------

    def emptyPrinter(self, expr):
        raise NotEvaluable(f"no ball-arithmetic translation of {type(expr).__name__}: {expr}")

    def _print_Symbol(self, expr):
        def node(env):
            try:
                return env[0][expr]
            except KeyError:
                raise NotEvaluable(f"no value given for the symbol {expr}") from None
        return node

    _print_Dummy = _print_Symbol

    def _print_Integer(self, expr):
        return self._constant(lambda: self.ball(int(expr)))

    def _print_Rational(self, expr):
        # a quotient of exact integers: the ball contains p/q at the precision of each call
        p, q = int(expr.p), int(expr.q)
        return lambda env: self.ball(p) / q

    def _print_Float(self, expr):
        # the binary value SymPy holds, exactly: mantissa * 2^exponent
        sign, man, exp, _ = expr._mpf_
        return self._constant(lambda: self.ball((-1) ** sign * int(man)) * self.ball(2) ** int(exp))

    def _print_Pi(self, expr):
        return lambda env: self.ball.pi()

    def _print_Exp1(self, expr):
        return lambda env: self.ball(1).exp()

    def _print_ImaginaryUnit(self, expr):
        if not self.complex_mode:
            raise NotEvaluable("the imaginary unit in a real evaluation")
        return self._constant(lambda: acb(0, 1))

    def _print_Infinity(self, expr):
        raise NotEvaluable("an infinite value")

    _print_NegativeInfinity = _print_Infinity
    _print_ComplexInfinity = _print_Infinity
    _print_NaN = _print_Infinity

    # -- arithmetic --------------------------------------------------------------------

    def _print_Add(self, expr):
        terms = [self._print(t) for t in expr.args]

        def node(env):
            total = terms[0](env)
            for t in terms[1:]:
                total = total + t(env)
            return total
        return node

    def _print_Mul(self, expr):
        factors = [self._print(f) for f in expr.args]

        def node(env):
            prod = factors[0](env)
            for f in factors[1:]:
                prod = prod * f(env)
            return prod
        return node

    def _print_Pow(self, expr):
        base, exp = expr.args
        b = self._print(base)
        if exp.is_Integer:
            n = int(exp)
            if n >= 0:
                return lambda env: b(env) ** n
            return lambda env: 1 / b(env) ** (-n)
        if exp.is_Rational and exp.q == 2:
            # b^(p/2) = sqrt(b)^p: exact algebra, the branch cut of sqrt only
            p = int(exp.p)
            if p > 0:
                return lambda env: self._sqrt(b(env), env) ** p
            return lambda env: 1 / self._sqrt(b(env), env) ** (-p)
        e = self._print(exp)
        if self.complex_mode:
            return lambda env: b(env).pow(e(env), analytic=env[1])

        def real_power(env):
            bb = b(env)
            if not bb > 0:  # a real power of a ball that may reach b <= 0: undefined here
                return arb("nan")
            return bb ** e(env)
        return real_power

    def _sqrt(self, b, env):
        if self.complex_mode:
            return b.sqrt(analytic=env[1])
        return b.sqrt()  # NaN ball where b may be negative

    # -- functions ---------------------------------------------------------------------

    def _print_Function(self, expr):
        fn = expr.func
        args = [self._print(a) for a in expr.args]
        if fn in _UNARY and len(args) == 1:
            name = _UNARY[fn]
            a0 = args[0]
            return lambda env: getattr(a0(env), name)()
        if fn in _BRANCHED and len(args) == 1:
            name, a0 = _BRANCHED[fn], args[0]
            if not self.complex_mode:
                return lambda env: getattr(a0(env), name)()
            if fn is sp.log:
                return lambda env: a0(env).log(analytic=env[1])

            def branched(env):
                # acb.acos/asin/lgamma take no flag: refuse balls that could touch the cut
                arg = a0(env)
                if env[1]:
                    return _checked_branch(fn, arg, getattr(arg, name))
                return getattr(arg, name)()
            return branched
        raise NotEvaluable(f"no ball-arithmetic translation of the function {fn}")

    def _print_hyper(self, expr):
        ap = [self._print(a) for a in expr.ap]
        bq = [self._print(b) for b in expr.bq]
        z = self._print(expr.argument)
        if len(ap) == 2 and len(bq) == 1:
            return lambda env: z(env).hypgeom_2f1(ap[0](env), ap[1](env), bq[0](env))
        return lambda env: z(env).hypgeom([a(env) for a in ap], [b(env) for b in bq])

    def _print_Abs(self, expr):
        if self.complex_mode:
            raise NotEvaluable("|x| is not analytic: split the integrand at its kinks")
        a0 = self._print(expr.args[0])
        return lambda env: abs(a0(env))

    def _refuse_kinked(self, expr):
        raise NotEvaluable(f"{type(expr).__name__} is not analytic: split at its kinks first")

    _print_Max = _refuse_kinked
    _print_Min = _refuse_kinked
    _print_Heaviside = _refuse_kinked
    _print_Piecewise = _refuse_kinked
    _print_sign = _refuse_kinked


def _checked_branch(fn, arg: acb, method):
    """``acos``/``asin`` are analytic off ``(-oo, -1] u [1, oo)``, ``loggamma`` off the
    non-positive reals; a ball that may touch the cut gives a non-finite ball."""
    re, im = arg.real, arg.imag
    if fn is sp.loggamma:
        touches = not (re > 0 or im > 0 or im < 0)
    else:
        touches = not (abs(re) < 1 or im > 0 or im < 0)
    return acb("nan") if touches else method()


def ball_function(expr: sp.Expr, symbols, complex_mode: bool = False):
    """``expr`` as ``fn(*balls, analytic=False)`` of the ``symbols`` (see
    :class:`ArbPrinter`); the precision is flint's at each call."""
    node = ArbPrinter(complex_mode)._print(sp.sympify(expr))
    symbols = tuple(symbols)

    def fn(*args, analytic: bool = False):
        values = {s: _as_ball(a, complex_mode) for s, a in zip(symbols, args)}
        return node((values, analytic))
    return fn


def _as_ball(value, complex_mode: bool):
    """A ball as is; an int exactly; anything SymPy reads (Rational, '7/3') through the
    printer, so that it is enclosed exactly rather than rounded through a float."""
    if isinstance(value, (arb, acb)):
        return value
    if isinstance(value, int):
        return (acb if complex_mode else arb)(value)
    return ArbPrinter(complex_mode)._print(sp.sympify(value))((({}, False)))


def evaluate(expr: sp.Expr, values=None, complex_mode: bool = False,
             analytic: bool = False):
    """``expr`` as a ball at the symbol ``values`` (numbers are converted exactly)."""
    values = dict(values or {})
    syms = tuple(values)
    return ball_function(expr, syms, complex_mode)(*(values[s] for s in syms), analytic=analytic)
