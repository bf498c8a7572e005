"""CL-TV: the NT-Xent loss against a hand computation, the augmentations, the genre-aware hard
negatives, similar items, history scoring, the side-input contract, saving and resuming."""

import math
import zlib
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from models.content.contrastive import (
    CONTENT_FIELDS,
    FIELDS,
    IDENTITY_FIELDS,
    Contrastive,
    ContrastiveConfig,
    cowatched_pairs,
    info_nce,
    item_tokens,
)
from models.data import HistoryBatch, TrainingData
from models.general.popularity import Popularity, PopularityConfig
from models.metrics import evaluate
from models.registry import load_model, save_model
from models.training import CHECKPOINT_NAME
from tests.models.conftest import CHAIN_LEN, N_CHAINS

CPU = torch.device("cpu")
TEXT_DIM = 8
BUCKETS = 256
TINY = dict(text_dim=TEXT_DIM, dim=16, attribute_buckets=BUCKETS, batch_size=32, lr=0.01)
COLD_ITEMS = [5, 25, 45]  # no training interaction and no validation target
ORIGINAL, DUPLICATE = 3, 7  # item 7 is planted as a re-release of item 3
NO_GENRE, OWN_GENRE = 59, 60  # item 59 has no genre; item 60 alone has its genre


def chain_of(item: int) -> int:
    return (item - 1) // CHAIN_LEN


def batch(histories: list[list[int]]) -> HistoryBatch:
    width = max(map(len, histories))
    items = torch.tensor([[0] * (width - len(h)) + h for h in histories])
    return HistoryBatch(items, torch.zeros_like(items), torch.zeros(len(histories), dtype=torch.long))


def genres_of(item: int) -> str:
    if item == NO_GENRE:
        return ""
    if item == OWN_GENRE:
        return "Unique"
    return f"Genre{chain_of(item)}" + ("|Drama" if item % 2 == 0 else "")


@pytest.fixture(scope="module")
def catalogue(planted_split) -> TrainingData:
    """The planted chains with metadata that tells the chains apart, three cold items, and item
    7 planted as a near-duplicate of item 3 (same metadata, title "Title 3 Remastered")."""
    data = planted_split.training_data()
    items = data.items.copy()
    idx = items["item_idx"].tolist()
    source = [ORIGINAL if i == DUPLICATE else i for i in idx]  # the duplicate copies item 3's fields
    items["title"] = [f"Title {i}" + (" Remastered" if i == DUPLICATE else "") for i in idx]
    items["release_date"] = [f"{1990 + s % 20}-01-01" for s in source]
    items["kind"] = ["tv" if chain_of(s) == 2 else "movie" for s in source]
    items["genres"] = [genres_of(s) for s in source]
    items["cast"] = [f"Actor{chain_of(s)}a|Actor{chain_of(s)}{s % 3}|Extra{s}" for s in source]
    items["creator"] = [f"Director{chain_of(s)}" for s in source]
    items["network"] = [f"Net{chain_of(s)}" for s in source]
    train = data.train[~data.train["item_idx"].isin(COLD_ITEMS)].reset_index(drop=True)
    valid = data.valid_cases[~data.valid_cases["target_item"].isin(COLD_ITEMS)].reset_index(drop=True)
    return TrainingData(data.n_users, data.n_items, train, valid, items, data.users)


def text(n_items: int) -> SimpleNamespace:
    """Chain one-hot plus noise (an item's text says its chain); the duplicate's is the
    original's plus a little noise."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.zeros(n_items + 1, TEXT_DIM)
    for item in range(1, n_items + 1):
        matrix[item, chain_of(item)] = 1.0
    matrix[1:, N_CHAINS:] = 0.5 * torch.randn(n_items, TEXT_DIM - N_CHAINS, generator=generator)
    matrix[DUPLICATE] = matrix[ORIGINAL] + 0.01 * torch.randn(TEXT_DIM, generator=generator)
    return SimpleNamespace(matrix=F.normalize(matrix, dim=1))


def attached(catalogue, **config) -> Contrastive:
    model = Contrastive(ContrastiveConfig(catalogue.n_items, **{**TINY, **config}))
    model.attach(catalogue.items, text(catalogue.n_items).matrix)
    return model


@pytest.fixture(scope="module")
def trained(catalogue):
    """The default objective: contrastive plus the co-watch loss (rec_weight 1)."""
    model = Contrastive(ContrastiveConfig(catalogue.n_items, **TINY, max_epochs=15, patience=5))
    side = {"item_text_embeddings": text(catalogue.n_items)}
    report = model.fit(catalogue, CPU, side_inputs=side, progress=False)
    return model, report


@pytest.fixture(scope="module")
def encoder_only(catalogue):
    """The contrastive objective alone (rec_weight 0): neighbours by metadata and text only."""
    model = Contrastive(ContrastiveConfig(catalogue.n_items, **TINY, rec_weight=0.0, max_epochs=15, patience=5))
    model.fit(catalogue, CPU, side_inputs={"item_text_embeddings": text(catalogue.n_items)}, progress=False)
    return model


# ----- the loss -----------------------------------------------------------------------------


def test_info_nce_matches_the_hand_computed_formula():
    torch.manual_seed(0)
    z1, z2 = F.normalize(torch.randn(3, 4), dim=1), F.normalize(torch.randn(3, 4), dim=1)
    t = 0.5
    views = [z1[0], z1[1], z1[2], z2[0], z2[1], z2[2]]
    sim = [[float(a @ b) / t for b in views] for a in views]
    expected = 0.0
    for anchor in range(6):
        positive = (anchor + 3) % 6
        denominator = sum(math.exp(sim[anchor][k]) for k in range(6) if k != anchor)
        expected += -(sim[anchor][positive] - math.log(denominator)) / 6
    assert info_nce(z1, z2, t).item() == pytest.approx(expected, rel=1e-5)

    # hard negatives: item i's valid extra negatives join the denominators of both its views
    negatives = F.normalize(torch.randn(3, 2, 4), dim=2)
    valid = torch.tensor([[True, False], [True, True], [False, False]])
    expected = 0.0
    for anchor in range(6):
        item, positive = anchor % 3, (anchor + 3) % 6
        denominator = sum(math.exp(sim[anchor][k]) for k in range(6) if k != anchor)
        denominator += sum(
            math.exp(float(views[anchor] @ negatives[item, j]) / t) for j in range(2) if valid[item, j]
        )
        expected += -(sim[anchor][positive] - math.log(denominator)) / 6
    assert info_nce(z1, z2, t, negatives, valid).item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_is_lower_when_views_agree():
    torch.manual_seed(1)
    z = F.normalize(torch.randn(8, 16), dim=1)
    assert info_nce(z, z, 0.1) < info_nce(z, z.roll(1, 0), 0.1)


# ----- item fields and augmentations --------------------------------------------------------


def test_item_tokens_hash_each_field_and_leave_padding_empty(catalogue):
    tokens = item_tokens(catalogue.items, catalogue.n_items, BUCKETS, 8)
    assert tokens.shape == (catalogue.n_items + 1, len(FIELDS), 8)
    assert torch.all(tokens[0] == 0)
    genres = tokens[:, FIELDS.index("genres")]
    assert genres[2, :2].tolist() == [1 + zlib.crc32(g.encode()) % BUCKETS for g in ("Genre0", "Drama")]
    assert torch.all(genres[NO_GENRE] == 0)
    title = tokens[:, FIELDS.index("title")]
    assert (title[DUPLICATE] != 0).sum() == 3 and (title[ORIGINAL] != 0).sum() == 2  # title, 7|3, remastered
    # the near-duplicate carries the original's content fields
    for field in CONTENT_FIELDS:
        assert torch.equal(tokens[DUPLICATE, FIELDS.index(field)], tokens[ORIGINAL, FIELDS.index(field)])


def test_augmented_views_keep_identity_fields_and_change_content_fields(catalogue):
    model = attached(catalogue)
    tokens, item_text = model.tokens[1:], model.item_text[1:]
    identity = [FIELDS.index(f) for f in IDENTITY_FIELDS]
    changed = {field: 0 for field in CONTENT_FIELDS}
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        view, view_text = model.augment(tokens, item_text, generator)
        assert torch.equal(view[:, identity], tokens[:, identity])
        for field in CONTENT_FIELDS:
            f = FIELDS.index(field)
            changed[field] += int((view[:, f] != tokens[:, f]).any(1).sum())
            for row in range(len(tokens)):  # a view only removes values, never invents one
                assert set(view[row, f].tolist()) - {0} <= set(tokens[row, f].tolist())
        assert not torch.equal(view_text, item_text)
        # text dimensions are masked (zeroed), never moved
        assert torch.all((view_text == item_text) | (view_text == 0))
    assert all(count > 0 for count in changed.values()), changed


def test_field_dropout_drops_whole_content_fields_and_the_text(catalogue):
    model = attached(catalogue, field_dropout=0.999999, mask_rate=0.0, subsample=1.0)
    tokens, item_text = model.tokens[1:], model.item_text[1:]
    view, view_text = model.augment(tokens, item_text, torch.Generator().manual_seed(0))
    for field in CONTENT_FIELDS:
        assert torch.all(view[:, FIELDS.index(field)] == 0), field
    assert torch.all(view_text == 0)
    for field in IDENTITY_FIELDS:
        f = FIELDS.index(field)
        assert torch.equal(view[:, f], tokens[:, f]) and (tokens[:, f] != 0).any(1).all(), field


def test_without_augmentation_a_view_is_the_item_itself(catalogue):
    model = attached(catalogue, field_dropout=0.0, mask_rate=0.0, subsample=1.0)
    view, view_text = model.augment(model.tokens, model.item_text, torch.Generator().manual_seed(0))
    assert torch.equal(view, model.tokens) and torch.equal(view_text, model.item_text)


def test_cast_and_genre_subsampling_keeps_a_non_empty_subset(catalogue):
    model = attached(catalogue, field_dropout=0.0, mask_rate=0.0, subsample=0.01)
    tokens = model.tokens[1:]
    shrunk = 0
    for seed in range(5):
        view, _ = model.augment(tokens, None, torch.Generator().manual_seed(seed))
        for field in ("genres", "cast"):
            f = FIELDS.index(field)
            for row in range(len(tokens)):
                original = set(tokens[row, f].tolist()) - {0}
                kept = set(view[row, f].tolist()) - {0}
                assert kept <= original and (kept or not original)
                shrunk += len(kept) < len(original)
        for field in ("kind", "creator", "network"):  # not subsampled
            assert torch.equal(view[:, FIELDS.index(field)], tokens[:, FIELDS.index(field)])
    assert shrunk > 0


# ----- genre-aware hard negatives -----------------------------------------------------------


def test_genre_negatives_share_a_genre_with_their_anchor(catalogue):
    model = attached(catalogue, hard_negatives=6)
    names = {i: set(genres_of(i).split("|")) - {""} for i in range(1, catalogue.n_items + 1)}
    names[DUPLICATE] = names[ORIGINAL]
    assert len({1 + zlib.crc32(g.encode()) % BUCKETS for g in set().union(*names.values())}) == 5  # no collision
    items = torch.arange(1, catalogue.n_items + 1)
    seen_other_chain = False
    for seed in range(5):
        drawn, valid = model.genre_negatives(items, torch.Generator().manual_seed(seed))
        assert drawn.shape == valid.shape == (catalogue.n_items, 6)
        for anchor, row, ok in zip(items.tolist(), drawn.tolist(), valid.tolist()):
            for negative, is_valid in zip(row, ok):
                if is_valid:
                    assert negative != anchor and names[negative] & names[anchor], (anchor, negative)
                    seen_other_chain |= chain_of(negative) != chain_of(anchor)  # through "Drama"
                else:
                    assert negative == 0
        assert not valid[NO_GENRE - 1].any() and not valid[OWN_GENRE - 1].any()
        # an odd item has only its chain's genre: every negative is from its chain
        odd = drawn[0][valid[0]]  # item 1
        assert len(odd) and all(chain_of(int(i)) == 0 for i in odd)
    assert seen_other_chain


# ----- similar items and item embeddings ----------------------------------------------------


def test_similar_items_exclude_the_item_and_find_the_planted_near_duplicate(encoder_only, catalogue):
    model = encoder_only
    items = torch.arange(1, catalogue.n_items + 1)
    neighbours = model.similar_items(items, 5)
    assert neighbours.shape == (catalogue.n_items, 5)
    assert not (neighbours == items.unsqueeze(1)).any() and not (neighbours == 0).any()
    assert model.similar_items(torch.tensor([ORIGINAL]), 1).item() == DUPLICATE
    assert model.similar_items(torch.tensor([DUPLICATE]), 1).item() == ORIGINAL
    # most similar first, by cosine of the item embeddings
    vectors = model.item_embeddings()
    cosines = vectors[ORIGINAL] @ vectors[neighbours[ORIGINAL - 1]].T
    assert torch.all(cosines[:-1] >= cosines[1:])
    with pytest.raises(ValueError, match="k must be"):
        model.similar_items(items, catalogue.n_items)


@pytest.mark.parametrize("objective", ["trained", "encoder_only"])
def test_cold_items_have_neighbours_from_their_chain(objective, request):
    """Items with no interaction are embedded from their metadata and text like any other."""
    model = request.getfixturevalue(objective)
    model = model[0] if isinstance(model, tuple) else model
    for cold in COLD_ITEMS:
        neighbours = model.similar_items(torch.tensor([cold]), 5)[0].tolist()
        assert all(chain_of(i) == chain_of(cold) for i in neighbours), (cold, neighbours)


def test_item_embeddings_are_the_clean_encodings_with_padding_zero(trained, catalogue):
    model, _ = trained
    vectors = model.item_embeddings()
    assert vectors.shape == (catalogue.n_items + 1, 16)
    assert torch.all(vectors[0] == 0)
    torch.testing.assert_close(vectors[1:].norm(dim=1), torch.ones(catalogue.n_items))
    with torch.no_grad():
        encoded = model.encode(model.tokens[1:], model.item_text[1:])
    torch.testing.assert_close(vectors[1:], encoded)
    vectors[1] = 0  # a copy: other models may change theirs
    assert model.item_embeddings()[1].norm() > 0


# ----- recommendation -----------------------------------------------------------------------


def test_fit_lowers_the_loss_and_beats_popularity(trained, catalogue):
    model, report = trained
    assert report.epochs[-1].train_loss < 0.9 * report.epochs[0].train_loss
    result = evaluate(model.score, catalogue.valid_cases, catalogue.n_items, max_len=model.history_length)
    assert report.best_valid == {k: float(v) for k, v in result.metrics["all"].items()}
    popularity = Popularity(PopularityConfig(catalogue.n_items))
    popularity.fit(catalogue, CPU, progress=False)
    theirs = evaluate(popularity.score, catalogue.valid_cases, catalogue.n_items).metrics["all"]["ndcg@10"]
    assert report.best_valid["ndcg@10"] > theirs + 0.2


def test_score_is_the_cosine_with_the_recency_weighted_history(trained):
    model, _ = trained
    vectors, decay = model.item_embeddings(), model.config.recency_decay
    profile = F.normalize(math.exp(-decay) * vectors[2] + vectors[9], dim=0)
    scores = model.score(batch([[2, 9], [0]]))
    torch.testing.assert_close(scores[0], vectors @ profile)
    assert torch.all(scores[1] == 0) and torch.all(scores[:, 0] == 0)
    narrow, wide = model.score(batch([[2, 9]])), model.score(batch([[0, 0, 0, 2, 9]]))
    torch.testing.assert_close(narrow, wide)


def test_cowatched_pairs_are_consecutive_training_items(catalogue):
    pairs = cowatched_pairs(catalogue)
    sequences = catalogue.train_sequences()
    expected = {(int(a), int(b)) for seq in sequences.values() for a, b in zip(seq[:-1], seq[1:]) if a != b}
    assert {tuple(p) for p in pairs.tolist()} == expected and len(pairs) == sum(len(s) - 1 for s in sequences.values())


def test_rec_weight_adds_the_cowatch_loss(catalogue):
    model = attached(catalogue, rec_weight=0.5)
    items, first, then = torch.arange(1, 33), torch.tensor([1, 2, 21]), torch.tensor([2, 3, 22])
    torch.manual_seed(0)
    total = model.loss(items, first, then)
    torch.manual_seed(0)
    alone = model.contrastive_loss(items)
    torch.testing.assert_close(total, alone + 0.5 * model.cowatch_loss(first, then))


# ----- contract, saving, resuming -----------------------------------------------------------


def test_missing_or_mismatched_text_names_the_side_input(catalogue):
    model = Contrastive(ContrastiveConfig(catalogue.n_items, **TINY, max_epochs=1))
    with pytest.raises(ValueError, match="item_text_embeddings.*text_dim"):
        model.fit(catalogue, CPU, progress=False)
    wrong = SimpleNamespace(matrix=torch.zeros(catalogue.n_items + 1, TEXT_DIM + 1))
    with pytest.raises(ValueError, match=r"\(61, 8\).*got \(61, 9\)"):
        model.fit(catalogue, CPU, side_inputs={"item_text_embeddings": wrong}, progress=False)


def test_without_text_it_trains_on_metadata_alone(catalogue):
    model = Contrastive(ContrastiveConfig(catalogue.n_items, **{**TINY, "text_dim": 0}, max_epochs=2))
    report = model.fit(catalogue, CPU, progress=False)
    assert len(report.epochs) == 2 and model.text_proj is None
    assert model.item_embeddings()[1:].norm(dim=1).min() > 0.99


def test_save_load_round_trip_gives_identical_scores_and_neighbours(trained, tmp_path):
    model, _ = trained
    save_model(tmp_path / "m.pt", "contrastive", model)
    family, loaded = load_model(tmp_path / "m.pt")
    histories = batch([[1, 2, 3], [44, 45], [60]])
    assert family == "contrastive" and loaded.config == model.config
    assert torch.equal(loaded.score(histories), model.score(histories))
    items = torch.tensor([1, 7, 25])
    assert torch.equal(loaded.similar_items(items, 4), model.similar_items(items, 4))


def test_resume_from_checkpoint_continues_at_next_epoch(catalogue, tmp_path):
    side = {"item_text_embeddings": text(catalogue.n_items)}
    config = dict(TINY, patience=100, rec_weight=0.2)
    straight = Contrastive(ContrastiveConfig(catalogue.n_items, **config, max_epochs=3))
    straight.fit(catalogue, CPU, side_inputs=side, progress=False)

    interrupted = Contrastive(ContrastiveConfig(catalogue.n_items, **config, max_epochs=2))
    interrupted.fit(catalogue, CPU, side_inputs=side, progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed, seen = Contrastive(ContrastiveConfig(catalogue.n_items, **config, max_epochs=3)), []
    report = resumed.fit(catalogue, CPU, side_inputs=side, progress=False, on_epoch=seen.append, checkpoint_dir=tmp_path)

    assert [e.epoch for e in seen] == [2]
    assert [e.epoch for e in report.epochs] == [0, 1, 2]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="field_dropout"):
        ContrastiveConfig(10, field_dropout=1.0)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveConfig(10, temperature=0.0)
    with pytest.raises(ValueError, match="subsample"):
        ContrastiveConfig(10, subsample=0.0)
