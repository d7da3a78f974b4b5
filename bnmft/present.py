"""Closed forms as text a person can read: named sub-expressions, one line each.

SymPy's 2-D pretty form of the symbolic alpha-ReLU closed forms runs to over a thousand
wrapped lines. Here each formula is printed in SymPy's linear ``str`` form (which
``sympify`` reads back), with

* sub-expressions shared by the formulas (``sympy.cse``) given names ``k1, k2, ...``
  (small ones are left inline: a name for ``B - 1`` saves nothing);
* the argument ``1/(B - 1)**2`` of the hypergeometric (Mehler-series) terms written as
  ``c**2``, ``c = -1/(B - 1)`` being the BSB1 correlation of two coordinates;
* lines still longer than :data:`WIDTH` split by naming their largest sub-expressions.

The functions take plain SymPy expressions, so that any caller can use them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

import sympy as sp

from bnmft.derive.symbols import B, c

#: Longest line the compact form aims for.
WIDTH = 100
#: Sub-expressions whose text is at most this long stay inline.
_INLINE = 20


def formula_lines(name: str, expr: sp.Expr, full: bool = False) -> list[str]:
    """``name = expr`` as lines: the formula, then its named sub-expressions (indented).

    ``full``: SymPy's 2-D pretty form instead (``name =`` on a line of its own).
    """
    if full:
        return [f"{name} =", *sp.pretty(expr, use_unicode=False).splitlines()]
    main, definitions = formula_block({name: expr})
    return [main[name], *(f"  {line}" for line in definitions)]


def formula_block(
    exprs: Mapping[str, sp.Expr], refer: Mapping[str, str] | None = None,
    defined: Iterable[str] = (),
) -> tuple[dict[str, str], list[str]]:
    """Several formulas with shared named sub-expressions.

    Returns ``({name: "name = ..."}, ["k1 = ...", ...])``; the definitions are listed in the
    order they are first met reading the formulas. ``refer`` maps a formula's name to the
    name of an earlier one it contains (``{"depth_scale": "gradient_rate"}``: printed as
    ``1/log(gradient_rate)``). ``defined``: names the caller defines itself (``"c"``: no
    line ``c = -1/(B - 1)``). Reading the lines back (``sympify``) and substituting the
    definitions gives the expressions again.
    """
    refer = dict(refer or {})
    names = list(exprs)
    taken = {str(s) for e in exprs.values() for s in sp.sympify(e).free_symbols}
    taken |= set(names)
    exprs = {n: _with_c(sp.sympify(e)) for n, e in exprs.items()}
    for n, other in refer.items():
        if n in exprs and other in exprs:
            exprs[n] = exprs[n].subs(exprs[other], sp.Symbol(other))
    if any(e.has(c) for e in exprs.values()):
        taken.add("c")

    fresh = _names(taken)
    replacements, reduced = sp.cse([exprs[n] for n in names], symbols=fresh, order="none")
    defs: dict[sp.Symbol, sp.Expr] = {}
    inline: dict[sp.Symbol, sp.Expr] = {}
    for sym, value in replacements:
        value = value.xreplace(inline)
        if len(str(value)) <= _INLINE:
            inline[sym] = value
        else:
            defs[sym] = value
    mains = {n: r.xreplace(inline) for n, r in zip(names, reduced)}
    defs = {s: v.xreplace(inline) for s, v in defs.items()}
    _split_long_lines(mains, defs, fresh)
    uses_c = any(e.has(c) for e in [*mains.values(), *defs.values()])
    order = _reading_order(mains, defs)
    if uses_c and "c" not in defined:
        defs[c] = -1 / (B - 1)
        order = [s for s in order if s is not c] + [c]
    rename = {s: sp.Symbol(f"k{i}") for i, s in enumerate(
        (s for s in order if s is not c), start=1)}
    rename = _avoid(rename, taken)
    main_lines = {n: f"{n} = {_str(mains[n].xreplace(rename))}" for n in names}
    def_lines = [f"{rename.get(s, s)} = {_str(defs[s].xreplace(rename))}" for s in order]
    return main_lines, def_lines


def _with_c(expr: sp.Expr) -> sp.Expr:
    """Hypergeometric terms as functions of ``c = -1/(B - 1)`` (their argument is c^2)."""
    return expr.replace(
        lambda e: isinstance(e, sp.hyper) and e.argument.has(B),
        lambda h: sp.hyper(h.ap, h.bq, h.argument.subs(B - 1, -1 / c)),
    )


def _names(taken: set[str]) -> Iterator[sp.Symbol]:
    """Temporary names (renamed to ``k1, k2, ...`` in reading order at the end)."""
    k = 0
    while True:
        k += 1
        if f"_t{k}" not in taken:
            yield sp.Symbol(f"_t{k}")


def _avoid(rename: dict, taken: set[str]) -> dict:
    """``k<i>`` names that clash with a symbol of the formulas get a prime-like suffix."""
    out = {}
    for s, new in rename.items():
        name = str(new)
        while name in taken:
            name += "_"
        out[s] = sp.Symbol(name)
    return out


def _str(expr: sp.Expr) -> str:
    return str(expr)


def _split_long_lines(mains: dict, defs: dict, fresh: Iterator[sp.Symbol]) -> None:
    """Name the largest sub-expression that fits on a line (or, in a sum or product of
    small terms, the second half of the terms) until every line fits."""
    stuck: set = set()
    for _ in range(1000):
        long = [(table, k) for table in (mains, defs) for k, e in table.items()
                if k not in stuck and len(_str(e)) > WIDTH]
        if not long:
            return
        table, key = long[0]
        expr = table[key]
        sym = next(fresh)
        part = _largest_fitting(expr)
        if part is not None:
            defs[sym] = part
            for tab in (mains, defs):
                for k, e in tab.items():
                    if k is not sym:
                        tab[k] = e.xreplace({part: sym})
        elif (expr.is_Add or expr.is_Mul) and len(expr.args) > 2:
            terms = list(expr.args)
            half = len(terms) // 2
            defs[sym] = expr.func(*terms[half:])
            table[key] = expr.func(*terms[:half], sym)
        else:
            stuck.add(key)


def _largest_fitting(expr: sp.Expr) -> sp.Expr | None:
    """The proper sub-expression with the longest text of at most ``WIDTH - 10`` characters
    (else the longest proper one), skipping atoms and inline-sized ones."""
    best, best_len, fallback, fallback_len = None, 0, None, 0
    for node in sp.preorder_traversal(expr):
        if node is expr or node.is_Atom or not isinstance(node, sp.Expr):
            continue
        n = len(_str(node))
        if n <= _INLINE:
            continue
        if n <= WIDTH - 10 and n > best_len:
            best, best_len = node, n
        if n > fallback_len:
            fallback, fallback_len = node, n
    return best if best is not None else fallback


def _reading_order(mains: dict, defs: dict) -> list[sp.Symbol]:
    """Definitions reachable from the formulas, in the order a reader meets them."""
    order: list[sp.Symbol] = []
    queue = [e for e in mains.values()]
    while queue:
        expr = queue.pop(0)
        for sym in _symbols_in_order(expr):
            if sym in defs and sym not in order:
                order.append(sym)
                queue.append(defs[sym])
    return order


def _symbols_in_order(expr: sp.Expr) -> list[sp.Symbol]:
    by_name = {str(s): s for s in expr.free_symbols}
    seen = [by_name[m] for m in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", _str(expr))
            if m in by_name]
    return list(dict.fromkeys(seen))
