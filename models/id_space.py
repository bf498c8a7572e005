"""Moving a trained model between two index spaces of the same raw ids (scheduled retraining).

Every split indexes items and users afresh (``models.split``: items 1..n_items by raw id over the
catalogue, users 1..n_users over the users with an interaction), so a model trained at last
week's cutoff and this week's split may number the same item differently, and this week has
items and users last week did not. Two things need the raw ids to line up:

- ``warm_start(model, previous, ...)``: a freshly built model (seeded, initialised as its family
  initialises) takes over the previous model's weights: every parameter that is not indexed by
  item or user is copied as it is; in an item- or user-indexed parameter, the row of each id
  both index spaces know is copied from the previous model, and the rows of new ids keep the
  family's initialisation. Only parameters are copied: buffers (popularity counts, EASE's
  weights, propagated graph embeddings) are what ``fit`` recomputes from the new data.
  A parameter is item-indexed when its first dimension grows with the config's ``n_items``
  (``id_indexed``: the family's own constructor asked, on the meta device), user-indexed likewise;
  row 0 is the padding and rows after the ids (a BERT4Rec mask token) keep their place from the
  end. Any other shape difference means the configs differ, and the warm start is refused
  (``WarmStartError``).
- ``Remapped(model, ...)``: the previous model scoring in the new index space, for the gate that
  compares it with the candidate on the same fresh validation cases. History items it does not
  know are left out of its input, users it does not know are user 0 ("unknown"), and items it does
  not know score ``-inf``: ranked last, since it could not have recommended them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from models.data import HistoryBatch


class WarmStartError(ValueError):
    """The previous model cannot seed this one (different family or config)."""


@dataclass
class WarmStartReport:
    """What a warm start copied: parameters whole, and id rows kept / new per kind."""

    copied: list[str]
    item_rows_kept: int
    item_rows_new: int
    user_rows_kept: int
    user_rows_new: int

    def to_dict(self) -> dict:
        return asdict(self)


def row_map(previous_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For each index 1..len(ids) of the new space (raw ``ids``, sorted), the previous space's
    index of the same raw id, or 0 where the previous space does not have it; entry 0 is 0."""
    previous_ids = np.asarray(previous_ids, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    if len(previous_ids) == 0:
        return np.zeros(len(ids) + 1, dtype=np.int64)
    position = np.searchsorted(previous_ids, ids)
    clipped = np.minimum(position, len(previous_ids) - 1)
    found = (position < len(previous_ids)) & (previous_ids[clipped] == ids)
    return np.r_[0, np.where(found, clipped + 1, 0)].astype(np.int64)


def id_indexed(model: nn.Module) -> dict[str, str]:
    """Which parameters of ``model`` are indexed by item or by user: those whose first dimension
    grows with the config's ``n_items`` (or ``n_users``), found by building the same config with a
    larger catalogue (user set) on the meta device, so nothing is allocated."""
    from dataclasses import fields, replace

    config = model.config
    names = {f.name for f in fields(config)}
    shapes = {name: p.shape for name, p in model.named_parameters()}
    kinds: dict[str, str] = {}
    for kind, field_name, extra in (("item", "n_items", 7), ("user", "n_users", 11)):
        if field_name not in names:
            continue
        with torch.device("meta"):
            probe = type(model)(replace(config, **{field_name: getattr(config, field_name) + extra}))
        for name, param in probe.named_parameters():
            if name in shapes and param.dim() and param.shape[0] == shapes[name][0] + extra and param.shape[1:] == shapes[name][1:]:
                kinds[name] = kind
    return kinds


def warm_start(
    model: nn.Module,
    previous: nn.Module,
    *,
    items: tuple[np.ndarray, np.ndarray],
    users: tuple[np.ndarray, np.ndarray],
) -> WarmStartReport:
    """Copy ``previous``'s weights into ``model`` (see the module docstring). ``items`` and
    ``users``: (the previous split's raw ids, this split's raw ids), each sorted, position + 1
    being the index. Returns what was copied."""
    if type(model) is not type(previous):
        raise WarmStartError(f"cannot warm-start a {type(model).__name__} from a {type(previous).__name__}")
    maps = {"item": row_map(*items), "user": row_map(*users)}
    sizes = {"item": (len(items[0]), len(items[1])), "user": (len(users[0]), len(users[1]))}
    old_params = dict(previous.named_parameters())
    kinds = id_indexed(model)
    copied: list[str] = []
    kept = {"item": 0, "user": 0}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name not in old_params:
                raise WarmStartError(f"parameter {name!r} is not in the previous model: the configs differ")
            old = old_params[name].detach().to(param.device)
            kind = kinds.get(name)
            if kind is not None and old.shape[1:] != param.shape[1:]:
                raise WarmStartError(f"parameter {name!r} is {tuple(old.shape)} in the previous model and {tuple(param.shape)} now: the configs differ")
            if kind is None:
                if old.shape != param.shape:
                    raise WarmStartError(f"parameter {name!r} is {tuple(old.shape)} in the previous model and {tuple(param.shape)} now: the configs differ")
                param.copy_(old)
            else:
                mapping = torch.as_tensor(maps[kind], device=param.device)
                n = sizes[kind][1]
                rows = torch.arange(1, n + 1, device=param.device)
                source = mapping[1:]
                found = source > 0
                param[rows[found]] = old[source[found]]
                param[0] = old[0]  # padding
                extra = param.shape[0] - n - 1
                if extra:  # special rows after the ids (a mask token) keep their place from the end
                    param[n + 1 :] = old[old.shape[0] - extra :]
                kept[kind] = max(kept[kind], int(found.sum()))
            copied.append(name)
    return WarmStartReport(
        copied, kept["item"], sizes["item"][1] - kept["item"], kept["user"], sizes["user"][1] - kept["user"]
    )


class Remapped(nn.Module):
    """``model`` (trained in a previous index space) scoring in this one; see the module docstring."""

    def __init__(self, model: nn.Module, *, items: tuple[np.ndarray, np.ndarray], users: tuple[np.ndarray, np.ndarray]):
        super().__init__()
        self.model = model
        self.config = model.config
        self.history_length = model.history_length
        item_map = row_map(*items)  # new idx -> old idx (0: unknown)
        self.identity = len(items[0]) == len(items[1]) and bool((item_map == np.arange(len(item_map))).all())
        self.register_buffer("item_map", torch.as_tensor(item_map), persistent=False)
        self.register_buffer("user_map", torch.as_tensor(row_map(*users)), persistent=False)
        self.n_items = len(items[1])

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        users = self.user_map[batch.users.clamp(max=len(self.user_map) - 1)]
        users = torch.where(batch.users < len(self.user_map), users, torch.zeros_like(users))
        if self.identity:
            return self.model.score(HistoryBatch(batch.items, batch.timestamps, users))
        items = self.item_map[batch.items]
        # unknown history items are left out: pushed to the left among the padding, order kept
        keep = items > 0
        order = torch.argsort(keep.to(torch.int8), dim=1, stable=True)
        items = torch.gather(items, 1, order)
        timestamps = torch.where(torch.gather(keep, 1, order), torch.gather(batch.timestamps, 1, order), torch.zeros_like(batch.timestamps))
        old_scores = self.model.score(HistoryBatch(items, timestamps, users))
        scores = torch.full((len(items), self.n_items + 1), float("-inf"), dtype=old_scores.dtype, device=old_scores.device)
        known = self.item_map > 0
        scores[:, known] = old_scores[:, self.item_map[known]]
        return scores
