"""LightGCN (He et al. 2020): ID embeddings smoothed over the user–item graph, trained with BPR.

Every user and item has one ego embedding e⁰. K light graph convolutions (PyG's ``LGConv``: no
weights, no non-linearity, symmetric normalisation D^-½ A D^-½, no self-loops) give
e^(k+1) = Â e^k over the training part's bipartite graph, and the final embedding is the layer
mean (e⁰ + e¹ + ... + e^K) / (K + 1). A user's score for an item is the dot product of their final
embeddings. Training: BPR with one uniformly drawn item the user has not interacted with per
training pair, plus L2 on the ego embeddings of the batch; the whole graph is propagated for each
batch, as in the paper.

LightGCN is transductive: only users with training edges have a learned embedding. A cold user
(user_idx 0, or a user with no training edges) is scored with a fallback: the mean of the final
embeddings of the items in their history.

The graph is a side input (``side_inputs["interaction_graph"]``) and is not part of the weights:
after training the final embeddings are kept as buffers, so ``score`` needs only the state_dict.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from models.data import PAD, HistoryBatch, TrainingData
from models.graph.interaction_graph import InteractionGraph, check_split_size, graph_input, known_user_rows
from models.interface import EpochLog, FitReport
from models.training import train_loop


@dataclass(frozen=True)
class LightGCNConfig:
    n_items: int
    n_users: int = 0
    dim: int = 64
    n_layers: int = 3
    reg: float = 1e-4  # L2 on the batch's ego embeddings, as in the paper
    init_std: float = 0.1  # ego embeddings ~ N(0, init_std²), as in the authors' code
    lr: float = 1e-3
    weight_decay: float = 0.0  # AdamW's decay; LightGCN regularises through ``reg`` instead
    batch_size: int = 2048  # (user, positive, negative) triples per step
    max_epochs: int = 200
    patience: int = 10  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512
    # Mini-batch training with neighbour sampling instead of propagating the whole graph per
    # batch: each batch's users and items are propagated over ``fanouts[d]`` neighbours sampled
    # per node at depth d (one fanout per layer), so memory follows the batch, not the graph.
    sampling: bool = False
    fanouts: tuple[int, ...] = (10, 5, 5)

    def __post_init__(self) -> None:
        if self.sampling and (len(self.fanouts) != self.n_layers or min(self.fanouts, default=1) < 1):
            raise ValueError(f"fanouts needs one value >= 1 per layer ({self.n_layers}), got {self.fanouts}")


class LightGCN(nn.Module):
    def __init__(self, config: LightGCNConfig):
        super().__init__()
        self.config = config
        self.history_length = None  # the whole history; only the cold-user fallback reads it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.user_emb = nn.Embedding(config.n_users + 1, config.dim)
            self.item_emb = nn.Embedding(config.n_items + 1, config.dim)
            nn.init.normal_(self.user_emb.weight, std=config.init_std)
            nn.init.normal_(self.item_emb.weight, std=config.init_std)
        from torch_geometric.nn import LGConv  # imported here: PyG costs seconds, and the registry imports this file

        self.convs = nn.ModuleList(LGConv(normalize=False) for _ in range(config.n_layers))
        # What score reads, filled from the graph by refresh_embeddings(): saved with the weights.
        self.register_buffer("user_final", torch.zeros(config.n_users + 1, config.dim))
        self.register_buffer("item_final", torch.zeros(config.n_items + 1, config.dim))
        self.register_buffer("user_has_edges", torch.zeros(config.n_users + 1, dtype=torch.bool))
        # The normalised graph (sparse CSR Â): attached by fit / attach_graph, never saved.
        self.register_buffer("adjacency", None, persistent=False)
        self.sampler: NeighbourSampler | None = None  # with sampling: built by fit from the graph

    # ----- the graph -----------------------------------------------------------------------

    def attach_graph(self, graph: InteractionGraph) -> None:
        """Use ``graph`` for propagation: Â = D^-½ A D^-½ is built once here, as a sparse CSR
        matrix (its sparse matmul is ~2.5x faster on CPU than per-edge gather/scatter)."""
        if (graph.n_users, graph.n_items) != (self.config.n_users, self.config.n_items):
            raise ValueError(
                f"graph has {graph.n_users} users and {graph.n_items} items, the config "
                f"{self.config.n_users} and {self.config.n_items}"
            )
        n = graph.num_nodes
        from torch_geometric.nn.conv.gcn_conv import gcn_norm

        edge_index, edge_weight = gcn_norm(graph.edge_index, None, n, add_self_loops=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            # row = target, column = source: PyG's message flow, so Â @ x sums over in-edges
            adjacency = torch.sparse_coo_tensor(
                edge_index.flip(0), edge_weight, (n, n), check_invariants=True
            ).coalesce().to_sparse_csr()
        self.adjacency = adjacency.to(self.item_emb.weight.device)
        users, _ = graph.user_item_pairs()
        has_edges = torch.zeros(self.config.n_users + 1, dtype=torch.bool)
        has_edges[users] = True
        self.user_has_edges.copy_(has_edges)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings (layer mean over 0..K): (FloatTensor[n_users + 1, D],
        FloatTensor[n_items + 1, D]). Needs an attached graph."""
        if self.adjacency is None:
            raise RuntimeError("LightGCN.propagate needs a graph: call attach_graph or fit first")
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])  # node order of the graph
        total = x
        for conv in self.convs:
            x = conv(x, self.adjacency)
            total = total + x
        final = total / (len(self.convs) + 1)
        return final[: self.config.n_users + 1], final[self.config.n_users + 1 :]

    @torch.no_grad()
    def refresh_embeddings(self) -> None:
        """Store the current final embeddings in the buffers that ``score`` reads."""
        user_final, item_final = self.propagate()
        self.user_final.copy_(user_final)
        self.item_final.copy_(item_final)

    def train(self, mode: bool = True) -> "LightGCN":
        # Switching to eval (before each validation, and after fit loads the best weights)
        # re-propagates, so score always matches the current ego embeddings.
        super().train(mode)
        if not mode and self.adjacency is not None:
            self.refresh_embeddings()
        return self

    # ----- loss and scores -----------------------------------------------------------------

    def sampled_final(self, nodes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Final embeddings of ``nodes`` (graph node ids) estimated from sampled neighbourhoods:
        FloatTensor[len(nodes), D]. Unbiased for each layer's sum over neighbours (uniform
        sampling with replacement, each draw weighted by deg(v) / fanout)."""
        if self.sampler is None:
            raise RuntimeError("LightGCN.sampled_final needs a sampler: fit with sampling=True builds it")
        blocks = self.sampler.blocks(nodes, self.config.fanouts, generator)
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        device = ego.device
        k_layers = len(blocks)
        # layers[d][k]: layer-k embeddings of the nodes at depth d (k <= K - d)
        layers = [[ego[b.sources.to(device)]] for b in blocks] + [[ego[blocks[-1].targets.to(device)]]]
        weights = [b.weights.to(device) for b in blocks]
        for k in range(1, k_layers + 1):
            for d in range(k_layers - k, -1, -1):
                layers[d].append(weights[d] @ layers[d + 1][k - 1])
        return torch.stack(layers[0]).mean(0)

    def loss(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, sample_seed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """BPR + reg * L2 of the ego embeddings (½‖·‖², averaged over the batch).

        users, positives, negatives: LongTensor[N] of user_idx / item_idx. With ``sampling``
        the final embeddings come from neighbourhoods sampled with ``sample_seed``.
        """
        if self.config.sampling and self.training:
            if sample_seed is None:
                raise ValueError("sampling needs each batch's sample_seed (fit's batches carry one)")
            offset = self.config.n_users + 1
            seeds, where = torch.unique(torch.cat([users, positives + offset, negatives + offset]), return_inverse=True)
            final = self.sampled_final(seeds, torch.Generator().manual_seed(int(sample_seed)))
            u, p, n = final[where].split(len(users))
        else:
            user_final, item_final = self.propagate()
            u, p, n = user_final[users], item_final[positives], item_final[negatives]
        bpr = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean()
        ego = (
            self.user_emb(users).pow(2).sum()
            + self.item_emb(positives).pow(2).sum()
            + self.item_emb(negatives).pow(2).sum()
        )
        return bpr + self.config.reg * 0.5 * ego / len(users)

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """user_final · item_final -> FloatTensor[B, n_items + 1]; for a cold user (no training
        edges, or user_idx 0 / out of range) the mean final embedding of their history items
        stands in for the user's."""
        device = self.item_final.device
        items, users = batch.items.to(device), batch.users.to(device)
        users = known_user_rows(users, self.user_has_edges)
        warm = users > 0
        # history mean as counts @ item_final: memory B x n_items, whatever the history length
        counts = torch.zeros(len(items), self.config.n_items + 1, device=device)
        counts.scatter_add_(1, items, torch.ones_like(items, dtype=counts.dtype))
        counts[:, PAD] = 0.0
        from_history = counts @ self.item_final / counts.sum(1, keepdim=True).clamp_min(1.0)
        queries = torch.where(warm.unsqueeze(-1), self.user_final[users], from_history)
        return queries @ self.item_final.T

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
        """BPR on the graph's (user, item) pairs; ``side_inputs["interaction_graph"]`` (an
        ``InteractionGraph`` or a path to one saved) is built from ``data.train`` when absent."""
        check_split_size(data, self.config)
        graph = graph_input(side_inputs, data)
        self.attach_graph(graph)
        pairs = BPRPairs(graph, self.config.batch_size)
        epoch_batches = pairs.epoch_batches
        if self.config.sampling:
            self.sampler = NeighbourSampler(graph)

            def epoch_batches(generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
                # each batch's sampling seed comes from the loop's generator, which checkpoints
                # save: a resumed run samples exactly what an unbroken one would
                for batch in pairs.epoch_batches(generator):
                    yield (*batch, torch.randint(0, 2**62, (1,), generator=generator))

        return train_loop(
            self,
            data,
            device,
            name="lightgcn",
            epoch_batches=epoch_batches,
            batch_loss=lambda batch: self.loss(*batch),
            progress=progress,
            on_epoch=on_epoch,
            checkpoint_dir=checkpoint_dir,
        )


class BPRPairs:
    """Every distinct training (user, item) pair once per epoch, shuffled, each with one
    negative drawn uniformly from the items that user has no training edge with.

    Exact in one pass, no rejection rounds: the user's r-th non-positive item (r uniform in
    0..n_items - degree - 1) is r + 1 + the number of their positives with at most r
    non-positives before them, which one ``searchsorted`` over all users' positives finds.
    """

    def __init__(self, graph: InteractionGraph, batch_size: int):
        self.users, self.items = graph.user_item_pairs()  # sorted by (user, item)
        self.n_items = graph.n_items
        self.batch_size = batch_size
        self.degree = torch.bincount(self.users, minlength=graph.n_users + 1)
        self.first = torch.cumsum(self.degree, 0) - self.degree  # user's first row in the pairs
        rank = torch.arange(len(self.users)) - self.first[self.users]
        # non-positives below each positive item (items - 1 smaller items, rank of them positive):
        # non-decreasing within a user, so these keys are sorted
        self.gap_keys = self.users * (self.n_items + 1) + (self.items - 1 - rank)

    def epoch_batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield (users, positives, negatives) LongTensors[b] for one epoch."""
        order = torch.randperm(len(self.users), generator=generator)
        users, positives = self.users[order], self.items[order]
        negatives = self.sample_negatives(users, generator)
        for start in range(0, len(users), self.batch_size):
            stop = start + self.batch_size
            yield users[start:stop], positives[start:stop], negatives[start:stop]

    def sample_negatives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """LongTensor[N] of item_idx, uniform over each user's non-positive items (a user who
        has every item gets item n_items: there is no negative to give)."""
        free = self.n_items - self.degree[users]
        r = (torch.rand(users.shape, generator=generator, dtype=torch.float64) * free).long()
        r = torch.minimum(r, (free - 1).clamp_min(0))
        below = torch.searchsorted(self.gap_keys, users * (self.n_items + 1) + r, right=True)
        return (r + 1 + below - self.first[users]).clamp(max=self.n_items)


@dataclass
class Block:
    """One hop of a sampled neighbourhood: ``weights`` [len(sources), len(targets)] (sparse CSR)
    maps the next depth's embeddings (``targets``, node ids) to this depth's (``sources``)."""

    sources: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor


class NeighbourSampler:
    """Uniform neighbour sampling with replacement over a graph's CSR, vectorised (no Python
    loop over nodes or edges): what lets LightGCN train on graphs whose full propagation (and
    its saved activations) would not fit in memory."""

    def __init__(self, graph: InteractionGraph):
        source, target = graph.edge_index
        n = graph.num_nodes
        order = torch.argsort(source * n + target)
        self.neighbours = target[order]
        counts = torch.bincount(source, minlength=n)
        self.rowptr = torch.zeros(n + 1, dtype=torch.long)
        self.rowptr[1:] = counts.cumsum(0)
        self.degree = counts.float()

    def blocks(self, seeds: torch.Tensor, fanouts: tuple[int, ...], generator: torch.Generator) -> list[Block]:
        """One Block per depth: depth 0's sources are ``seeds``; each next depth holds the
        previous one's nodes and their sampled neighbours. A draw of neighbour w for node v
        weighs deg(v) / fanout * 1 / sqrt(deg(v) deg(w)) (LightGCN's normalisation)."""
        blocks, sources = [], seeds.cpu()
        for fanout in fanouts:
            degree = self.degree[sources]
            draw = (torch.rand(len(sources), fanout, generator=generator, dtype=torch.float64) * degree.unsqueeze(1).double()).long()
            has = degree > 0
            picked = self.neighbours[(self.rowptr[sources].unsqueeze(1) + draw)[has]]  # [n_has, fanout]
            row = torch.arange(len(sources)).unsqueeze(1).expand(-1, fanout)[has]
            targets = torch.unique(torch.cat([sources, picked.reshape(-1)]))
            column = torch.searchsorted(targets, picked)
            weight = (degree[row] / fanout) / torch.sqrt(degree[row] * self.degree[picked])
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                matrix = torch.sparse_coo_tensor(
                    torch.stack([row.reshape(-1), column.reshape(-1)]), weight.reshape(-1), (len(sources), len(targets)),
                    check_invariants=False,  # built here from valid indices
                ).coalesce().to_sparse_csr()
            blocks.append(Block(sources, targets, matrix))
            sources = targets
        return blocks
