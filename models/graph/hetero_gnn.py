"""GNN-TV: a heterogeneous graph network over users, items and what the items are made of.

The graph (``build_hetero_graph``) has users, items and the item metadata as node types —
genres, cast, creators (directors), networks (studios) — with (user, rates, item) edges from the
training part and (item, has_genre, genre), (item, has_cast, cast), (item, by, creator),
(item, on, network) edges from the item table, each also reversed. Layer-0 states:

- user: a user-id embedding (row 0: the unknown user);
- item: an item-id embedding (row 0: the unknown item) plus its projected text embedding when the
  ``item_text_embeddings`` side input is there;
- metadata value: an embedding looked up by a stable hash of its name into ``attribute_buckets``
  rows per node type, so the weights' shapes do not depend on the catalogue and a value first seen
  at inference (a new actor) still has a row.

Each of ``n_layers`` layers is a ``HeteroConv``: ``GATv2Conv`` (attention, ``heads`` heads) on the
user–item relations, ``SAGEConv`` (mean) on the item–metadata relations, summed per destination,
then per node type GELU(root + messages), dropout, a residual and LayerNorm.

**Meta-path aggregation** (HAN, Wang et al. 2019): after the layers, each item also reads the
items it shares a genre (item–genre–item), a cast member (item–cast–item), a creator or a network
with (two mean aggregations along each meta-path), and an attention over {itself, each meta-path}
per item fuses them into its final state.

**Multi-task heads** (the seed's): beside the recommendation loss (full-softmax cross-entropy of
each training pair's item), a genre head (multi-label, BCE over the genre buckets) and a network
head (cross-entropy over the network buckets) read the items' final states, weighted by
``genre_weight`` and ``network_weight``.

Cold start without retraining, as in ``graphsage.py``: ids are dropped in training
(``id_dropout``), a share of items is trained as new ones are scored, without id or rating
edges (``cold_item_dropout``), with ``cold_user_share`` a share of pairs is trained with the user
embedded as a cold user is scored (from their first training items, unknown id), and the items without training ratings are neither softmax
negatives nor ranked in validation (``softmax_over_trained_items``, ``validate_on_trained_items``);
a user is embedded from their history as a new node joined to their history items (the items'
stored per-layer states); an item without ratings is reached through its metadata and text.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.content.item_text import TEXT_INPUT, checked_text
from models.data import HistoryBatch, TrainingData
from models.graph.interaction_graph import (
    ITEM_ATTRIBUTE_NODES,
    attention_into_one_node,
    build_hetero_graph,
    check_split_size,
    distinct_history,
    fill_missing_buffer,
    first_items,
    history_edges,
    item_log_counts,
    known_user_rows,
    shuffled_pairs,
    with_cold_users,
    with_short_history_prior,
    without_untrained_items,
)
from models.interface import EpochLog, FitReport, score_time_field
from models.training import train_loop

ATTRIBUTES = tuple(node for node, _ in ITEM_ATTRIBUTE_NODES.values())  # genre, cast, creator, network
RELATION = {node: relation for node, relation in ITEM_ATTRIBUTE_NODES.values()}
RATES, RATED_BY = ("user", "rates", "item"), ("item", "rev_rates", "user")


@dataclass(frozen=True)
class HeteroGNNConfig:
    n_items: int
    n_users: int = 0
    text_dim: int = 384  # width of the item text embeddings (all-MiniLM-L6-v2: 384); 0 = no text
    dim: int = 64
    n_layers: int = 2
    heads: int = 2  # attention heads on the user-item relations (averaged)
    dropout: float = 0.1
    id_dropout: float = 0.3  # share of users and items trained with the unknown id (cold start)
    cold_item_dropout: float = 0.1  # share of items trained as if new each step: no id, no ratings
    # share of each step's training pairs whose user is embedded as a cold user is scored, from
    # their first ``cold_user_history`` training items with the unknown id (0: off; see GraphSAGE)
    cold_user_share: float = 0.0
    cold_user_history: int = 5
    # the softmax runs over the items with training ratings only (True) or the whole catalogue
    softmax_over_trained_items: bool = True
    # validation ranks the items with training ratings only (True) or the whole catalogue
    validate_on_trained_items: bool = True
    attribute_buckets: int = 2048  # hashed embedding rows per metadata node type
    metapaths: bool = True  # item-genre-item, item-cast-item, ... aggregation with attention
    genre_weight: float = 0.1  # multi-task genre-prediction loss weight (0: off)
    network_weight: float = 0.1  # multi-task network-prediction loss weight (0: off)
    # logits = u.v / sqrt(dim) (True) or u.v: the states leave a LayerNorm, norm ~sqrt(dim)
    scaled_logits: bool = True
    # added to the score of every item without training edges (new items) at scoring time only;
    # 0 serves them as the network scores them, a large negative value buries them. Chosen on
    # the held-out slices' validation cases (benchmarks/plugin_families.py --new-item-offsets)
    new_item_offset: float = score_time_field(0.0)
    # a popularity prior for new users with short histories, as in GraphSAGE (0 = none)
    short_history_popularity: float = score_time_field(0.0)
    short_history_items: int = score_time_field(5)
    # a learned bias per item added to its logit (row 0: items without id), as in GraphSAGE
    item_bias: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 4096  # training (user, item) pairs per step; the graph is propagated per step
    max_epochs: int = 100
    patience: int = 10
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if min(self.dim, self.n_layers, self.heads, self.attribute_buckets) < 1:
            raise ValueError("dim, n_layers, heads and attribute_buckets must be >= 1")
        for name in ("id_dropout", "cold_item_dropout", "cold_user_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.cold_user_history < 1:
            raise ValueError(f"cold_user_history must be >= 1, got {self.cold_user_history}")
        if self.text_dim < 0 or self.genre_weight < 0 or self.network_weight < 0:
            raise ValueError("text_dim, genre_weight and network_weight must be >= 0")


def stable_bucket(names: list[str], buckets: int) -> torch.Tensor:
    """LongTensor of crc32(name) % buckets: the same row for the same name in every process
    (Python's ``hash`` of a str changes per process)."""
    return torch.tensor([zlib.crc32(name.encode()) % buckets for name in names], dtype=torch.long)


class HeteroGNN(nn.Module):
    single_row_trace = True  # serving traces score for one request (serving.inference)

    def __init__(self, config: HeteroGNNConfig):
        super().__init__()
        from torch_geometric.nn import GATv2Conv, HeteroConv, SAGEConv  # PyG costs seconds: imported when built

        self.config = config
        self.logit_scale = config.dim**-0.5 if config.scaled_logits else 1.0
        self.history_length = None  # a user is embedded from their whole history
        d = config.dim
        relations = {RATES: "gat", RATED_BY: "gat"}
        for node in ATTRIBUTES:
            relations[("item", RELATION[node], node)] = "sage"
            relations[(node, f"rev_{RELATION[node]}", "item")] = "sage"

        def conv(kind: str) -> nn.Module:
            if kind == "gat":
                return GATv2Conv((d, d), d, heads=config.heads, concat=False, dropout=config.dropout, add_self_loops=False)
            return SAGEConv((d, d), d, aggr="mean", root_weight=False)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.user_emb = nn.Embedding(config.n_users + 1, d)
            self.item_emb = nn.Embedding(config.n_items + 1, d)
            self.attribute_emb = nn.ModuleDict({node: nn.Embedding(config.attribute_buckets, d) for node in ATTRIBUTES})
            for table in (self.user_emb, self.item_emb, *self.attribute_emb.values()):
                nn.init.normal_(table.weight, std=0.1)
            self.text_proj = nn.Linear(config.text_dim, d) if config.text_dim else None
            self.layers = nn.ModuleList(
                HeteroConv({edge: conv(kind) for edge, kind in relations.items()}, aggr="sum") for _ in range(config.n_layers)
            )
            node_types = ("user", "item", *ATTRIBUTES)
            self.roots = nn.ModuleList(
                nn.ModuleDict({t: nn.Linear(d, d, bias=False) for t in node_types}) for _ in range(config.n_layers)
            )
            self.norms = nn.ModuleList(nn.ModuleDict({t: nn.LayerNorm(d) for t in node_types}) for _ in range(config.n_layers))
            self.dropout = nn.Dropout(config.dropout)
            self.bias = nn.Embedding(config.n_items + 1, 1) if config.item_bias else None
            if self.bias is not None:
                nn.init.zeros_(self.bias.weight)
            if config.metapaths:
                self.path_proj = nn.Linear(d, d)
                self.path_query = nn.Parameter(torch.randn(d) * 0.1)
            self.genre_head = nn.Linear(d, config.attribute_buckets) if config.genre_weight > 0 else None
            self.network_head = nn.Linear(d, config.attribute_buckets) if config.network_weight > 0 else None
        # What score reads, refreshed whenever the model switches to eval (see graphsage.py).
        self.register_buffer("item_layers", torch.zeros(config.n_layers, config.n_items + 1, d))
        self.register_buffer("item_final", torch.zeros(config.n_items + 1, d))
        self.register_buffer("user_has_edges", torch.zeros(config.n_users + 1, dtype=torch.bool))
        self.register_buffer("item_has_edges", torch.zeros(config.n_items + 1, dtype=torch.bool))
        self.register_buffer("item_log_count", torch.zeros(config.n_items + 1))  # for short_history_popularity
        self.register_load_state_dict_pre_hook(fill_missing_buffer("item_log_count"))
        # Attached by fit / attach (never saved): edges, metadata rows, text, task labels.
        self.graph: dict[str, Any] | None = None
        # each user's first training items, set by fit when cold_user_share > 0 (training only)
        self.register_buffer("first_items", None, persistent=False)

    # ----- inputs --------------------------------------------------------------------------

    def attach(self, hetero, item_text: torch.Tensor | None) -> None:
        """Use ``hetero`` (``build_hetero_graph``'s HeteroData) and ``item_text``
        (FloatTensor[n_items + 1, text_dim], required when ``text_dim`` > 0)."""
        cfg = self.config
        if (hetero["user"].num_nodes, hetero["item"].num_nodes) != (cfg.n_users + 1, cfg.n_items + 1):
            raise ValueError(
                f"graph has {hetero['user'].num_nodes - 1} users and {hetero['item'].num_nodes - 1} items, "
                f"the config {cfg.n_users} and {cfg.n_items}"
            )
        device = self.item_emb.weight.device
        edges = {edge: hetero[edge].edge_index.to(device) for edge in hetero.edge_types}
        users, items = edges[RATES]
        self.user_has_edges.copy_(torch.zeros_like(self.user_has_edges).index_fill_(0, users, True))
        self.item_has_edges.copy_(torch.zeros_like(self.item_has_edges).index_fill_(0, items, True))
        self.item_log_count.copy_(item_log_counts(items, cfg.n_items))
        present = [node for node in ATTRIBUTES if node in hetero.node_types]
        rows = {node: stable_bucket(hetero[node].names, cfg.attribute_buckets).to(device) for node in present}
        text = None
        if cfg.text_dim:
            text = checked_text(item_text, cfg, "HeteroGNN", optional=True).to(device)
        self.graph = {"edges": edges, "attribute_rows": rows, "text": text, "labels": self._labels(edges, rows)}

    def _labels(self, edges: dict, rows: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Multi-task targets: genre -> (items with a genre, multi-hot over genre buckets);
        network -> (items with a network, the bucket of their first network)."""
        labels = {}
        n, buckets = self.config.n_items + 1, self.config.attribute_buckets
        if "genre" in rows:
            item, genre = edges[("item", RELATION["genre"], "genre")]
            target = torch.zeros(n, buckets, device=item.device)
            target[item, rows["genre"][genre]] = 1.0
            has = target.sum(1) > 0
            labels["genre"] = (has.nonzero().squeeze(1), target[has])
        if "network" in rows:
            item, network = edges[("item", RELATION["network"], "network")]
            # one network per item (the first by name), deterministically: sort by (item, network)
            order = torch.argsort(item * (len(rows["network"]) + 1) + network)
            item, network = item[order], network[order]
            first = torch.ones(len(item), dtype=torch.bool, device=item.device)
            first[1:] = item[1:] != item[:-1]
            labels["network"] = (item[first], rows["network"][network[first]])
        return labels

    def _id_rows(self, has_edges: torch.Tensor) -> torch.Tensor:
        keep = has_edges
        if self.training and self.config.id_dropout > 0:
            keep = keep & (torch.rand(has_edges.shape, device=has_edges.device) >= self.config.id_dropout)
        return torch.where(keep, torch.arange(len(keep), device=keep.device), 0)

    # ----- propagation ---------------------------------------------------------------------

    def _update(self, layer: int, node: str, state: torch.Tensor, message: torch.Tensor | None) -> torch.Tensor:
        """LayerNorm(state + dropout(GELU(root(state) + message))) for one node type."""
        total = self.roots[layer][node](state)
        if message is not None:
            total = total + message
        return self.norms[layer][node](state + self.dropout(F.gelu(total)))

    def propagate(self, with_rows: bool = False) -> tuple:
        """(user states, item final states, the items' state entering each layer); with
        ``with_rows`` also the id row each item read (0 where the id was dropped)."""
        if self.graph is None:
            raise RuntimeError("HeteroGNN.propagate needs a graph: call attach or fit first")
        g = self.graph
        edges, item_has_edges = g["edges"], self.item_has_edges
        if self.training and self.config.cold_item_dropout > 0:
            # items trained as cold ones are scored at test time: no id, no rating edges
            # (their metadata and text stay)
            cold = torch.rand(item_has_edges.shape, device=item_has_edges.device) < self.config.cold_item_dropout
            item_has_edges = item_has_edges & ~cold
            keep = ~cold[edges[RATES][1]]
            edges = {**edges, RATES: edges[RATES][:, keep], RATED_BY: edges[RATED_BY][:, keep]}
        item_rows = self._id_rows(item_has_edges)
        x = {"user": self.user_emb(self._id_rows(self.user_has_edges)), "item": self.item_emb(item_rows)}
        if g["text"] is not None:
            x["item"] = x["item"] + self.text_proj(g["text"])
        for node, rows in g["attribute_rows"].items():
            x[node] = self.attribute_emb[node](rows)
        item_layers = []
        for layer, conv in enumerate(self.layers):
            item_layers.append(x["item"])
            messages = conv(x, edges)
            x = {node: self._update(layer, node, state, messages.get(node)) for node, state in x.items()}
        items = self._metapath_fusion(x["item"]) if self.config.metapaths else x["item"]
        return (x["user"], items, item_layers, item_rows) if with_rows else (x["user"], items, item_layers)

    def _metapath_fusion(self, items: torch.Tensor) -> torch.Tensor:
        """Per item, attention over itself and the mean of the items sharing each metadata kind."""
        views, present = [items], [torch.ones(len(items), dtype=torch.bool, device=items.device)]
        for node in self.graph["attribute_rows"]:
            item, value = self.graph["edges"][("item", RELATION[node], node)]
            n_values = len(self.graph["attribute_rows"][node])
            per_value = _scatter_mean(items[item], value, n_values)  # item -> value
            views.append(_scatter_mean(per_value[value], item, len(items)))  # value -> item
            present.append(torch.zeros(len(items), dtype=torch.bool, device=items.device).index_fill_(0, item, True))
        stacked, present = torch.stack(views, 1), torch.stack(present, 1)  # [N, P, D], [N, P]
        logits = torch.tanh(self.path_proj(stacked)) @ self.path_query
        weights = torch.softmax(logits.masked_fill(~present, float("-inf")), dim=1)
        return (weights.unsqueeze(-1) * stacked).sum(1)

    @torch.no_grad()
    def refresh_items(self) -> None:
        _, items, layers = self.propagate()
        self.item_final.copy_(items)
        self.item_layers.copy_(torch.stack(layers))

    def train(self, mode: bool = True) -> "HeteroGNN":
        super().train(mode)
        if not mode and self.graph is not None:
            self.refresh_items()
        return self

    # ----- loss and scores -----------------------------------------------------------------

    def loss(self, users: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Recommendation cross-entropy + genre_weight * genre BCE + network_weight * network CE."""
        user_states, item_states, item_layers, rows = self.propagate(with_rows=True)
        states = user_states[users]
        if self.training and self.first_items is not None:
            states = with_cold_users(states, users, positives, self.first_items, self.config.cold_user_share,
                                     lambda items, unknown: self._embed_histories(items, unknown, item_layers))  # fmt: skip
        # logits over sqrt(dim): LayerNorm'd states have norm ~sqrt(dim) (see GraphSAGE.loss)
        logits = states @ item_states[1:].T * self.logit_scale
        if self.bias is not None:
            logits = logits + self.bias(rows[1:]).T
        if self.config.softmax_over_trained_items:  # see GraphSAGE.loss
            logits = without_untrained_items(logits, self.item_has_edges)
        loss = F.cross_entropy(logits, positives - 1)
        labels = self.graph["labels"]
        if self.genre_head is not None and "genre" in labels:
            rows, target = labels["genre"]
            loss = loss + self.config.genre_weight * F.binary_cross_entropy_with_logits(self.genre_head(item_states[rows]), target)
        if self.network_head is not None and "network" in labels:
            rows, target = labels["network"]
            loss = loss + self.config.network_weight * F.cross_entropy(self.network_head(item_states[rows]), target)
        return loss

    def _embed_histories(self, items: torch.Tensor, users: torch.Tensor, item_layers) -> torch.Tensor:
        """A new user node per row joined to its history items (LongTensor[B, L], 0 = padding),
        read from ``item_layers`` (users receive messages from items only): FloatTensor[B, D]."""
        state = self.user_emb(known_user_rows(users, self.user_has_edges))
        if len(items) == 1 and not self.training:  # one request's user: the dense path
            history = distinct_history(items[0])
            for layer, conv in enumerate(self.layers):
                message = attention_into_one_node(conv.convs[RATED_BY], item_layers[layer][history], state)
                state = self._update(layer, "user", state, message)
            return state
        involved, edges = history_edges(items, self.config.n_items)
        for layer, conv in enumerate(self.layers):
            message = conv.convs[RATED_BY]((item_layers[layer][involved], state), edges)
            state = self._update(layer, "user", state, message)
        return state

    def embed_users(self, batch: HistoryBatch) -> torch.Tensor:
        """Each row's user state from its history, as a new user node joined to its history
        items: FloatTensor[B, D]."""
        device = self.item_final.device
        return self._embed_histories(batch.items.to(device), batch.users.to(device), self.item_layers)

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """user state (from the history) · item final states (/ sqrt(dim), see loss), plus the
        item bias where ``item_bias`` (row 0 for items without ratings) -> FloatTensor[B, n_items + 1]."""
        scores = self.embed_users(batch) @ self.item_final.T * self.logit_scale
        if self.bias is not None:
            scores = scores + self.bias(self._id_rows(self.item_has_edges)).T
        if self.config.new_item_offset:
            scores = scores + self.config.new_item_offset * (~self.item_has_edges).to(scores.dtype)
        cfg = self.config
        return with_short_history_prior(
            scores, batch, self.user_has_edges, self.item_log_count, cfg.short_history_popularity, cfg.short_history_items
        )

    @torch.no_grad()
    def validation_score(self, batch: HistoryBatch) -> torch.Tensor:
        """What validation ranks by (``train_loop``): ``score`` without the items that have no
        training ratings when ``validate_on_trained_items`` (see ``GraphSAGE.validation_score``).
        """
        scores = self.score(batch)
        if self.config.validate_on_trained_items:
            scores = scores.masked_fill(~self.item_has_edges, float("-inf"))
        return scores

    # ----- training ------------------------------------------------------------------------

    def fit(
        self,
        data: TrainingData,
        device: torch.device,
        *,
        side_inputs: dict[str, Any] | None = None,
        progress: bool = True,
        on_epoch: Callable[[EpochLog], None] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> FitReport:
        """Builds the heterogeneous graph from ``data.train`` and ``data.items`` (vectorised,
        its time printed), then trains on the distinct (user, item) pairs with the heads."""
        check_split_size(data, self.config)
        started = time.perf_counter()
        hetero = build_hetero_graph(data.train, data.items, data.n_users, data.n_items)
        if progress:
            sizes = ", ".join(f"{t} {hetero[t].num_nodes:,}" for t in hetero.node_types)
            print(f"hetero_gnn: graph of {sizes} nodes, {hetero.num_edges:,} edges ({time.perf_counter() - started:.2f}s)")
        text = (side_inputs or {}).get(TEXT_INPUT)
        self.to(device)
        self.attach(hetero, None if text is None else torch.as_tensor(text.matrix))
        if self.config.cold_user_share > 0:
            self.first_items = first_items(data.train, data.n_users, self.config.cold_user_history).to(device)
        users, items = hetero[RATES].edge_index
        return train_loop(
            self,
            data,
            device,
            name="hetero_gnn",
            epoch_batches=lambda generator: shuffled_pairs(users, items, self.config.batch_size, generator),
            batch_loss=lambda batch: self.loss(*batch),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )


def _scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of ``values`` rows grouped by ``index`` into ``size`` rows (0 where none)."""
    total = torch.zeros(size, values.shape[1], device=values.device, dtype=values.dtype).index_add_(0, index, values)
    count = torch.zeros(size, device=values.device, dtype=values.dtype).index_add_(0, index, torch.ones_like(index, dtype=values.dtype))
    return total / count.clamp_min(1).unsqueeze(1)

