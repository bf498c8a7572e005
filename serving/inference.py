"""A traced ``score`` for one request at a time: the serving path of the attention families.

A served request is one user's history. For SASRec, BERT4Rec, TAT-TV, GraphSAGE and GNN-TV,
``score`` on it is a few hundred small tensor operations (tens of microseconds of arithmetic
each at most), and Python's per-operation dispatch — module calls, argument checks, shape
bookkeeping — costs as much as the arithmetic: TAT-TV's ``score`` on a 10-item history took
0.78 ms eagerly and 0.32 ms traced on this machine, SASRec's 0.30 and 0.11 ms.

``single_row_scorer(model)`` records ``model.score`` on one example history with
``torch.jit.trace``, freezes the record (``torch.jit.freeze``: the weights become constants, so
the shape bookkeeping and the eval-mode no-ops around them — dropout, ``.to`` of a tensor already
of that type, slices of the whole — are folded away: TAT-TV's record has half the nodes, and a
200-item request takes ~10% less) and returns it as ``scorer(items, timestamps)`` for a batch of
**one row without padding**. Weights changed after it is made reach it only in part (what
freezing folded keeps the old values): make it after loading the weights, as the pyfunc does.

A trace replays the operations of its example; the branches that depend on data in these
families' ``score`` (padding present or not, a batch of one or more, an empty history) are all
fixed for such a row, and nothing else may be sent to it (the pyfunc
uses it only for one history with at least one known item; anything else goes to ``score``).
Before it is returned the trace is checked against ``score`` on histories of several lengths,
up to the model's ``history_length``; a family whose trace fails or differs gets None (use
``score``) and a warning.

Families opt in with a class attribute ``single_row_trace = True``: nothing is traced for the
others (their ``score`` is one or two operations already, or not traceable, such as EASE's
sparse product). An ensemble blends with its members' traced scorers where they have one.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from models.data import HistoryBatch

SingleRowScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (items [1, L], timestamps [1, L]) -> [1, n_items + 1]
CHECK_LENGTHS = (1, 2, 5, 17, 64, 200, 300)  # cut to the model's history_length
TRACE_LENGTH = 8
RTOL, ATOL = 1e-5, 1e-5  # the same operations; only a kernel choosing another summation order may differ


class _ScoreOneRow(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        users = torch.zeros(1, dtype=torch.long, device=items.device)
        return self.model.score(HistoryBatch(items=items, timestamps=timestamps, users=users))


def example_history(length: int, n_items: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded history of ``length`` distinct-ish items in 1..n_items with increasing unix times
    (one to three days apart, from 2001): (items [1, L], timestamps [1, L])."""
    generator = torch.Generator().manual_seed(seed * 1_000 + length)
    items = torch.randint(1, n_items + 1, (1, length), generator=generator)
    gaps = torch.randint(86_400, 3 * 86_400, (1, length), generator=generator)
    return items, 978_300_000 + gaps.cumsum(1)


def single_row_scorer(model: nn.Module, n_items: int) -> SingleRowScorer | None:
    """``model.score`` traced for one unpadded history (see the module docstring), or None when
    the family does not opt in, or its trace fails or gives other scores than ``score``.
    ``model`` must be in eval mode; ``n_items`` is its catalogue size. An ensemble is not traced
    itself: it gets a scorer that blends as ``Ensemble.score`` does, calling the traced scorers
    of the members that have one (None when none has)."""
    from models.ensemble import Ensemble

    if isinstance(model, Ensemble):
        traced = {name: single_row_scorer(member, n_items) for name, member in model.members.items()}
        traced = {name: scorer for name, scorer in traced.items() if scorer is not None}
        if not traced:
            return None
        users = torch.zeros(1, dtype=torch.long)
        return lambda items, timestamps: model.score(HistoryBatch(items, timestamps, users.to(items.device)), traced)
    if not getattr(model, "single_row_trace", False):
        return None
    wrapper = _ScoreOneRow(model).eval()
    longest = model.history_length or max(CHECK_LENGTHS)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about the data-dependent branches described above
            traced = torch.jit.trace(wrapper, example_history(min(TRACE_LENGTH, longest), n_items), check_trace=False)
            traced = torch.jit.freeze(traced)
            for length in sorted({min(length, longest) for length in CHECK_LENGTHS}):
                example = example_history(length, n_items, seed=1)
                if not torch.allclose(traced(*example), wrapper(*example), rtol=RTOL, atol=ATOL):
                    raise ValueError(f"the trace scores a history of {length} items differently from score")
    except Exception as error:  # noqa: BLE001 - any failure means: serve with score
        warnings.warn(f"{type(model).__name__}: no traced single-row scorer ({error}); serving uses score", stacklevel=2)
        return None
    return traced
