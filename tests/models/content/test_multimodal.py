"""MTTV, the multimodal transformer: modality tokens and their cross-attention, new items from
their own text and metadata, gradient checkpointing, the InfoNCE term, the side-input contract,
save/load, resume, and learning the planted chains (cold items included)."""

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from models.content.item_text import ItemTextEmbeddings
from models.content.multimodal import FIELDS, Multimodal, MultimodalConfig, info_nce, item_field_rows
from models.hashing import stable_rows
from models.data import TrainingData
from models.metrics import evaluate
from models.registry import build_model, load_model, save_model, sized_to_side_inputs
from models.training import CHECKPOINT_NAME
from tests.models.conftest import CHAIN_LEN, N_CHAINS
from tests.models.graph.conftest import COLD_ITEMS, chain_of, history_batch

CPU = torch.device("cpu")
TEXT_DIM = 8
TINY = dict(text_dim=TEXT_DIM, dim=16, n_layers=1, n_heads=2, max_len=20, dropout=0.0, attribute_buckets=64,
            lr=0.01, batch_size=64, num_threads=1)  # fmt: skip


def text_of(n_items: int) -> torch.Tensor:
    """Item text embeddings: a chain one-hot plus noise, so the text says which chain an item
    belongs to; row 0 (padding) is zeros."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.zeros(n_items + 1, TEXT_DIM)
    for item in range(1, n_items + 1):
        matrix[item, chain_of(item)] = 1.0
    matrix[1:, N_CHAINS:] = 0.3 * torch.randn(n_items, TEXT_DIM - N_CHAINS, generator=generator)
    return F.normalize(matrix, dim=1)


def side(matrix: torch.Tensor) -> dict:
    return {"item_text_embeddings": ItemTextEmbeddings(matrix, "planted", 0.0, 0)}


@pytest.fixture(scope="module")
def planted(planted_split) -> TrainingData:
    """The planted chains with genres, cast and network that tell the chains apart (no year, no
    creator), one cold item per chain: no training row, no validation target."""
    data = planted_split.training_data()
    items = data.items.copy()
    chain = (items["item_idx"] - 1) // CHAIN_LEN
    items["genres"] = [f"Genre{c}|Drama" for c in chain]
    items["cast"] = [f"Actor{c}a|Actor{c}{i % 3}" for c, i in zip(chain, items["item_idx"])]
    items["network"] = [f"Net{c}" for c in chain]
    train = data.train[~data.train["item_idx"].isin(COLD_ITEMS)].reset_index(drop=True)
    valid = data.valid_cases[~data.valid_cases["target_item"].isin(COLD_ITEMS)].reset_index(drop=True)
    return TrainingData(data.n_users, data.n_items, train, valid, items, data.users)


def attached(data: TrainingData, **overrides) -> Multimodal:
    model = Multimodal(MultimodalConfig(data.n_items, **{**TINY, **overrides}))
    model.attach(data, side(text_of(data.n_items)))
    return model


@pytest.fixture(scope="module")
def untrained_and_trained(planted):
    untrained = attached(planted).eval()
    model = Multimodal(MultimodalConfig(planted.n_items, **TINY, max_epochs=30, patience=6))
    report = model.fit(planted, CPU, side_inputs=side(text_of(planted.n_items)), progress=False)
    return untrained, model, report


def valid_ndcg(model: Multimodal, data: TrainingData) -> float:
    return evaluate(model.score, data.valid_cases, data.n_items, max_len=model.history_length).metrics["all"]["ndcg@10"]


def a_window(seed: int = 0) -> torch.Tensor:
    """A left-padded training batch over the 60 planted items: LongTensor[4, 11]."""
    window = torch.randint(1, 61, (4, 11), generator=torch.Generator().manual_seed(seed))
    window[0, :3] = 0
    return window


# ----- the item encoder --------------------------------------------------------------------------


def test_metadata_fields_are_hashed_per_field_with_year_buckets_and_a_value_cap():
    items = pd.DataFrame({
        "item_idx": [2, 1, 3],
        "genres": ["Drama|Comedy", "", "Drama"],
        "cast": ["A|B|C|D", None, "A"],
        "release_date": ["1997-03-01", "", "1999-12-31"],
    })  # fmt: skip
    rows = item_field_rows(items, 3, buckets=1000, max_values=3, year_span=5)
    assert rows.shape == (4, len(FIELDS), 3)
    genres, cast, network, year, creator = range(len(FIELDS))
    assert torch.all(rows[0] == 0) and torch.all(rows[1] == 0)  # padding; an item with no metadata
    assert (rows[2, genres] != 0).tolist() == [True, True, False] and (rows[2, cast] != 0).all()  # first 3 actors
    assert rows[2, genres, 0] == rows[3, genres, 0]  # same value, same row
    assert rows[3, genres, 0] == stable_rows(["genres:Drama"], 1000)[0]  # hashed with the field's name
    assert rows[2, year, 0] == rows[3, year, 0] != 0  # 1997 and 1999: the 1995 bucket
    assert torch.all(rows[:, network] == 0) and torch.all(rows[:, creator] == 0)  # columns absent
    assert rows.min() >= 0 and rows.max() < 1000


def test_shapes_of_tokens_vectors_and_scores(planted):
    model = attached(planted, dropout=0.1).train()
    items = torch.tensor([1, 5, 33, 60])
    tokens, present = model.modality_tokens(items)
    assert tokens.shape == (4, 1 + len(FIELDS), 16) and present.shape == (4, 1 + len(FIELDS))
    assert present.tolist() == [[True, True, True, True, False, False]] * 4  # text, genres, cast, network
    assert model.embed_items(items).shape == (4, 16)
    assert model.item_table().shape == (planted.n_items + 1, 16)
    model.eval()
    assert model.score(history_batch([1, 0], [[0, 1, 2], [3, 4, 6]])).shape == (2, planted.n_items + 1)
    assert torch.all(model.item_vectors[0] == 0)


def test_cross_attention_weights_sum_to_one_over_the_present_tokens(planted):
    model = attached(planted).eval()
    items = torch.arange(1, planted.n_items + 1)
    tokens, present = model.modality_tokens(items)
    query = model.id_emb(torch.where(model.item_trained[items], items, 0))  # cold items: the unknown id
    fused, weights = model.fusion(query, tokens, present, need_weights=True)
    assert weights.shape == present.shape
    torch.testing.assert_close(weights.sum(1), torch.ones(len(items)))
    assert torch.all(weights[~present] == 0) and torch.all(weights[present] > 0)
    torch.testing.assert_close(fused, model.embed_items(items))


def test_a_new_items_vector_follows_its_own_text_and_no_other(planted):
    model = attached(planted).eval()
    cold, other = COLD_ITEMS[0], COLD_ITEMS[1]
    before = model.item_vectors.clone()
    text = text_of(planted.n_items)
    text[cold] = F.normalize(torch.randn(TEXT_DIM, generator=torch.Generator().manual_seed(1)), dim=0)
    model.attach_text(text)  # in eval: the table is re-fused at once
    assert not torch.allclose(model.item_vectors[cold], before[cold])
    changed = (model.item_vectors != before).any(1)
    assert changed.nonzero().squeeze(1).tolist() == [cold]
    text[other] = text[other].flip(0)
    model.attach_text(text)
    assert (model.item_vectors != before).any(1).nonzero().squeeze(1).tolist() == sorted([cold, other])


def test_items_without_interactions_query_with_the_unknown_id(planted):
    """A cold item never reads its own id row; a trained item does."""
    model = attached(planted).eval()
    items = torch.tensor([COLD_ITEMS[0], 1])
    before = model.embed_items(items)
    with torch.no_grad():
        model.id_emb.weight[items] += 3.0
    after = model.embed_items(items)
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])


def test_items_trained_without_their_id_are_computed_as_new_items(planted):
    """id_dropout: an item drawn in a step is fused exactly as an item without interactions; with
    (almost) every item drawn, every query is the unknown id."""
    model = attached(planted, id_dropout=0.999999).train()
    dropped = model.item_table()
    model.item_trained.zero_()
    torch.testing.assert_close(dropped, model.item_table())


# ----- losses ------------------------------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(planted):
    """With dropout, id dropout and the InfoNCE on: the recomputation replays the RNG."""
    runs = []
    for flag in (False, True):
        model = attached(planted, n_layers=2, dropout=0.2, id_dropout=0.3, contrastive_weight=0.5,
                         contrastive_items=16, gradient_checkpointing=flag).train()  # fmt: skip
        torch.manual_seed(0)
        loss = model.loss(a_window())
        loss.backward()
        runs.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (loss_plain, grads_plain), (loss_checkpointed, grads_checkpointed) = runs
    torch.testing.assert_close(loss_checkpointed, loss_plain)
    assert grads_plain.keys() == grads_checkpointed.keys() and "fusion.attn.in_proj_weight" in grads_plain
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_checkpointed[name], grad, msg=name)


def test_info_nce_matches_a_hand_computed_3x3_case():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    t = 0.5
    unit = lambda v: [x / math.hypot(*v) for x in v]  # noqa: E731
    cos = [[sum(x * y for x, y in zip(unit(a_i.tolist()), unit(b_j.tolist()))) for b_j in b] for a_i in a]
    a_to_b = [-cos[i][i] / t + math.log(sum(math.exp(cos[i][j] / t) for j in range(3))) for i in range(3)]
    b_to_a = [-cos[i][i] / t + math.log(sum(math.exp(cos[j][i] / t) for j in range(3))) for i in range(3)]
    expected = (sum(a_to_b) / 3 + sum(b_to_a) / 3) / 2
    assert info_nce(a, b, t).item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_weight_zero_is_the_plain_recommendation_loss(planted):
    model = attached(planted, dropout=0.1, id_dropout=0.3, contrastive_weight=0.0).train()
    window = a_window()
    torch.manual_seed(0)
    loss = model.loss(window)
    torch.manual_seed(0)
    plain = model.recommendation_loss(model.item_table(), window[:, :-1], window[:, 1:])
    torch.testing.assert_close(loss, plain)


def test_the_contrastive_term_is_added_with_its_weight(planted):
    model = attached(planted, contrastive_weight=0.25, contrastive_items=16).eval()  # no dropout
    window = a_window()
    torch.manual_seed(0)
    loss = model.loss(window)
    torch.manual_seed(0)
    sample = model.contrastive_sample()
    assert len(sample) == 16 and len(set(sample.tolist())) == 16 and sample.min() >= 1
    plain = model.recommendation_loss(model.item_table(), window[:, :-1], window[:, 1:])
    torch.testing.assert_close(loss, plain + 0.25 * model.contrastive_loss(sample))


def test_the_two_views_are_text_alone_and_metadata_alone(planted):
    """The text view moves with the text only, the metadata view with the metadata only; items
    with no metadata at all are left out of the InfoNCE (nothing to contrast: 0)."""
    model = attached(planted).eval()
    items = torch.tensor([1, 2, 30])
    base = model.contrastive_loss(items)
    with torch.no_grad():
        model.attribute_emb.weight.add_(0.5)
    assert model.contrastive_loss(items) != base
    model.item_fields.zero_()
    assert model.contrastive_loss(items).item() == 0.0


def test_an_untrained_model_starts_near_the_uniform_guess(planted):
    model = attached(planted, dim=64, n_heads=4).eval()
    with torch.no_grad():
        loss = model.recommendation_loss(model.item_table(), a_window()[:, :-1], a_window()[:, 1:])
    assert abs(loss.item() - math.log(planted.n_items)) < 1.0, (loss.item(), math.log(planted.n_items))


# ----- scoring and the interface -----------------------------------------------------------------


def test_left_padding_changes_no_score_and_an_empty_history_is_finite(planted):
    model = attached(planted).eval()
    narrow = model.score(history_batch([1, 0], [[1, 2], [0, 22]]))
    wide = model.score(history_batch([1, 0], [[0, 0, 0, 1, 2], [0, 0, 0, 0, 22]]))
    torch.testing.assert_close(narrow, wide)
    assert torch.isfinite(model.score(history_batch([0], [[0, 0, 0]]))).all()


def test_missing_or_mismatched_text_names_the_side_input(planted):
    model = Multimodal(MultimodalConfig(planted.n_items, **TINY, max_epochs=1))
    with pytest.raises(ValueError, match="item_text_embeddings.*text_dim"):
        model.fit(planted, CPU, progress=False)
    wrong = side(torch.zeros(planted.n_items + 1, TEXT_DIM + 1))
    with pytest.raises(ValueError, match=r"\(61, 8\).*got \(61, 9\)"):
        model.fit(planted, CPU, side_inputs=wrong, progress=False)


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="id_dropout"):
        MultimodalConfig(10, id_dropout=1.0)
    with pytest.raises(ValueError, match="divisible"):
        MultimodalConfig(10, dim=10, n_heads=3)
    with pytest.raises(ValueError, match="temperature"):
        MultimodalConfig(10, temperature=0.0)
    with pytest.raises(ValueError, match="attribute_buckets"):
        MultimodalConfig(10, attribute_buckets=1)


def test_registry_builds_it_with_the_text_width_of_the_side_input():
    text = side(torch.zeros(11, 24))
    assert sized_to_side_inputs("multimodal", {"dim": 16}, text) == {"text_dim": 24, "dim": 16}
    model = build_model("multimodal", 10, {"text_dim": 24, "dim": 16})
    assert isinstance(model, Multimodal) and model.config.text_dim == 24


def test_save_load_round_trip_gives_identical_scores(untrained_and_trained, tmp_path):
    _, model, _ = untrained_and_trained
    save_model(tmp_path / "m.pt", "multimodal", model)
    family, loaded = load_model(tmp_path / "m.pt")
    batch = history_batch([1, 0, 7], [[0, 1, 2], [3, 4, 5], [21, 22, 23]])
    assert family == "multimodal" and loaded.config == model.config
    assert torch.equal(loaded.score(batch), model.score(batch))


def test_resume_from_checkpoint_continues_at_next_epoch(planted, tmp_path):
    text = side(text_of(planted.n_items))
    config = MultimodalConfig(planted.n_items, **{**TINY, "dropout": 0.1}, max_epochs=3, patience=100)
    straight = Multimodal(config)
    straight.fit(planted, CPU, side_inputs=text, progress=False)
    interrupted = Multimodal(MultimodalConfig(planted.n_items, **{**TINY, "dropout": 0.1}, max_epochs=2, patience=100))
    interrupted.fit(planted, CPU, side_inputs=text, progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed, seen = Multimodal(config), []
    report = resumed.fit(planted, CPU, side_inputs=text, progress=False, on_epoch=seen.append, checkpoint_dir=tmp_path)
    assert [e.epoch for e in seen] == [2] and [e.epoch for e in report.epochs] == [0, 1, 2]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


# ----- learning the planted chains ---------------------------------------------------------------


def test_fit_beats_the_untrained_model_on_validation_ndcg(untrained_and_trained, planted):
    untrained, model, report = untrained_and_trained
    before, after = valid_ndcg(untrained, planted), valid_ndcg(model, planted)
    assert after > before + 0.3, (before, after)
    assert report.best_valid["ndcg@10"] == pytest.approx(after)
    assert report.epochs[-1].train_loss < report.epochs[0].train_loss


def test_cold_items_are_reached_through_their_text_and_metadata(untrained_and_trained):
    """Items without a training row: a history on chain c ranks chain c's cold item above the
    other chains' cold items, and on average above most of the other chains' items."""
    _, model, _ = untrained_and_trained
    assert not model.item_trained[COLD_ITEMS].any()
    above_other_chains = []
    for chain, cold in enumerate(COLD_ITEMS):
        other_chains = torch.tensor([i for i in range(1, N_CHAINS * CHAIN_LEN + 1) if chain_of(i) != chain])
        for start in (2, 8, 13):
            history = [chain * CHAIN_LEN + k for k in range(start, start + 4)]
            scores = model.score(history_batch([0], [history]))[0]
            others = [i for i in COLD_ITEMS if i != cold]
            assert scores[cold] > scores[others].max(), (chain, start, scores[COLD_ITEMS])
            above_other_chains.append((scores[other_chains] < scores[cold]).float().mean().item())
    assert sum(above_other_chains) / len(above_other_chains) > 0.75, above_other_chains
