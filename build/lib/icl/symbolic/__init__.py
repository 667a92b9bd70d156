"""The book's SymPy derivations (its own work, [D]): one module per chapter.

* :mod:`icl.symbolic.toolkit`: :class:`~icl.symbolic.toolkit.Step`,
  :class:`~icl.symbolic.toolkit.Derivation`, :func:`~icl.symbolic.toolkit.show` and the
  shared helpers (one :func:`~icl.symbolic.toolkit.equal` for every check);
* :mod:`icl.symbolic.bayes` (chapter 2): the Bayes-optimal law, the Bayes risk, the
  planted variant and the plug-in excess;
* :mod:`icl.symbolic.construction` (chapter 3): the construction on a tiny sequence, its
  loss for general ``N`` and the ``κ = 0`` variant.

Chapters import a module by name: ``from icl.symbolic import bayes``.
"""
