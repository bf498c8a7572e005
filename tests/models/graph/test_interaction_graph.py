from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from models.graph.interaction_graph import (
    InteractionGraph,
    attention_into_one_node,
    build_hetero_graph,
    build_interaction_graph,
    cold_user_pairs,
    distinct_history,
    fill_missing_buffer,
    first_items,
    item_log_counts,
    with_short_history_prior,
)

# user 1 rated item 2 twice: one pair. Pairs: (1,1) (1,2) (2,2) (3,4).
TRAIN = pd.DataFrame(
    {"user_idx": [1, 1, 1, 2, 3], "item_idx": [2, 1, 2, 2, 4], "rating": 4.0, "timestamp": [1, 2, 3, 4, 5]}
)
N_USERS, N_ITEMS = 3, 4


def _edges(edge_index: torch.Tensor) -> list[tuple[int, int]]:
    return sorted(map(tuple, edge_index.T.tolist()))


def test_repeated_pairs_become_one_edge_each_way():
    graph = build_interaction_graph(TRAIN, N_USERS, N_ITEMS)
    assert graph.edge_index.shape == (2, 8) and graph.n_pairs == 4
    assert len(set(_edges(graph.edge_index))) == 8


def test_edges_are_symmetric():
    graph = build_interaction_graph(TRAIN, N_USERS, N_ITEMS)
    assert _edges(graph.edge_index) == _edges(graph.edge_index.flip(0))


def test_users_keep_their_index_and_items_are_offset_by_n_users_plus_one():
    graph = build_interaction_graph(TRAIN, N_USERS, N_ITEMS)
    assert graph.num_nodes == N_USERS + N_ITEMS + 2 and graph.item_offset == 4
    assert graph.edge_index[:, : graph.n_pairs].tolist() == [[1, 1, 2, 3], [5, 6, 6, 8]]
    users, items = graph.user_item_pairs()
    assert list(zip(users.tolist(), items.tolist())) == [(1, 1), (1, 2), (2, 2), (3, 4)]


def test_no_edge_touches_the_unknown_user_or_the_padding_item():
    graph = build_interaction_graph(TRAIN, N_USERS, N_ITEMS)
    assert not torch.isin(graph.edge_index, torch.tensor([0, graph.item_offset])).any()


def test_index_outside_the_index_space_raises():
    with pytest.raises(ValueError, match="item_idx must lie in 1..3"):
        build_interaction_graph(TRAIN, N_USERS, 3)
    with pytest.raises(ValueError, match="user_idx must lie in 1..2"):
        build_interaction_graph(TRAIN, 2, N_ITEMS)


def test_save_and_load_round_trip(tmp_path):
    graph = build_interaction_graph(TRAIN, N_USERS, N_ITEMS)
    graph.save(tmp_path / "graph.pt")
    assert set(torch.load(tmp_path / "graph.pt", weights_only=True)) == {"edge_index", "n_users", "n_items", "seconds"}
    loaded = InteractionGraph.load(tmp_path / "graph.pt")
    assert torch.equal(loaded.edge_index, graph.edge_index)
    assert (loaded.n_users, loaded.n_items, loaded.seconds) == (N_USERS, N_ITEMS, graph.seconds)


ITEMS = pd.DataFrame({
    "item_idx": [1, 2, 3, 4],
    "genres": ["Action|Comedy", "Comedy", "", "Drama|Action"],
    "cast": ["Ann|Bob", "Bob", "Bob|Cy", pd.NA],
    "creator": ["", "", "", ""],  # no value anywhere: no creator nodes
})  # fmt: skip


def test_hetero_graph_has_a_node_type_per_item_attribute_with_values():
    graph = build_hetero_graph(TRAIN, ITEMS, N_USERS, N_ITEMS)
    assert set(graph.node_types) == {"user", "item", "genre", "cast"}
    assert (graph["user"].num_nodes, graph["item"].num_nodes) == (N_USERS + 1, N_ITEMS + 1)
    assert graph["genre"].names == ["Action", "Comedy", "Drama"]
    assert graph["cast"].names == ["Ann", "Bob", "Cy"]
    assert set(graph.edge_types) == {
        ("user", "rates", "item"), ("item", "rev_rates", "user"),
        ("item", "has_genre", "genre"), ("genre", "rev_has_genre", "item"),
        ("item", "has_cast", "cast"), ("cast", "rev_has_cast", "item"),
    }  # fmt: skip


def test_hetero_graph_edges_follow_the_item_table():
    graph = build_hetero_graph(TRAIN, ITEMS, N_USERS, N_ITEMS)
    assert _edges(graph["user", "rates", "item"].edge_index) == [(1, 1), (1, 2), (2, 2), (3, 4)]
    genre = _edges(graph["item", "has_genre", "genre"].edge_index)
    assert genre == [(1, 0), (1, 1), (2, 1), (4, 0), (4, 2)]  # item 3 has no genre
    assert _edges(graph["genre", "rev_has_genre", "item"].edge_index) == sorted((g, i) for i, g in genre)
    assert _edges(graph["item", "has_cast", "cast"].edge_index) == [(1, 0), (1, 1), (2, 1), (3, 1), (3, 2)]
    graph.validate()


def test_hetero_graph_without_metadata_columns_has_users_and_items_only():
    graph = build_hetero_graph(TRAIN, ITEMS[["item_idx"]], N_USERS, N_ITEMS)
    assert set(graph.node_types) == {"user", "item"}


def test_items_without_training_edges_leave_the_softmax():
    from models.graph.interaction_graph import without_untrained_items

    logits = torch.arange(8.0).reshape(2, 4)  # items 1..4
    has_edges = torch.tensor([False, True, False, True, True])  # item 2 has no training edge
    masked = without_untrained_items(logits, has_edges)
    assert torch.isinf(masked[:, 1]).all() and (masked[:, [0, 2, 3]] == logits[:, [0, 2, 3]]).all()
    # the other items' softmax is the one over the training catalogue alone
    torch.testing.assert_close(masked.softmax(1)[:, [0, 2, 3]], logits[:, [0, 2, 3]].softmax(1))


def test_first_items_are_each_users_oldest_training_items_padded():
    # user 1: 2, 1, 2 in time order; user 2: 2; user 3: 4; user 4 has no training rows
    first = first_items(TRAIN, n_users=4, count=2)
    assert first.tolist() == [[0, 0], [2, 1], [2, 0], [4, 0], [0, 0]]
    assert first_items(TRAIN, n_users=4, count=5)[1].tolist() == [2, 1, 2, 0, 0]


def test_first_items_refuses_a_table_not_ordered_by_user():
    with pytest.raises(ValueError, match="ordered by user"):
        first_items(TRAIN.iloc[::-1], n_users=N_USERS, count=2)


def test_a_pair_whose_item_the_cold_user_is_shown_is_never_trained_as_cold():
    first = first_items(TRAIN, n_users=4, count=1)  # user 1 shown item 2, user 2 item 2, user 3 item 4
    users = torch.tensor([1, 1, 2, 3, 4])
    positives = torch.tensor([1, 2, 3, 4, 1])  # (1,2) and (3,4) are shown items; user 4 has no history
    torch.manual_seed(0)
    chosen = cold_user_pairs(users, positives, first, share=0.999999)
    assert chosen.tolist() == [True, False, True, False, False]
    assert not cold_user_pairs(users, positives, first, share=0.0).any()


@pytest.mark.parametrize("n_src", [0, 1, 7])
def test_one_node_attention_equals_the_gatv2_conv(n_src):
    """The serving path's dense GATv2 message into one node = PyG's GATv2Conv on the same edges."""
    from torch_geometric.nn import GATv2Conv

    torch.manual_seed(0)
    conv = GATv2Conv((8, 8), 8, heads=2, concat=False, add_self_loops=False).eval()
    torch.nn.init.normal_(conv.bias)  # PyG starts it at zero; a zero bias would hide a missing one
    src, dst = torch.randn(n_src, 8), torch.randn(1, 8)
    edges = torch.stack([torch.arange(n_src), torch.zeros(n_src, dtype=torch.long)])
    with torch.no_grad():
        torch.testing.assert_close(attention_into_one_node(conv, src, dst), conv((src, dst), edges), rtol=1e-5, atol=1e-6)


def test_one_node_attention_refuses_a_conv_it_does_not_compute():
    from torch_geometric.nn import GATv2Conv

    with pytest.raises(ValueError, match="concat=False"):
        attention_into_one_node(GATv2Conv((8, 8), 8, heads=2, concat=True), torch.randn(3, 8), torch.randn(1, 8))


def test_distinct_history_drops_padding_and_repeats():
    assert distinct_history(torch.tensor([0, 0, 5, 2, 5, 9])).tolist() == [2, 5, 9]
    assert distinct_history(torch.tensor([0, 0])).tolist() == []


def test_item_log_counts_count_training_users_per_item():
    users, items = build_interaction_graph(TRAIN, N_USERS, N_ITEMS).user_item_pairs()
    # pairs (1,1) (1,2) (2,2) (3,4): item 2 has two users, items 1 and 4 one, item 3 none
    torch.testing.assert_close(item_log_counts(items, N_ITEMS), torch.log1p(torch.tensor([0.0, 1, 2, 0, 1])))


def test_the_short_history_prior_moves_only_new_users_short_histories():
    scores = torch.zeros(3, 4)
    items = torch.tensor([[0, 0, 1, 2], [1, 2, 3, 1], [0, 0, 1, 2]])  # short, long (4 items), short
    batch = SimpleNamespace(items=items, users=torch.tensor([0, 0, 2]))  # new, new, known user 2
    has_edges = torch.tensor([False, True, True, False])
    log_counts = torch.tensor([0.0, 1.0, 2.0, 3.0])
    prior = with_short_history_prior(scores, batch, has_edges, log_counts, weight=0.5, max_items=3)
    torch.testing.assert_close(prior, torch.tensor([[0.0, 0.5, 1.0, 1.5], [0.0] * 4, [0.0] * 4]))
    assert with_short_history_prior(scores, batch, has_edges, log_counts, weight=0.0, max_items=3) is scores
    # user 3 has no training edges: a new user too
    batch.users = torch.tensor([3, 3, 3])
    assert with_short_history_prior(scores, batch, has_edges, log_counts, 0.5, 3)[2].tolist() == [0.0, 0.5, 1.0, 1.5]


def test_weights_saved_before_a_buffer_existed_load_with_its_default():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(2))
            self.register_buffer("added_later", torch.zeros(3))
            self.register_load_state_dict_pre_hook(fill_missing_buffer("added_later"))

    old = {"weight": torch.full((2,), 7.0)}
    model = Model()
    model.load_state_dict(old)  # strict: would raise on the missing key without the hook
    assert model.weight.tolist() == [7.0, 7.0] and model.added_later.tolist() == [0.0, 0.0, 0.0]
