import pandas as pd
import pytest
import torch

from models.sequential.bert4rec import BERT4Rec, BERT4RecConfig, ClozeSequences, cloze_mask
from models.data import PAD, HistoryBatch
from models.metrics import evaluate
from models.general.popularity import Popularity, PopularityConfig

CPU = torch.device("cpu")
TINY = dict(dim=32, n_layers=2, n_heads=2, max_len=20, dropout=0.1, lr=3e-3, batch_size=16)


def _config(n_items: int, **overrides) -> BERT4RecConfig:
    return BERT4RecConfig(n_items, **{**TINY, "max_epochs": 2, **overrides})


def _batch(items, users=None) -> HistoryBatch:
    items = torch.as_tensor(items)
    users = torch.zeros(len(items), dtype=torch.long) if users is None else torch.as_tensor(users)
    return HistoryBatch(items, torch.zeros_like(items), users)


def _masked_batch(n_items: int = 30, seed: int = 0):
    """A fixed Cloze batch: (inputs, labels, users, ratings)."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, n_items + 1, (6, 10), generator=generator)
    items[:2, :4] = PAD
    inputs, labels = cloze_mask(items, _config(n_items, mask_prob=0.3), generator)
    ratings = torch.randint(1, 6, items.shape, generator=generator).float() * (items != PAD)
    return inputs, labels, torch.arange(1, 7), ratings


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; one keeps this file fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(planted_split):
    model = BERT4Rec(_config(planted_split.n_items, max_epochs=20, patience=20))
    report = model.fit(planted_split.training_data(), CPU, progress=False)
    return model, report


def test_score_shape_is_batch_by_items_plus_one():
    model = BERT4Rec(_config(30)).eval()
    assert model.score(_batch([[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 7]])).shape == (3, 31)


def test_attention_is_bidirectional_later_items_change_earlier_positions():
    model = BERT4Rec(_config(30)).eval()
    items = torch.tensor([[0, 0, 5, 6, 7, 8, 9]])
    changed = items.clone()
    changed[0, 5] = 21
    with torch.no_grad():
        before, after = model.encode(items), model.encode(changed)
    # Unlike SASRec's causal mask, every earlier real position sees the later change.
    assert all(not torch.allclose(before[0, i], after[0, i]) for i in (2, 3, 4))


def test_left_padding_does_not_change_real_positions():
    model = BERT4Rec(_config(30)).eval()
    with torch.no_grad():
        short = model.encode(torch.tensor([[4, 9, 2, 31]]))  # 31 = [MASK]
        padded = model.encode(torch.tensor([[0] * 12 + [4, 9, 2, 31]]))
    torch.testing.assert_close(short, padded[:, -4:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        model.score(_batch([[4, 9, 2]])), model.score(_batch([[0] * 12 + [4, 9, 2]]))
    )


def test_scoring_shortcuts_give_the_full_computation():
    """score runs the last block for the latest position only, and a batch without padding
    skips the key mask: both give what the full masked computation gives."""
    model = BERT4Rec(_config(30)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
        unpadded = torch.randint(1, 32, (3, 12), generator=generator)
        padded = unpadded.clone()
        padded[1, :6] = PAD
        for items in (unpadded, padded):
            torch.testing.assert_close(model.encode(items, last_only=True)[:, -1], model.encode(items)[:, -1])
        with_pad_column = torch.cat([torch.zeros(3, 1, dtype=torch.long), unpadded], dim=1)
        torch.testing.assert_close(model.encode(with_pad_column)[:, 1:], model.encode(unpadded), rtol=1e-5, atol=1e-5)


def test_fully_padded_history_gives_finite_scores_and_loss():
    model = BERT4Rec(_config(30)).train()  # dropout on: pad rows must not produce NaN either
    assert torch.isfinite(model.score(_batch([[0, 0, 0, 0], [0, 0, 3, 4]]))).all()
    inputs = torch.tensor([[0, 0, 0, 0], [0, 3, 31, 5]])
    assert torch.isfinite(model.loss(inputs, torch.tensor([[0, 0, 0, 0], [0, 0, 4, 0]])))


def test_score_appends_mask_token_after_the_history():
    model = BERT4Rec(_config(30)).eval()
    seen = []
    encode = model.encode
    model.encode = lambda items, users=None, **kw: seen.append(items) or encode(items, users, **kw)
    model.score(_batch([[0, 0, 4, 9, 2]]))
    model.score(_batch([list(range(1, 21))]))  # fills max_len = 20: the oldest item is dropped
    assert seen[0].tolist() == [[4, 9, 2, 31]]  # all-padding columns are cut off
    assert seen[1].tolist() == [list(range(2, 21)) + [31]]


def test_histories_longer_than_max_len_use_their_latest_items():
    model = BERT4Rec(_config(30)).eval()
    latest = list(range(1, 21))
    torch.testing.assert_close(
        model.score(_batch([[25, 26, 27] + latest])), model.score(_batch([latest]))
    )


def test_cloze_masking_rate_is_mask_prob_and_never_masks_padding():
    config = _config(1000, mask_prob=0.2, last_item_mask_prob=0.0)
    items = torch.randint(1, 1001, (4000, 50), generator=torch.Generator().manual_seed(1))
    items[::2, :20] = PAD
    inputs, labels = cloze_mask(items, config, torch.Generator().manual_seed(0))
    masked = labels != PAD
    real = items != PAD
    assert not (masked & ~real).any()
    assert (inputs[~real] == PAD).all()
    assert masked[real].float().mean().item() == pytest.approx(0.2, abs=0.005)
    assert torch.equal(labels[masked], items[masked])


def test_cloze_masked_positions_are_80_mask_10_random_10_unchanged():
    config = _config(1000, mask_prob=0.5, last_item_mask_prob=0.0)
    items = torch.randint(1, 1001, (4000, 50), generator=torch.Generator().manual_seed(1))
    inputs, labels = cloze_mask(items, config, torch.Generator().manual_seed(0))
    masked = labels != PAD
    got, original = inputs[masked], items[masked]
    as_mask = (got == 1001).float().mean().item()
    unchanged = (got == original).float().mean().item()  # includes random draws of the same item
    assert as_mask == pytest.approx(0.8, abs=0.01)
    assert unchanged == pytest.approx(0.1, abs=0.01)
    assert ((got >= 1) & (got <= 1000) & (got != original)).float().mean().item() == pytest.approx(
        0.1, abs=0.01
    )
    assert (inputs[~masked] == items[~masked]).all()


def test_cloze_masks_at_least_one_position_per_sequence():
    config = _config(50, mask_prob=0.01, last_item_mask_prob=0.0)
    items = torch.randint(1, 51, (500, 6), generator=torch.Generator().manual_seed(1))
    items[:, :3] = PAD
    items[0] = PAD  # an empty row stays unmasked
    _, labels = cloze_mask(items, config, torch.Generator().manual_seed(0))
    assert ((labels != PAD).sum(1)[1:] >= 1).all()
    assert (labels[0] == PAD).all() and (labels[:, :3] == PAD).all()


def test_cloze_sequences_align_ratings_and_users_with_items():
    train = pd.DataFrame({
        "user_idx": [2, 1, 2, 1, 2, 3],
        "item_idx": [7, 5, 8, 6, 9, 4],
        "rating": [1.0, 5.0, 2.0, 4.0, 3.0, 5.0],
        "timestamp": [1, 1, 2, 2, 3, 1],
    })  # fmt: skip
    sequences = ClozeSequences(train, max_len=10)
    config = _config(10, batch_size=8, mask_prob=0.5, last_item_mask_prob=0.0)
    (inputs, labels, users, ratings), = sequences.epoch_batches(config, torch.Generator())
    rows = {int(u): (r.tolist(), i.tolist()) for u, r, i in zip(users, ratings, inputs)}
    assert rows.keys() == {1, 2}  # user 3 has a single item: left out, as in SASRec
    assert rows[1][0] == [0.0, 5.0, 4.0] and rows[2][0] == [1.0, 2.0, 3.0]
    assert rows[1][1][0] == PAD and rows[2][1][0] != PAD


def test_loss_is_cross_entropy_at_masked_positions_only():
    model = BERT4Rec(_config(30, dropout=0.0)).eval()
    inputs = torch.tensor([[0, 1, 2, 31]])
    loss = model.loss(inputs, torch.tensor([[0, 0, 0, 4]]))
    logits = model.score(_batch([[0, 1, 2]]))[0, 1:]
    torch.testing.assert_close(loss, -torch.log_softmax(logits, 0)[3])


def test_loss_decreases_during_training(trained):
    _, report = trained
    assert report.epochs[-1].train_loss < 0.85 * report.epochs[0].train_loss


def test_beats_popularity_on_planted_sequences(trained, planted_split):
    model, _ = trained
    popularity = Popularity(PopularityConfig(planted_split.n_items))
    popularity.fit(planted_split.training_data(), CPU, progress=False)
    test = planted_split.stage("test")
    bert4rec_ndcg, popularity_ndcg = (
        evaluate(m.score, test, planted_split.n_items).metrics["all"]["ndcg@10"]
        for m in (model, popularity)
    )
    assert bert4rec_ndcg > 0.45 > 0.2 > popularity_ndcg


def test_save_load_round_trip_gives_identical_scores(trained, tmp_path):
    model, _ = trained
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    rebuilt = BERT4Rec(model.config)
    rebuilt.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    batch = _batch([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    assert torch.equal(model.eval().score(batch), rebuilt.eval().score(batch))


def test_seeded_fits_give_identical_weights(planted_split):
    n = planted_split.n_items
    first, second = BERT4Rec(_config(n)), BERT4Rec(_config(n))
    first.fit(planted_split.training_data(), CPU, progress=False)
    second.fit(planted_split.training_data(), CPU, progress=False)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_options_leave_the_shared_initial_weights_unchanged():
    plain = BERT4Rec(_config(30)).state_dict()
    both = BERT4Rec(_config(30, use_user_embedding=True, n_users=10, multitask_weight=0.5))
    extra = {k: v for k, v in both.state_dict().items() if k not in plain}
    assert {k.split(".")[0] for k in extra} == {"user_emb", "rating_head", "preference_head"}
    for name, value in plain.items():
        assert torch.equal(value, both.state_dict()[name]), name


def test_user_embedding_changes_the_loss_and_fits(planted_split):
    batch = _masked_batch()
    plain = BERT4Rec(_config(30, dropout=0.0)).eval()
    with_users = BERT4Rec(_config(30, dropout=0.0, use_user_embedding=True, n_users=10)).eval()
    assert with_users.loss(*batch) != plain.loss(*batch)
    config = _config(planted_split.n_items, use_user_embedding=True, n_users=planted_split.n_users)
    report = BERT4Rec(config).fit(planted_split.training_data(), CPU, progress=False)
    assert all(torch.isfinite(torch.tensor(e.train_loss)) for e in report.epochs)


def test_cold_and_unseen_users_get_the_unknown_user_row():
    model = BERT4Rec(_config(30, use_user_embedding=True, n_users=10)).eval()
    items = [[1, 2, 3]] * 3
    scores = model.score(_batch(items, users=[0, 99, 4]))  # 99 > n_users: unseen
    torch.testing.assert_close(scores[0], scores[1])
    assert not torch.allclose(scores[0], scores[2])


def test_multitask_heads_change_the_loss_and_fit(planted_split):
    batch = _masked_batch()
    plain = BERT4Rec(_config(30, dropout=0.0)).eval()
    multitask = BERT4Rec(_config(30, dropout=0.0, multitask_weight=0.5)).eval()
    ce = plain.loss(*batch)
    # The heads are built after the shared weights, so the difference is the weighted MSE + BCE.
    assert multitask.loss(*batch) > ce
    assert multitask.loss(*batch[:3], ratings=batch[3]) == multitask.loss(*batch)
    with pytest.raises(ValueError, match="ratings"):
        multitask.loss(*batch[:3])
    report = BERT4Rec(_config(planted_split.n_items, multitask_weight=0.5)).fit(
        planted_split.training_data(), CPU, progress=False
    )
    assert report.epochs[-1].train_loss < report.epochs[0].train_loss


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    batch = _masked_batch()
    losses, grads = [], []
    for flag in (False, True):
        model = BERT4Rec(_config(30, dropout=0.0, gradient_checkpointing=flag)).train()
        loss = model.loss(*batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[0], losses[1])
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


def test_config_rejects_user_embedding_without_n_users():
    with pytest.raises(ValueError, match="n_users"):
        BERT4RecConfig(30, use_user_embedding=True)


def test_last_item_masking_masks_only_the_latest_item():
    config = _config(50, last_item_mask_prob=1.0, last_item_random_prefix=False)
    items = torch.randint(1, 51, (100, 8), generator=torch.Generator().manual_seed(1))
    items[:50, :3] = PAD
    inputs, labels = cloze_mask(items, config, torch.Generator().manual_seed(0))
    assert (inputs[:, -1] == 51).all() and torch.equal(inputs[:, :-1], items[:, :-1])
    assert torch.equal(labels[:, -1], items[:, -1]) and (labels[:, :-1] == PAD).all()


def test_random_prefixes_cut_after_a_real_item_and_stay_left_padded():
    from models.sequential.bert4rec import random_prefix_source, take_columns

    items = torch.tensor([[0, 0, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], [0, 0, 0, 0, 0, 13]])
    seen = {0: set(), 1: set()}
    for seed in range(200):
        cut = take_columns(items, random_prefix_source(items, torch.Generator().manual_seed(seed)))
        for row in (0, 1):
            real = cut[row][cut[row] != PAD].tolist()
            original = items[row][items[row] != PAD].tolist()
            assert len(real) >= 2 and real == original[: len(real)]  # a prefix, never a lone item
            assert (cut[row][: len(cut[row]) - len(real)] == PAD).all()  # padding only on the left
            seen[row].add(len(real))
        assert cut[2].tolist() == [0, 0, 0, 0, 0, 13]  # one item: nothing to cut
    assert seen == {0: {2, 3, 4}, 1: {2, 3, 4, 5, 6}}  # every allowed cut is drawn


def test_last_item_masking_with_random_prefixes_masks_the_item_after_the_cut():
    config = _config(50, last_item_mask_prob=1.0, last_item_random_prefix=True)
    items = torch.arange(1, 9).repeat(300, 1)  # every row 1..8
    inputs, labels = cloze_mask(items, config, torch.Generator().manual_seed(0))
    assert (inputs[:, -1] == 51).all() and (labels[:, :-1] == PAD).all()
    targets = labels[:, -1]
    assert set(targets.tolist()) == set(range(2, 9))  # the masked item varies
    real_before = (inputs[:, :-1] != PAD).sum(1)
    assert torch.equal(real_before, targets - 1)  # exactly the items before the target remain


def test_ratings_follow_their_items_through_a_random_prefix_cut():
    train = pd.DataFrame({
        "user_idx": [1] * 8,
        "item_idx": list(range(1, 9)),
        "rating": [float(i % 5 + 1) for i in range(1, 9)],  # item i is rated i % 5 + 1
        "timestamp": list(range(8)),
    })  # fmt: skip
    sequences = ClozeSequences(train, max_len=10)
    config = _config(10, batch_size=8, last_item_mask_prob=1.0, last_item_random_prefix=True)
    targets = set()
    for seed in range(30):
        (inputs, labels, _, ratings), = sequences.epoch_batches(config, torch.Generator().manual_seed(seed))
        items = torch.where(labels != PAD, labels, inputs)[0]  # the cut row, target in place of [MASK]
        assert ratings[0].tolist() == [float(i % 5 + 1) if i else 0.0 for i in items.tolist()]
        targets.add(int(labels[0, -1]))
    assert len(targets) > 1  # the cut really moved
