"""GraphSAGE with attention aggregation: an inductive graph recommender (Hamilton et al. 2017;
attention aggregation as GATv2, Brody et al. 2022).

Users and items are the two sides of the training part's bipartite graph. Their layer-0
representations come from what a node *is*, not only from an id:

- item: its text embedding (the ``item_text_embeddings`` side input: title, year, genres, plot,
  cast, ...) through a linear map, plus an item-id embedding;
- user: a user-id embedding.

Each of ``n_layers`` layers updates both sides, SAGE-style: a node's new state is its own state
(a root weight) plus an attention-weighted aggregate of its neighbours' states (``GATv2Conv`` on
the bipartite graph, ``heads`` heads averaged), then GELU, a residual and LayerNorm; user→item
and item→user messages have their own weights. The score of an item for a user is the dot product
of their last-layer states, trained with full-softmax cross-entropy over the catalogue on every
distinct training (user, item) pair, the whole graph propagated for each batch.

**Inductive.** Ids are dropped during training (``id_dropout``: each step a share of users and of
items get the "unknown" id row 0 instead of their own), so the model learns to represent a node
from its features and neighbours; and each step a share of items (``cold_item_dropout``) is
trained exactly as a cold item is scored, with neither id nor edges, so that the text-only path
is calibrated against the items that have both; with ``cold_user_share``, a share of each
step's pairs is trained with its user embedded exactly as a cold user is scored (a new node
joined to their first ``cold_user_history`` training items, unknown id). Items without
training edges are no negatives of the softmax (``softmax_over_trained_items``) and are not
ranked in validation (``validate_on_trained_items``): no training or validation case can
reward them, so both would only teach the model to bury them (what each setting measured, and
its cost to the warm slice: ``benchmarks/README.md``, "GraphSAGE and GNN-TV on the default
data"). At inference nothing is retrained:

- a user is always embedded from their history, as a new node whose neighbours are the history
  items (their stored per-layer states) and whose id row is their own if they had training edges,
  row 0 otherwise — so a cold user is embedded from the items of their first interactions (a
  request of one user takes a dense path with the same arithmetic, ``attention_into_one_node``);
  ``short_history_popularity`` adds a popularity prior to a new user's short history;
- an item with no training edges (a cold item) is embedded from its text alone (id row 0, no
  neighbours), through the same layers.

The graph and the text are side inputs and not part of the weights: after training the items'
per-layer states are kept as buffers, so ``score`` needs only the state_dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.content.item_text import TEXT_INPUT, checked_text
from models.data import HistoryBatch, TrainingData
from models.graph.interaction_graph import (
    InteractionGraph,
    attention_into_one_node,
    check_split_size,
    distinct_history,
    fill_missing_buffer,
    first_items,
    graph_input,
    item_log_counts,
    history_edges,
    known_user_rows,
    shuffled_pairs,
    with_cold_users,
    with_short_history_prior,
    without_untrained_items,
)
from models.interface import EpochLog, FitReport, score_time_field
from models.training import train_loop



@dataclass(frozen=True)
class GraphSAGEConfig:
    n_items: int
    n_users: int = 0
    text_dim: int = 384  # width of the item text embeddings (all-MiniLM-L6-v2: 384); 0 = no text
    dim: int = 64
    n_layers: int = 2
    heads: int = 2  # attention heads of each aggregation (averaged)
    dropout: float = 0.1  # on attention weights and layer outputs
    id_dropout: float = 0.3  # share of users and items trained with the unknown id (cold start)
    cold_item_dropout: float = 0.1  # share of items trained as if new each step: no id, no edges
    # share of each step's training pairs whose user is embedded as a cold user is at test time:
    # a new node joined to the user's first ``cold_user_history`` training items, unknown id
    # (0: off). The pair's item is never one of those items.
    cold_user_share: float = 0.0
    cold_user_history: int = 5  # the pipeline split shows a cold user their first 5 interactions
    # the softmax runs over the items with training edges only (True) or the whole catalogue
    softmax_over_trained_items: bool = True
    # validation ranks the items with training edges only (True) or the whole catalogue
    validate_on_trained_items: bool = True
    # logits = u.v / sqrt(dim) (True) or u.v: the states leave a LayerNorm, norm ~sqrt(dim)
    scaled_logits: bool = True
    # added to the score of every item without training edges (new items) at scoring time only;
    # 0 serves them as the network scores them, a large negative value buries them. Chosen on
    # the held-out slices' validation cases (benchmarks/plugin_families.py --new-item-offsets)
    new_item_offset: float = score_time_field(0.0)
    # added at scoring time to the scores of a user without training edges whose history holds at
    # most ``short_history_items`` items (a new user is shown 5): this weight times log(1 +
    # training users of the item), a popularity prior; 0 = none. Chosen on validation with the cold users' cases
    # (benchmarks/plugin_families.py --short-history-popularity)
    short_history_popularity: float = score_time_field(0.0)
    short_history_items: int = score_time_field(5)
    # a learned bias per item added to its logit (row 0: items without id, new ones included)
    item_bias: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 4096  # training (user, item) pairs per step; the graph is propagated per step
    max_epochs: int = 100
    patience: int = 10  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n_layers < 1 or self.heads < 1:
            raise ValueError(f"dim, n_layers and heads must be >= 1, got {self.dim}, {self.n_layers}, {self.heads}")
        for name in ("id_dropout", "cold_item_dropout", "cold_user_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.cold_user_history < 1:
            raise ValueError(f"cold_user_history must be >= 1, got {self.cold_user_history}")
        if self.text_dim < 0:
            raise ValueError(f"text_dim must be >= 0 (0: no text features), got {self.text_dim}")


class AttentionSAGELayer(nn.Module):
    """dst' = LayerNorm(dst + dropout(GELU(root(dst) + GATv2(src -> dst)))) on a bipartite graph."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        from torch_geometric.nn import GATv2Conv  # imported here: PyG costs seconds, and the registry imports this file

        self.neighbours = GATv2Conv((dim, dim), dim, heads=heads, concat=False, dropout=dropout, add_self_loops=False)
        self.root = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, src: torch.Tensor, dst: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """src: [S, D], dst: [T, D], edge_index: LongTensor[2, E] (row 0 into src, row 1 into dst)
        -> [T, D]. A dst node with no edges keeps its root term alone."""
        message = self.neighbours((src, dst), edge_index)
        return self.norm(dst + self.dropout(F.gelu(self.root(dst) + message)))

    def into_one(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """``forward`` for one dst node ([1, D]) that every src row links to, without PyG's
        message passing (``attention_into_one_node``; inference only) -> [1, D]."""
        message = attention_into_one_node(self.neighbours, src, dst)
        return self.norm(dst + self.dropout(F.gelu(self.root(dst) + message)))


class GraphSAGE(nn.Module):
    single_row_trace = True  # serving traces score for one request (serving.inference)

    def __init__(self, config: GraphSAGEConfig):
        super().__init__()
        self.config = config
        self.logit_scale = config.dim**-0.5 if config.scaled_logits else 1.0
        self.history_length = None  # a user is embedded from their whole history
        d = config.dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.user_emb = nn.Embedding(config.n_users + 1, d)  # row 0: the unknown user
            self.item_emb = nn.Embedding(config.n_items + 1, d)  # row 0: the unknown item
            nn.init.normal_(self.user_emb.weight, std=0.1)
            nn.init.normal_(self.item_emb.weight, std=0.1)
            self.text_proj = nn.Linear(config.text_dim, d) if config.text_dim else None
            # The state of a LayerNorm'd item has a fixed norm, so unlike LightGCN's it cannot
            # carry popularity; the bias can. Items without their id read row 0.
            self.bias = nn.Embedding(config.n_items + 1, 1) if config.item_bias else None
            if self.bias is not None:
                nn.init.zeros_(self.bias.weight)
            self.to_user = nn.ModuleList(AttentionSAGELayer(d, config.heads, config.dropout) for _ in range(config.n_layers))
            self.to_item = nn.ModuleList(AttentionSAGELayer(d, config.heads, config.dropout) for _ in range(config.n_layers))
        # What score reads, refreshed from the graph whenever the model switches to eval: each
        # item's state entering every layer (0..n_layers - 1) and after the last one.
        self.register_buffer("item_layers", torch.zeros(config.n_layers, config.n_items + 1, d))
        self.register_buffer("item_final", torch.zeros(config.n_items + 1, d))
        self.register_buffer("user_has_edges", torch.zeros(config.n_users + 1, dtype=torch.bool))
        self.register_buffer("item_has_edges", torch.zeros(config.n_items + 1, dtype=torch.bool))
        self.register_buffer("item_log_count", torch.zeros(config.n_items + 1))  # for short_history_popularity
        self.register_load_state_dict_pre_hook(fill_missing_buffer("item_log_count"))
        # Attached by fit / attach: the graph's two edge directions and the item text (never saved).
        self.register_buffer("user_to_item", None, persistent=False)
        self.register_buffer("item_to_user", None, persistent=False)
        self.register_buffer("item_text", None, persistent=False)
        # each user's first training items, set by fit when cold_user_share > 0 (training only)
        self.register_buffer("first_items", None, persistent=False)

    # ----- inputs --------------------------------------------------------------------------

    def attach(self, graph: InteractionGraph, item_text: torch.Tensor | None) -> None:
        """Use ``graph`` (training edges) and ``item_text`` (FloatTensor[n_items + 1, text_dim])."""
        if (graph.n_users, graph.n_items) != (self.config.n_users, self.config.n_items):
            raise ValueError(
                f"graph has {graph.n_users} users and {graph.n_items} items, the config "
                f"{self.config.n_users} and {self.config.n_items}"
            )
        device = self.item_emb.weight.device
        users, items = graph.user_item_pairs()
        self.user_to_item = torch.stack([users, items]).to(device)
        self.item_to_user = self.user_to_item.flip(0)
        has_edges = torch.zeros(self.config.n_users + 1, dtype=torch.bool)
        has_edges[users] = True
        self.user_has_edges.copy_(has_edges)
        has_edges = torch.zeros(self.config.n_items + 1, dtype=torch.bool)
        has_edges[items] = True
        self.item_has_edges.copy_(has_edges)
        self.item_log_count.copy_(item_log_counts(items, self.config.n_items))
        if self.config.text_dim:
            self.item_text = checked_text(item_text, self.config, "GraphSAGE", optional=True).to(device)

    @staticmethod
    def _own_rows(keep_ids: torch.Tensor) -> torch.Tensor:
        """Each node's own embedding row where ``keep_ids``, row 0 (the unknown one) elsewhere."""
        return torch.where(keep_ids, torch.arange(len(keep_ids), device=keep_ids.device), 0)

    def _item_inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """Layer-0 item states: the id embedding of ``rows`` + projected text."""
        x = self.item_emb(rows)
        if self.text_proj is not None:
            x = x + self.text_proj(self.item_text)
        return x

    def _id_mask(self, has_edges: torch.Tensor) -> torch.Tensor:
        """Which nodes use their own id row: those with training edges, less ``id_dropout`` of
        them while training."""
        if self.training and self.config.id_dropout > 0:
            return has_edges & (torch.rand(has_edges.shape, device=has_edges.device) >= self.config.id_dropout)
        return has_edges

    # ----- propagation ---------------------------------------------------------------------

    def propagate(self, with_rows: bool = False) -> tuple:
        """(user states [n_users + 1, D], item states [n_items + 1, D], the items' state entering
        each layer) after the last layer, over the attached training graph; with ``with_rows``
        also the id row each item read (LongTensor[n_items + 1], 0 where the id was dropped)."""
        if self.user_to_item is None:
            raise RuntimeError("GraphSAGE.propagate needs a graph: call attach or fit first")
        users = self.user_emb(self._own_rows(self._id_mask(self.user_has_edges)))
        item_has_edges, user_to_item, item_to_user = self.item_has_edges, self.user_to_item, self.item_to_user
        if self.training and self.config.cold_item_dropout > 0:
            # items trained as cold ones are scored at test time: neither id nor edges
            cold = torch.rand(item_has_edges.shape, device=item_has_edges.device) < self.config.cold_item_dropout
            item_has_edges = item_has_edges & ~cold
            keep = ~cold[user_to_item[1]]
            user_to_item, item_to_user = user_to_item[:, keep], item_to_user[:, keep]
        rows = self._own_rows(self._id_mask(item_has_edges))
        items = self._item_inputs(rows)
        item_layers = []
        for to_user, to_item in zip(self.to_user, self.to_item):
            item_layers.append(items)
            users, items = to_user(items, users, item_to_user), to_item(users, items, user_to_item)
        return (users, items, item_layers, rows) if with_rows else (users, items, item_layers)

    @torch.no_grad()
    def refresh_items(self) -> None:
        """Store the items' per-layer and final states (eval mode: no dropout) for ``score``."""
        _, items, layers = self.propagate()
        self.item_final.copy_(items)
        self.item_layers.copy_(torch.stack(layers))

    def train(self, mode: bool = True) -> "GraphSAGE":
        # Switching to eval (before each validation, and after fit loads the best weights)
        # re-propagates, so score always reads states of the current weights.
        super().train(mode)
        if not mode and self.user_to_item is not None:
            self.refresh_items()
        return self

    # ----- loss and scores -----------------------------------------------------------------

    def loss(self, users: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy of each pair's item over the catalogue (items 1..n_items).

        Logits are dot products over sqrt(dim), as in attention: both states leave a LayerNorm,
        so each has norm ~sqrt(dim) and raw dot products start with a spread of ~sqrt(dim),
        which puts the first epochs' loss above the uniform guess's log(n_items) (measured in
        ``benchmarks/README.md``, "logits over sqrt(dim)"). The LayerNorm gains still let
        training sharpen the softmax as far as it needs.

        Items without a training edge are left out of the softmax (``softmax_over_trained_items``):
        they are never a positive, so as negatives only they teach the text path that *their*
        texts mean "never watched" — exactly the items that are cold at test time. With them in,
        new items rank below the known ones, below a random order (``benchmarks/README.md``,
        "Why new items scored 0")."""
        user_states, item_states, item_layers, rows = self.propagate(with_rows=True)
        states = user_states[users]
        if self.training and self.first_items is not None:
            states = with_cold_users(states, users, positives, self.first_items, self.config.cold_user_share,
                                     lambda items, unknown: self._embed_histories(items, unknown, item_layers))  # fmt: skip
        logits = states @ item_states[1:].T * self.logit_scale
        if self.bias is not None:
            logits = logits + self.bias(rows[1:]).T
        if self.config.softmax_over_trained_items:
            logits = without_untrained_items(logits, self.item_has_edges)
        return F.cross_entropy(logits, positives - 1)

    def _embed_histories(self, items: torch.Tensor, users: torch.Tensor, item_layers) -> torch.Tensor:
        """A new user node per row joined to its history items (LongTensor[B, L], 0 = padding),
        read from ``item_layers`` (the items' state entering each layer): FloatTensor[B, D]."""
        state = self.user_emb(known_user_rows(users, self.user_has_edges))
        if len(items) == 1 and not self.training:  # one request's user: the dense path
            history = distinct_history(items[0])
            for layer, to_user in enumerate(self.to_user):
                state = to_user.into_one(item_layers[layer][history], state)
            return state
        involved, edges = history_edges(items, self.config.n_items)  # the layers read only these items
        for layer, to_user in enumerate(self.to_user):
            state = to_user(item_layers[layer][involved], state, edges)
        return state

    def embed_users(self, batch: HistoryBatch) -> torch.Tensor:
        """Each row's user state from its history, as a new node joined to its history items:
        FloatTensor[B, D]. The id row is the user's own if they had training edges, else 0."""
        device = self.item_final.device
        return self._embed_histories(batch.items.to(device), batch.users.to(device), self.item_layers)

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """user state (from the history) · item states (/ sqrt(dim), see loss), plus the item
        bias where ``item_bias`` (row 0 for items without training edges) -> FloatTensor[B, n_items + 1]."""
        scores = self.embed_users(batch) @ self.item_final.T * self.logit_scale
        if self.bias is not None:
            scores = scores + self.bias(self._own_rows(self.item_has_edges)).T
        if self.config.new_item_offset:
            scores = scores + self.config.new_item_offset * (~self.item_has_edges).to(scores.dtype)
        cfg = self.config
        return with_short_history_prior(
            scores, batch, self.user_has_edges, self.item_log_count, cfg.short_history_popularity, cfg.short_history_items
        )

    @torch.no_grad()
    def validation_score(self, batch: HistoryBatch) -> torch.Tensor:
        """What validation ranks by (``train_loop``): ``score``, with the items that have no
        training edge left out when ``validate_on_trained_items``.

        No validation case can reward ranking a new item: the pipeline split removes the held-out
        cold items' validation rows, so under validation a new item is only ever a wrong answer.
        Ranked there, the new items GraphSAGE places from their text cost validation NDCG@10, and
        early stopping, reading that, stops too soon (measured in ``benchmarks/README.md``, "Why
        new items scored 0"). The test cases still rank every item: there a new item is a target
        about as often as any other.
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
        """Cross-entropy on the graph's (user, item) pairs. ``side_inputs``: the
        ``interaction_graph`` (built from ``data.train`` when absent) and the
        ``item_text_embeddings`` (required unless ``text_dim`` is 0)."""
        check_split_size(data, self.config)
        graph = graph_input(side_inputs, data)
        text = (side_inputs or {}).get(TEXT_INPUT)
        self.to(device)
        self.attach(graph, None if text is None else torch.as_tensor(text.matrix))
        if self.config.cold_user_share > 0:
            self.first_items = first_items(data.train, data.n_users, self.config.cold_user_history).to(device)
        users, items = graph.user_item_pairs()
        return train_loop(
            self,
            data,
            device,
            name="graphsage",
            epoch_batches=lambda generator: shuffled_pairs(users, items, self.config.batch_size, generator),
            batch_loss=lambda batch: self.loss(*batch),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )

