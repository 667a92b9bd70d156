"""The derivation toolkit shared by the book's SymPy chapters (the book's own work, [D]).

Every derivation is a :class:`Derivation`: an ordered list of named :class:`Step`
objects, each holding SymPy expressions (equations, matrices, values), an optional
display form that reads better (checked equal to the computed one with :func:`equal`)
and a one-line explanation. A notebook renders it (:func:`show`); code picks any
intermediate result by name (``derivation["p_star"]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sympy as sp

__all__ = [
    "ALPHA",
    "Derivation",
    "Step",
    "add",
    "check_display",
    "equal",
    "make_step",
    "mul",
    "show",
]

#: The noise level ``α`` (a positive symbol; ``α < 1`` is used where it matters).
ALPHA = sp.Symbol("alpha", positive=True)


@dataclass(frozen=True)
class Step:
    """One step of a derivation.

    Attributes
    ----------
    name : str
        Short key (``"lagrangian"``, ``"p_star"``, …) used to look the step up.
    title : str
        One sentence saying what the step does (Markdown, may contain ``$…$``).
    exprs : tuple
        The step's content as computed: expressions, ``Eq`` objects, matrices.
    lhs : tuple of str
        LaTeX of a left-hand side for each expression (``""``: none).
    display : tuple
        A form of each expression that reads better (``1-α`` rather than ``-(α-1)``),
        checked equal to the computed one when the step is built; ``None``: use
        ``exprs``.
    """

    name: str
    title: str
    exprs: tuple[sp.Basic, ...]
    lhs: tuple[str, ...] = ()
    display: tuple[sp.Basic | None, ...] = ()

    @property
    def expr(self) -> sp.Basic:
        """The single expression of the step (raises if the step holds several)."""
        if len(self.exprs) != 1:
            raise ValueError(f"step {self.name!r} holds {len(self.exprs)} expressions; use .exprs")
        return self.exprs[0]

    def latex(self, sep: str = r",\qquad ") -> str:
        """LaTeX of the step's expressions (display forms), joined by ``sep``."""
        parts = []
        for i, e in enumerate(self.exprs):
            shown = self.display[i] if i < len(self.display) and self.display[i] is not None else e
            body = sp.latex(shown, order="none")
            left = self.lhs[i] if i < len(self.lhs) else ""
            if left and not left.rstrip().endswith(("=", r"\approx", r"\le", r"\ge")):
                left += " ="
            parts.append(f"{left} {body}" if left else body)
        return sep.join(parts)


def equal(x: sp.Basic, y: sp.Basic) -> bool:
    """``x == y`` up to ``simplify``: matrices entrywise, equations as ``lhs - rhs``.

    The difference is simplified with its logarithms expanded, and, if that does not
    reach 0, once more with the arguments of the logarithms factored first (which the
    construction's losses need; the Bayes-risk identities need the plain form).
    """
    if isinstance(x, sp.MatrixBase) or isinstance(y, sp.MatrixBase):
        x, y = sp.Matrix(x), sp.Matrix(y)
        return x.shape == y.shape and all(equal(u, v) for u, v in zip(x, y, strict=True))
    if isinstance(x, sp.Equality) or isinstance(y, sp.Equality):
        return equal(x.lhs - x.rhs, y.lhs - y.rhs)
    diff = sp.sympify(x).doit() - sp.sympify(y).doit()
    if sp.simplify(sp.expand_log(diff, force=True)) == 0:
        return True
    factored = diff.replace(sp.log, lambda t: sp.log(sp.factor(t)))
    return sp.simplify(sp.expand_log(factored, force=True)) == 0


def check_display(shown: sp.Expr, value: sp.Expr) -> sp.Expr:
    """``shown`` if it equals ``value`` (a display form must never change a result)."""
    if not equal(shown.doit(), value):  # pragma: no cover - a bug in a derivation
        raise RuntimeError(f"display form {shown} differs from {value}")
    return shown


def make_step(name: str, title: str, *items) -> Step:
    """Build a :class:`Step` from items ``expr``, ``(lhs, expr)`` or ``(lhs, expr, display)``.

    A display form must equal its expression (checked with ``simplify``).
    """
    exprs, lhs, display = [], [], []
    for item in items:
        if not isinstance(item, tuple):
            item = ("", item)
        left, e, *rest = item
        shown = rest[0] if rest else None
        if shown is not None and not equal(shown, e):  # pragma: no cover - a bug here
            raise RuntimeError(f"the display form of step {name!r} differs from its value")
        exprs.append(e)
        lhs.append(left)
        display.append(shown)
    return Step(name, title, tuple(exprs), tuple(lhs), tuple(display))


def mul(*args: sp.Expr) -> sp.Expr:
    """Unevaluated product (keeps ``-(1-α) log p`` as written)."""
    return sp.Mul(*args, evaluate=False)


def add(*args: sp.Expr) -> sp.Expr:
    """Unevaluated sum (terms printed in the given order)."""
    return sp.Add(*args, evaluate=False)


@dataclass(frozen=True)
class Derivation:
    """An ordered sequence of :class:`Step` objects plus the named results.

    ``results`` maps names (``"p_star"``, ``"risk"``, …) to the SymPy objects a caller
    needs; ``derivation[name]`` returns a result if one has that name, else the step.
    """

    title: str
    steps: tuple[Step, ...]
    results: dict[str, object] = field(default_factory=dict)

    def __getitem__(self, name: str):
        if name in self.results:
            return self.results[name]
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step or result named {name!r}; steps: {self.names}")

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def names(self) -> list[str]:
        """The step names, in order."""
        return [s.name for s in self.steps]

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step named {name!r}; steps: {self.names}")

    def to_markdown(self) -> str:
        """The whole derivation as Markdown: numbered titles, each followed by ``$$…$$``."""
        parts = [f"**{self.title}**", ""]
        for i, s in enumerate(self.steps, 1):
            parts += [f"{i}. {s.title}", "", f"$$ {s.latex()} $$", ""]
        return "\n".join(parts)


def show(derivation: Derivation) -> None:
    """Render a derivation in Jupyter: each step's title (Markdown) then its LaTeX (Math)."""
    from IPython.display import Markdown, Math, display

    display(Markdown(f"**{derivation.title}** *(the book's derivation)*"))
    for i, s in enumerate(derivation.steps, 1):
        display(Markdown(f"{i}. {s.title}"))
        display(Math(s.latex()))

