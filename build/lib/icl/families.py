"""A ladder of parameter families between ``reparam`` and ``origin`` (the book's own, [D]).

The model page §3 has three families: ``reparam`` (only the scales ``λ``/``Λ`` of the
construction are trained), ``reparam_w`` (``W`` free, ``V = I``, ``F`` of the
construction) and ``origin`` (``F, V, W`` free). Chapter 7 asks *where* between them
out-of-distribution generalisation breaks, so this module fills the gap with two more
rungs, ordered by what is free:

==============  =====================================  =============================
rung            trained                                fixed
==============  =====================================  =============================
``reparam``     ``λ`` (noiseless) / ``Λ`` (noisy)      ``W`` of the construction's
                                                       form, ``V = I``, ``F`` as in §4
``reparam_w``   all of ``W``                           ``V = I``, ``F`` as in §4
``lambda_v``    ``λ``/``Λ`` and all of ``V``           ``W`` of the construction's
                                                       form, ``F`` as in §4
``w_v``         all of ``W`` and ``V``                 ``F`` as in §4
``origin``      all of ``F``, ``V``, ``W``             nothing but the embeddings
==============  =====================================  =============================

(In the noiseless task ``F`` of §4 is ``0``, i.e. ``ξ = ξ_A``.) ``lambda_v`` frees the
*value* map while keeping the attention of the construction; ``reparam_w`` frees the
attention while keeping the value map; together they tell which of the two carries the
failure to generalise.

Every model is an :class:`icl.OneLayerTransformer` (so :func:`icl.train` and
:func:`icl.evaluate` accept it). A trainable *matrix* may start away from zero:
``init_scale = σ`` draws its entries i.i.d. ``N(0, σ²/d)`` (``σ = 1`` is the usual
"standard" scale, whose rows have unit norm on average); the scales ``λ``/``Λ`` always
start at 0.
"""

from __future__ import annotations

import torch
from torch import nn

from .construction import construction_matrices
from .model import OneLayerTransformer
from .task import RecallTask, make_generator
from .validate import check_bool, check_choice, check_real, check_seed

__all__ = ["INIT_SCALES", "LADDER", "LadderTransformer", "free_matrices", "n_trainable"]

#: the rungs, from the most constrained to the freest
LADDER = ("reparam", "reparam_w", "lambda_v", "w_v", "origin")
#: named initialisation scales ``σ`` of the trainable matrices (entries ``N(0, σ²/d)``)
INIT_SCALES = {"zero": 0.0, "small": 0.1, "standard": 1.0}

_BASE = {
    "reparam": "reparam",
    "reparam_w": "reparam_w",
    "lambda_v": "reparam",
    "w_v": "reparam_w",
    "origin": "origin",
}


def free_matrices(rung: str) -> tuple[str, ...]:
    """The matrices among ``W, V, F`` that ``rung`` trains entry by entry."""
    rung = check_choice("rung", rung, LADDER)
    return {
        "reparam": (),
        "reparam_w": ("W",),
        "lambda_v": ("V",),
        "w_v": ("W", "V"),
        "origin": ("W", "V", "F"),
    }[rung]


class LadderTransformer(OneLayerTransformer):
    """The one-layer transformer of the model page §3 with one of the rungs of :data:`LADDER`.

    Parameters
    ----------
    task : RecallTask
    rung : one of :data:`LADDER`
    attention, kappa, d_model, dtype
        As for :class:`icl.OneLayerTransformer`.
    init_scale : float
        ``σ ≥ 0``: the trainable matrices start with i.i.d. ``N(0, σ²/d)`` entries
        (``0``: at zero, the paper's initialisation). ``λ``/``Λ`` start at 0.
    seed : int
        Seeds the initial matrices (unused when ``init_scale = 0``).
    scaled : bool, optional
        For the ``reparam`` rung with softmax attention: ``True`` or ``None`` (the default)
        is the book's scaled construction (``V = Λ I``, chapter 3), ``False`` the paper's
        ``V = I``. Ignored otherwise (``reparam_w`` always has ``V = I``).
    """

    def __init__(
        self,
        task: RecallTask,
        rung: str = "origin",
        attention: str = "linear",
        kappa: int = 1,
        d_model: int = 128,
        *,
        init_scale: float = 0.0,
        seed: int = 0,
        scaled: bool | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        rung = check_choice("rung", rung, LADDER)
        if scaled is not None:
            scaled = check_bool("scaled", scaled)
        init_scale = check_real("init_scale", init_scale, low=0.0)
        seed = check_seed("seed", seed)
        super().__init__(task, attention, _BASE[rung], kappa, d_model, dtype=dtype)
        self.rung = rung
        self.init_scale = init_scale
        self.scaled = scaled
        d = self.d_model
        if rung in ("lambda_v", "w_v"):
            self.V = nn.Parameter(torch.eye(d, dtype=dtype) * 0.0)
        if init_scale > 0:
            g = make_generator(seed)
            with torch.no_grad():
                for name in free_matrices(rung):
                    p = getattr(self, name)
                    noise = torch.randn(d, d, generator=g, dtype=torch.float64)
                    p.copy_((noise * init_scale / d**0.5).to(dtype))

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The effective ``(W, V, F)``: the base family's, with ``V`` replaced when free."""
        W, V, F = super().matrices()
        if self.rung in ("lambda_v", "w_v"):
            V = self.V
        elif self.scaled is False and self.attention == "softmax" and self.rung == "reparam":
            scale = self.Lambda if self.task.noisy else self.lambdas
            W, V, F = construction_matrices(
                self.task, scale, attention="softmax", kappa=self.kappa, gamma=self.gamma,
                d_model=self.d_model, scaled=False,
            )
        return W, V, F

    def extra_repr(self) -> str:
        return f"rung={self.rung!r}, init_scale={self.init_scale}, " + super().extra_repr()


def n_trainable(model: nn.Module) -> int:
    """The number of trainable scalars of ``model``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
