"""Side inputs: what some families need besides the split, computed once per catalogue and cached.

Each is a thin task over a plain function in ``models/``; ``tasks.train.train_models`` calls one
only when a requested family's spec names it, and hands its file to exactly those families.
"""

from __future__ import annotations

import time

from flytekit import task
from flytekit.types.file import FlyteFile

from tasks.common import DATA_CACHE, DATA_RESOURCES, SMALL_GPU, Table, work_dir
from tasks.errors import user_errors


@task(cache=DATA_CACHE, retries=1, **DATA_RESOURCES)
def interaction_graph(train: Table, items: Table, users: Table) -> FlyteFile:
    """The user-item graph of the training part (PyG edge_index, both directions, deduplicated)."""
    from models.graph.interaction_graph import build_interaction_graph

    n_users = int(users["user_idx"].max()) if len(users) else 0
    graph = build_interaction_graph(train, n_users, int(items["item_idx"].max()))
    path = work_dir("interaction-graph") / "interaction_graph.pt"
    graph.save(path)
    print(f"interaction graph: {graph.n_pairs:,} user-item pairs, {graph.num_nodes:,} nodes ({graph.seconds:.2f}s)")
    return FlyteFile(str(path))


@task(cache=DATA_CACHE, retries=1, **SMALL_GPU)
def item_text_embeddings(items: Table, encoder: str = "all-MiniLM-L6-v2") -> FlyteFile:
    """Sentence embeddings of every item's text (title, year, genres, plot, cast, ...), by a
    sentence-transformers model given by name or local path; computed once per catalogue."""
    from models.content.item_text import encode_item_text
    from models.device import pick_device

    started = time.perf_counter()
    with user_errors():
        embeddings = encode_item_text(items, encoder=encoder, device=str(pick_device()))
    path = work_dir("item-text-embeddings") / "item_text_embeddings.pt"
    embeddings.save(path)
    print(
        f"item text embeddings: {embeddings.n_items:,} items x {embeddings.dim} ({encoder}), "
        f"{embeddings.n_without_text:,} with no text beyond the title, {time.perf_counter() - started:.1f}s"
    )
    return FlyteFile(str(path))
