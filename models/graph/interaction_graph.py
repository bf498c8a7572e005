"""The interaction graph side input: who interacted with what in the training part, as a graph.

Two builders, both plain functions over the split tables (no Flyte, no MLflow):

- ``build_interaction_graph``: the bipartite user–item graph that LightGCN-style families
  propagate over, in one homogeneous node space (see ``InteractionGraph``).
- ``build_hetero_graph``: a ``torch_geometric`` ``HeteroData`` with users, items and the item
  metadata (genres, cast, creators, networks) as node types, for heterogeneous GNN families.

Only the training part goes in: validation and test targets never become edges.

And what the graph families share around it: reading the side input (``graph_input``), checking
a model was sized for the split (``check_split_size``), a batch's users as graph rows
(``known_user_rows``), a batch's histories as edges into new user nodes (``history_edges``), one
epoch of training pairs (``shuffled_pairs``), the pairs trained as a cold user is scored
(``first_items``, ``with_cold_users``), a popularity prior for new users' short histories
(``item_log_counts``, ``with_short_history_prior``) and one user's GATv2 message without PyG's
message-passing machinery (``distinct_history``, ``attention_into_one_node``: the serving path).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from models.data import PAD

# Item metadata columns that become node types of the heterogeneous graph:
# column -> (node type, item->value relation). Values are "|"-separated; "" means none.
ITEM_ATTRIBUTE_NODES: dict[str, tuple[str, str]] = {
    "genres": ("genre", "has_genre"),
    "cast": ("cast", "has_cast"),
    "creator": ("creator", "by"),
    "network": ("network", "on"),
}
VALUE_SEPARATOR = "|"


@dataclass
class InteractionGraph:
    """The bipartite user–item graph of the training part, undirected, without repeated pairs.

    Node space (one homogeneous id range, ``num_nodes = n_users + n_items + 2``):
    user ``u`` is node ``u`` (0..n_users; node 0, the unknown user, has no edges) and item ``i``
    is node ``n_users + 1 + i`` (item 0, the padding, has no edges either). So a model can keep
    ``cat([user_table[0..n_users], item_table[0..n_items]])`` as its node features.

    edge_index: LongTensor[2, 2P] for P distinct (user, item) pairs: the first P columns are
        user -> item, sorted by (user, item); the next P are the same pairs item -> user.
    seconds: wall time of the build.
    """

    edge_index: torch.Tensor
    n_users: int
    n_items: int
    seconds: float = 0.0

    @property
    def num_nodes(self) -> int:
        return self.n_users + self.n_items + 2

    @property
    def item_offset(self) -> int:
        """Node id of item 0: item ``i`` is node ``item_offset + i``."""
        return self.n_users + 1

    @property
    def n_pairs(self) -> int:
        return self.edge_index.shape[1] // 2

    def user_item_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_idx, item_idx) LongTensors[P] of the distinct training pairs."""
        forward = self.edge_index[:, : self.n_pairs]
        return forward[0], forward[1] - self.item_offset

    def save(self, path: str | Path) -> None:
        torch.save(
            {"edge_index": self.edge_index.contiguous(), "n_users": self.n_users,
             "n_items": self.n_items, "seconds": float(self.seconds)},
            path,
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> "InteractionGraph":
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return cls(saved["edge_index"], int(saved["n_users"]), int(saved["n_items"]), float(saved["seconds"]))


def distinct_pairs(train: pd.DataFrame, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (user_idx, item_idx) pairs of ``train``, sorted by user then item.

    Raises ValueError for an index outside users 1..n_users or items 1..n_items.
    """
    users = train["user_idx"].to_numpy(np.int64, copy=True)
    items = train["item_idx"].to_numpy(np.int64, copy=True)
    if len(users) and (users.min() < 1 or users.max() > n_users):
        raise ValueError(f"user_idx must lie in 1..{n_users}, got {users.min()}..{users.max()}")
    if len(items) and (items.min() < 1 or items.max() > n_items):
        raise ValueError(f"item_idx must lie in 1..{n_items}, got {items.min()}..{items.max()}")
    keys = np.sort(users * (n_items + 1) + items)  # one int64 key per pair, in (user, item) order
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]  # dedup of sorted keys (np.unique is ~100x slower on numpy 2.4)
    keys = keys[first]
    return keys // (n_items + 1), keys % (n_items + 1)


def build_interaction_graph(train: pd.DataFrame, n_users: int, n_items: int) -> InteractionGraph:
    """The user–item graph of the training part (columns user_idx, item_idx), both directions.

    A user who rated an item several times gets one edge pair, not several.
    """
    start = time.perf_counter()
    users, items = distinct_pairs(train, n_users, n_items)
    user_nodes = torch.from_numpy(users)
    item_nodes = torch.from_numpy(items) + (n_users + 1)
    edge_index = torch.stack(
        [torch.cat([user_nodes, item_nodes]), torch.cat([item_nodes, user_nodes])]
    )
    return InteractionGraph(edge_index, n_users, n_items, time.perf_counter() - start)


def build_hetero_graph(train: pd.DataFrame, items: pd.DataFrame, n_users: int, n_items: int):
    """A ``torch_geometric.data.HeteroData`` of users, items and the item metadata.

    Node types: ``user`` (n_users + 1 nodes, node = user_idx; 0 has no edges), ``item``
    (n_items + 1 nodes, node = item_idx; 0 has no edges) and, for each of the columns
    genres / cast / creator / network that ``items`` has with at least one value, ``genre`` /
    ``cast`` / ``creator`` / ``network`` (one node per distinct value, sorted; the values are
    in ``data[node_type].names``). Values are "|"-separated; "" or missing means none.

    Edge types (each with its reverse, named ``rev_<relation>`` as ``ToUndirected`` would):
    (user, rates, item) from the distinct training pairs, (item, has_genre, genre),
    (item, has_cast, cast), (item, by, creator), (item, on, network).
    """
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["user"].num_nodes = n_users + 1
    data["item"].num_nodes = n_items + 1
    users, rated = distinct_pairs(train, n_users, n_items)
    _add_both_ways(data, "user", "rates", "item", users, rated)

    for column, (node_type, relation) in ITEM_ATTRIBUTE_NODES.items():
        if column not in items.columns:
            continue
        item_idx, values = _item_values(items, column)
        if not len(values):
            continue
        names, value_idx = np.unique(values, return_inverse=True)
        data[node_type].num_nodes = len(names)
        data[node_type].names = names.tolist()
        _add_both_ways(data, "item", relation, node_type, item_idx, value_idx.astype(np.int64))
    return data


def _item_values(items: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (item_idx, value) pairs of a "|"-separated column, empty values dropped."""
    split = items[column].astype("string").fillna("").str.split(VALUE_SEPARATOR)
    pairs = pd.DataFrame({"item_idx": items["item_idx"].to_numpy(np.int64), "value": split})
    pairs = pairs.explode("value")
    pairs["value"] = pairs["value"].astype("string").fillna("").str.strip()
    pairs = pairs[pairs["value"] != ""].drop_duplicates()
    return pairs["item_idx"].to_numpy(np.int64, copy=True), pairs["value"].to_numpy(str)


def _add_both_ways(data, src: str, relation: str, dst: str, src_idx: np.ndarray, dst_idx: np.ndarray) -> None:
    forward = torch.stack([torch.from_numpy(src_idx), torch.from_numpy(dst_idx)])
    data[src, relation, dst].edge_index = forward
    data[dst, f"rev_{relation}", src].edge_index = forward.flip(0)


# ----- what the graph families share ------------------------------------------------------------


def graph_input(side_inputs: dict[str, Any] | None, data) -> InteractionGraph:
    """The ``interaction_graph`` side input (an InteractionGraph or a path to one saved), or the
    graph of ``data.train`` when it is absent."""
    graph = (side_inputs or {}).get("interaction_graph")
    if graph is None:
        return build_interaction_graph(data.train, data.n_users, data.n_items)
    return graph if isinstance(graph, InteractionGraph) else InteractionGraph.load(graph)


def check_split_size(data, config) -> None:
    """Raise unless ``config`` (n_users, n_items) was built for ``data``'s split."""
    if data.n_users != config.n_users or data.n_items != config.n_items:
        raise ValueError(
            f"data has {data.n_users} users and {data.n_items} items, the config "
            f"{config.n_users} and {config.n_items} (build it with n_users=data.n_users)"
        )


def known_user_rows(users: torch.Tensor, has_edges: torch.Tensor) -> torch.Tensor:
    """Each user's row where they had training edges, 0 (the unknown user) otherwise: cold
    users, user 0, and indices outside 1..n_users. users: LongTensor[B]; has_edges:
    BoolTensor[n_users + 1]."""
    in_range = (users >= 1) & (users < len(has_edges))
    users = torch.where(in_range, users, 0)
    return torch.where(in_range & has_edges[users], users, 0)


def without_untrained_items(logits: torch.Tensor, item_has_edges: torch.Tensor) -> torch.Tensor:
    """``logits`` over items 1..n_items ([B, n_items]) with the items that have no training
    edge set to -inf, so a full softmax runs over the training catalogue: an item that is never
    a positive would otherwise only ever be pushed down. item_has_edges: BoolTensor[n_items + 1]."""
    return logits.masked_fill(~item_has_edges[1:], float("-inf"))


def history_edges(items: torch.Tensor, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of histories as edges into one new user node per row: (the distinct history
    items, LongTensor[K]; edge_index LongTensor[2, E], row 0 indexing into them, row 1 the batch
    row). One edge per distinct (row, item); padding gives none.

    items: LongTensor[B, L] of item_idx, 0 = padding."""
    rows, columns = (items != PAD).nonzero(as_tuple=True)
    keys = torch.unique(rows * (n_items + 1) + items[rows, columns])
    rows, history = keys // (n_items + 1), keys % (n_items + 1)
    involved, source = torch.unique(history, return_inverse=True)
    return involved, torch.stack([source, rows])


def item_log_counts(items: torch.Tensor, n_items: int) -> torch.Tensor:
    """log(1 + how many training users each item has): FloatTensor[n_items + 1] (row 0: 0).
    items: the item of every distinct (user, item) training pair."""
    return torch.log1p(torch.bincount(items, minlength=n_items + 1).float())


def with_short_history_prior(
    scores: torch.Tensor, batch, user_has_edges: torch.Tensor, log_counts: torch.Tensor, weight: float, max_items: int
) -> torch.Tensor:
    """``scores`` ([B, n_items + 1]) plus ``weight`` * log(1 + training users of the item) on the
    rows the network knows least: a user without training edges (embedded with the unknown id)
    whose history (``batch.items``, 0 = padding) holds at most ``max_items`` items — a new user
    shown their first few interactions. A known user keeps their scores whatever their history's
    length (on the default data the prior cost known short histories more than it gave new
    users). The served pyfunc passes no user id, so there every short history is a new user's,
    as the network itself treats it. weight 0 changes nothing."""
    if not weight:
        return scores
    unknown = known_user_rows(batch.users.to(scores.device), user_has_edges) == 0
    short = (batch.items != PAD).sum(1).to(scores.device) <= max_items
    return scores + weight * (unknown & short).to(scores.dtype).unsqueeze(1) * log_counts.unsqueeze(0)


def fill_missing_buffer(name: str):
    """A ``load_state_dict`` pre-hook: weights saved before buffer ``name`` existed load with the
    model's own (zeros) in its place, so a score-time setting reading it changes nothing."""

    def hook(module, state_dict, prefix, *args) -> None:
        state_dict.setdefault(prefix + name, getattr(module, name).clone())

    return hook


def distinct_history(items: torch.Tensor) -> torch.Tensor:
    """One history's distinct items in ascending order, padding left out: LongTensor[K].
    items: LongTensor[L] of item_idx, 0 = padding. (``history_edges`` for a batch of one.)"""
    return torch.unique(items[items != PAD])


def attention_into_one_node(conv, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """What ``conv((src, dst), edge_index)`` gives when every ``src`` row has one edge into the
    single ``dst`` node, computed densely: FloatTensor[1, out]. conv: a ``GATv2Conv`` with
    ``concat=False`` and no edge features, residual or self-loops; src: [K, D] (K may be 0);
    dst: [1, D].

    The same arithmetic as PyG's (GATv2: e = att . LeakyReLU(W_l x_j + W_r x_i), softmax over the
    K edges, the W_l x_j weighted and averaged over heads, plus the bias), in about a dozen tensor
    ops instead of PyG's scatter-based propagation: one request's user is one node, and on the
    serving path the message-passing machinery cost more than the arithmetic. Inference only
    (no attention dropout)."""
    if conv.concat or conv.lin_edge is not None or conv.res is not None or conv.add_self_loops:
        raise ValueError(
            "attention_into_one_node takes a GATv2Conv with concat=False, no edge features, residual or self-loops"
        )
    heads, channels = conv.heads, conv.out_channels
    if not len(src):  # no edges: no message, the bias alone
        return conv.bias.unsqueeze(0) if conv.bias is not None else dst.new_zeros(1, channels)
    left = conv.lin_l(src).view(-1, heads, channels)  # [K, H, C]
    right = conv.lin_r(dst).view(1, heads, channels)
    logits = (F.leaky_relu(left + right, conv.negative_slope) * conv.att).sum(-1)  # [K, H]
    weights = torch.softmax(logits, dim=0)
    out = (weights.unsqueeze(-1) * left).sum(0).mean(0, keepdim=True)  # [1, C]
    return out + conv.bias if conv.bias is not None else out


def shuffled_pairs(
    users: torch.Tensor, items: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every (user, item) pair once, shuffled, ``batch_size`` at a time."""
    order = torch.randperm(len(users), generator=generator)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield users[rows], items[rows]


def first_items(train: pd.DataFrame, n_users: int, count: int) -> torch.Tensor:
    """Each user's first ``count`` training items in time: LongTensor[n_users + 1, count], row
    u = user u's items, oldest first, padded with 0 (PAD) on the right; row 0 and users without
    training rows are all padding. ``train`` is ordered by user then time (``TrainingData``).

    What a cold user is at test time in the pipeline split: a user shown only their first
    interactions (``models.split``, ``cold_user_shown``)."""
    users = train["user_idx"].to_numpy(np.int64)
    items = train["item_idx"].to_numpy(np.int64)
    out = torch.zeros(n_users + 1, count, dtype=torch.long)
    if not len(users) or count < 1:
        return out
    if (np.diff(users) < 0).any():
        raise ValueError("train must be ordered by user (then time), as TrainingData.train is")
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    position = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    keep = position < count
    out[torch.from_numpy(users[keep]), torch.from_numpy(position[keep])] = torch.from_numpy(items[keep])
    return out


def cold_user_pairs(users: torch.Tensor, positives: torch.Tensor, first: torch.Tensor, share: float) -> torch.Tensor:
    """Which of a batch's (user, item) pairs to train as a cold user is scored (each with
    probability ``share``): BoolTensor[B]. A pair whose item is among the user's ``first``
    items is never one: those items are the cold user's history, not a target."""
    shown = first[users]  # [B, count]
    eligible = (shown != positives.unsqueeze(1)).all(1) & (shown != PAD).any(1)
    return eligible & (torch.rand(len(users), device=users.device) < share)


def with_cold_users(
    states: torch.Tensor,
    users: torch.Tensor,
    positives: torch.Tensor,
    first: torch.Tensor,
    share: float,
    embed: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """A batch's user ``states`` ([B, D]) with the rows ``cold_user_pairs`` draws replaced by the
    state each user gets when scored as a cold user: ``embed(items [b, count], users [b])`` of
    their ``first`` items with the unknown user 0 — the model's own history path, so training sees
    exactly what scoring a new user computes (the users' analogue of ``cold_item_dropout``)."""
    cold = cold_user_pairs(users, positives, first, share).nonzero().squeeze(1)
    if not len(cold):
        return states
    return states.index_put((cold,), embed(first[users[cold]], torch.zeros_like(cold)))


def graph_of_training(training, *, text_encoder: str = "", device: str = "cpu", progress: bool = False) -> InteractionGraph:
    """The side input ``interaction_graph`` (``models.registry.SIDE_INPUTS``): the graph of a
    ``models.data.TrainingData``'s training part."""
    return build_interaction_graph(training.train, training.n_users, training.n_items)
