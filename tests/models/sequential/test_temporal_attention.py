import pytest
import torch

from models.data import HistoryBatch
from models.metrics import evaluate
from models.general.popularity import Popularity, PopularityConfig
from models.sequential.temporal_attention import (
    DAY,
    TREND_WINDOWS_DAYS,
    TemporalAttention,
    TemporalAttentionConfig,
    activity_profile,
    interval_buckets,
    masked_buckets,
    seasonal_features,
    weekday_and_month,
)

CPU = torch.device("cpu")
TINY = dict(dim=32, n_layers=2, n_heads=2, max_len=20, dropout=0.1, lr=3e-3, batch_size=16,
            seasonal_encoding=True)  # every temporal part on (the default leaves this one off)
ALL_OFF = dict(seasonal_encoding=False, time_intervals=False, seasonal_decomposition=False)
FLAGS = ("seasonal_encoding", "time_intervals", "seasonal_decomposition")
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC, a Tuesday


def _config(n_items: int, **overrides) -> TemporalAttentionConfig:
    return TemporalAttentionConfig(n_items, **{**TINY, "max_epochs": 2, **overrides})


def _batch(items, timestamps) -> HistoryBatch:
    items, timestamps = torch.as_tensor(items), torch.as_tensor(timestamps)
    return HistoryBatch(items, timestamps, torch.zeros(len(items), dtype=torch.long))


def _irregular_times(n: int, start: int = T0) -> list[int]:
    gaps = [60, 3_600, 2 * DAY, 300, 9 * DAY, 40, 5 * DAY, 7_200, 31 * DAY, 90]
    return [start + sum(gaps[i % len(gaps)] for i in range(k)) for k in range(n)]


@pytest.fixture(scope="module")
def trained(planted_split):
    model = TemporalAttention(_config(planted_split.n_items, max_epochs=10, patience=3))
    report = model.fit(planted_split.training_data(), CPU, progress=False)
    return model, report


def test_score_shape_is_batch_by_items_plus_one():
    model = TemporalAttention(_config(30)).eval()
    items = [[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 7]]
    times = [[0, 0] + _irregular_times(2), _irregular_times(4), [0, 0, 0, T0]]
    assert model.score(_batch(items, times)).shape == (3, 31)


@pytest.mark.parametrize("change", ["item", "timestamp"])
def test_causal_mask_blocks_future_items_and_timestamps(change):
    model = TemporalAttention(_config(30)).eval()
    items = torch.tensor([[0, 0, 5, 6, 7, 8, 9]])
    times = torch.tensor([[0, 0] + _irregular_times(5)])
    new_items, new_times = items.clone(), times.clone()
    if change == "item":
        new_items[0, 5] = 21
    else:
        new_times[0, 5:] += 40 * DAY + 123
    with torch.no_grad():
        before, after = model.encode(items, times), model.encode(new_items, new_times)
    torch.testing.assert_close(before[:, :5], after[:, :5], rtol=0, atol=0)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_seasonal_encoding_is_weekly_periodic_and_tells_weekdays_apart():
    weekly = slice(0, 2 * 3)  # the week block comes first
    t = torch.tensor([T0, T0 + 7 * DAY, T0 + 14 * DAY, T0 + DAY, T0 + 3 * DAY])
    features = seasonal_features(t, harmonics=3)
    assert features.shape == (5, 18)
    torch.testing.assert_close(features[1, weekly], features[0, weekly], rtol=0, atol=1e-6)
    torch.testing.assert_close(features[2, weekly], features[0, weekly], rtol=0, atol=1e-6)
    assert (features[3, weekly] - features[0, weekly]).abs().max() > 0.1
    assert (features[4, weekly] - features[3, weekly]).abs().max() > 0.1


def test_calendar_matches_python_datetime():
    from datetime import datetime, timezone

    t = torch.tensor([0, 951_782_400, T0, 1_709_164_800, 4_102_444_799])  # incl. 29 Feb 2000/2024
    weekday, month = weekday_and_month(t)
    for s, w, m in zip(t.tolist(), weekday.tolist(), month.tolist()):
        d = datetime.fromtimestamp(s, timezone.utc)
        assert (w, m) == (d.weekday(), d.month - 1)


def _profile_written_out(times: list[int], real: list[bool], i: int) -> list[float]:
    """Position i's activity profile by the definition, with Python's calendar: the shares of
    the user's real events <= i per weekday and month, the weekday and month of event i, and
    log(recent rate / overall rate) per trend window, log1p(overall events per day)."""
    import math
    from datetime import datetime, timezone

    def calendar(t):
        d = datetime.fromtimestamp(t, timezone.utc)
        return d.weekday(), d.month - 1

    events = [times[j] for j in range(i + 1) if real[j]]
    n = len(events)
    shares = [0.0] * 19
    for t in events:
        weekday, month = calendar(t)
        shares[weekday] += 1 / n
        shares[7 + month] += 1 / n
    now = [0.0] * 19
    weekday, month = calendar(times[i])
    now[weekday] = now[7 + month] = 1.0
    span_days = max(times[i] - min(events), 0) / DAY + 1.0
    overall = n / span_days
    trends = []
    for window in TREND_WINDOWS_DAYS:
        recent = sum(1 for t in events if times[i] - t < window * DAY)
        trends.append(math.log((recent / min(span_days, window) + 1e-3) / (overall + 1e-3)))
    return shares + now + trends + [math.log1p(overall)]


@pytest.mark.parametrize("last_only", [False, True])
def test_activity_profile_is_the_definition_written_out(last_only):
    """Two users, one left-padded, events out of order once, spanning months and a year end."""
    rows = [
        [0, 0, T0, T0 + 3_600, T0 + 2 * DAY, T0 + 9 * DAY, T0 + 40 * DAY, T0 + 40 * DAY + 60],
        [T0 - 400 * DAY, T0 - 30 * DAY, T0 - 29 * DAY, T0 - 31 * DAY, T0, T0 + 6 * DAY, T0 + 7 * DAY, T0 + 47 * DAY],
    ]
    real = torch.tensor([[False, False] + [True] * 6, [True] * 8])
    timestamps = torch.tensor(rows)
    earlier = torch.ones(8, 8, dtype=torch.bool).tril() & real.unsqueeze(1)
    delta = timestamps.unsqueeze(2) - timestamps.unsqueeze(1)
    profile = activity_profile(timestamps, real, earlier, delta, last_only=last_only)
    positions = [7] if last_only else range(8)
    for b in range(2):
        for column, i in enumerate(positions):
            if real[b, i]:
                expected = torch.tensor(_profile_written_out(rows[b], real[b].tolist(), i))
                torch.testing.assert_close(profile[b, column], expected, rtol=1e-5, atol=1e-5)


def test_interval_buckets_are_log_spaced_and_clipped_at_time_span():
    delta = torch.tensor([0, 59, 60, 3_600, DAY, 30 * DAY, 10 * 365 * DAY])
    buckets = interval_buckets(delta, time_span=256)
    assert buckets[0] == 0 and (buckets.diff() > 0).all() and buckets[-1] == 255
    assert interval_buckets(torch.tensor([-DAY]), 256) == buckets[4]


def test_interval_attention_depends_only_on_time_differences():
    model = TemporalAttention(_config(30, seasonal_encoding=False, seasonal_decomposition=False))
    model.eval()
    items = [[0, 3, 9, 4, 12, 7]]
    times = torch.tensor([[0] + _irregular_times(5)])
    shifted = torch.where(times > 0, times + 123 * DAY + 4_567, 0)
    scores = model.score(_batch(items, times))
    torch.testing.assert_close(model.score(_batch(items, shifted)), scores, rtol=0, atol=0)
    stretched = torch.where(times > 0, T0 + (times - T0) * 3, 0)  # other intervals: other scores
    assert not torch.allclose(model.score(_batch(items, stretched)), scores)


@pytest.mark.parametrize("last_only", [False, True])
def test_interval_attention_is_tisasrec_attention_written_out(last_only):
    # softmax_j(q_i . (k_j + r_ij) / sqrt(dh) + b_ij) v_j, over the keys each query may read, with
    # r and b the interval bucket's key and bias, written out pair by pair
    torch.manual_seed(0)
    attn = TemporalAttention(_config(30, n_heads=2, dim=8, dropout=0.0)).blocks[0].attn.eval()
    torch.nn.init.normal_(attn.interval_key.weight)
    torch.nn.init.normal_(attn.interval_bias.weight)
    b, l, h, dh = 2, 5, 2, 4
    x = torch.randn(b, l, h * dh)
    times = torch.tensor([[0, 0] + _irregular_times(3), _irregular_times(5)])
    real = torch.tensor([[False, False, True, True, True], [True] * 5])
    attend = torch.ones(l, l, dtype=torch.bool).tril() & real.unsqueeze(1) | torch.eye(l, dtype=torch.bool)
    delta = times.unsqueeze(2) - times.unsqueeze(1)
    buckets = interval_buckets(delta, 256)
    mask = masked_buckets(delta, attend, 256)
    assert (mask == torch.where(attend, buckets, 256)).all()

    q, k, v = attn.qkv(x).view(b, l, 3, h, dh).unbind(2)
    r = attn.interval_key.weight.view(-1, h, dh)
    out = torch.zeros(b, l, h, dh)
    for u in range(b):
        for i in range(l):
            for head in range(h):
                logits = torch.stack([
                    (q[u, i, head] @ (k[u, j, head] + r[buckets[u, i, j], head])) / dh**0.5
                    + attn.interval_bias.weight[buckets[u, i, j], head]
                    if attend[u, i, j] else torch.tensor(float("-inf")) for j in range(l)
                ])  # fmt: skip
                out[u, i, head] = torch.softmax(logits, 0) @ v[u, :, head]
    expected = attn.proj(out.reshape(b, l, h * dh))
    with torch.no_grad():
        got = attn(x, mask, last_only=last_only)
    torch.testing.assert_close(got, expected[:, -1:] if last_only else expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flag", FLAGS)
def test_each_ablation_flag_removes_its_parameters_and_effect(flag):
    alone = TemporalAttention(_config(30, **{**ALL_OFF, flag: True})).eval()
    off = TemporalAttention(_config(30, **ALL_OFF)).eval()
    prefix = {"seasonal_encoding": "seasonal_proj", "time_intervals": "blocks.0.attn.interval_",
              "seasonal_decomposition": "profile_mlp"}[flag]  # fmt: skip
    assert any(name.startswith(prefix) for name in alone.state_dict())
    assert set(off.state_dict()) < set(alone.state_dict())
    assert not any(n.startswith(("seasonal_proj", "profile_mlp")) or "interval_" in n
                   for n in off.state_dict())  # fmt: skip
    if flag == "time_intervals":  # a zero-initialised scalar bias: make the key term count
        torch.nn.init.normal_(alone.blocks[0].attn.interval_key.weight, std=1.0)

    items = [[0, 3, 9, 4, 12, 7]]
    times = torch.tensor([[0] + _irregular_times(5)])
    other = torch.where(times > 0, T0 + (times - T0) * 3 + 2 * DAY, 0)
    assert not torch.allclose(alone.score(_batch(items, times)), alone.score(_batch(items, other)))
    torch.testing.assert_close(
        off.score(_batch(items, times)), off.score(_batch(items, other)), rtol=0, atol=0
    )


def test_left_padding_does_not_change_real_positions():
    model = TemporalAttention(_config(30)).eval()
    times = _irregular_times(4)
    with torch.no_grad():
        short = model.encode(torch.tensor([[4, 9, 2, 5]]), torch.tensor([times]))
        padded = model.encode(
            torch.tensor([[0] * 9 + [4, 9, 2, 5]]), torch.tensor([[0] * 9 + times])
        )
    torch.testing.assert_close(padded[:, 9:], short, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flags", [{}, ALL_OFF, {"seasonal_decomposition": False}, {"time_intervals": False}])
def test_latest_position_shortcut_gives_the_full_computation(flags):
    """score runs the last block for the latest position only and computes that position's
    activity profile alone: the same hidden state as the full computation, with padding too."""
    model = TemporalAttention(_config(30, **flags)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
        items = torch.randint(1, 31, (3, 12), generator=generator)
        items[1, :5] = 0
        times = torch.tensor([_irregular_times(12, T0 + r * DAY) for r in range(3)]).masked_fill(items == 0, 0)
        torch.testing.assert_close(model.encode(items, times, last_only=True)[:, -1], model.encode(items, times)[:, -1])


def test_fully_padded_history_gives_finite_scores_and_loss():
    model = TemporalAttention(_config(30)).train()  # dropout on: pad rows must not give NaN
    items = torch.tensor([[0, 0, 0, 0], [0, 0, 3, 4]])
    times = torch.tensor([[0, 0, 0, 0], [0, 0, T0, T0 + 60]])
    assert torch.isfinite(model.score(_batch(items, times))).all()
    loss = model.loss(items, times, torch.tensor([[0, 0, 0, 0], [0, 0, 4, 5]]))
    assert torch.isfinite(loss)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    items = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    times = torch.tensor([[0] + _irregular_times(4), _irregular_times(5)])
    labels = torch.tensor([[0, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    grads = []
    for flag in (False, True):
        model = TemporalAttention(_config(30, dropout=0.0, gradient_checkpointing=flag)).train()
        model.loss(items, times, labels).backward()
        grads.append(model.item_emb.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_loss_decreases_during_training(trained):
    _, report = trained
    assert report.epochs[-1].train_loss < 0.6 * report.epochs[0].train_loss


def test_beats_popularity_on_planted_sequences(trained, planted_split):
    model, _ = trained
    popularity = Popularity(PopularityConfig(planted_split.n_items))
    popularity.fit(planted_split.training_data(), CPU, progress=False)
    test = planted_split.stage("test")
    model_ndcg, popularity_ndcg = (
        evaluate(m.score, test, planted_split.n_items).metrics["all"]["ndcg@10"]
        for m in (model, popularity)
    )
    assert model_ndcg > 0.8 > 0.2 > popularity_ndcg


def test_save_load_round_trip_gives_identical_scores(trained, tmp_path):
    model, _ = trained
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    loaded = TemporalAttention(model.config)
    loaded.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    loaded.eval()
    batch = _batch([[0, 1, 2, 3], [4, 5, 6, 7]], [[0] + _irregular_times(3), _irregular_times(4)])
    torch.testing.assert_close(loaded.score(batch), model.score(batch), rtol=0, atol=0)


def test_seeded_fits_give_identical_weights(planted_split):
    config = _config(planted_split.n_items, max_epochs=1)
    first, second = TemporalAttention(config), TemporalAttention(config)
    first.fit(planted_split.training_data(), CPU, progress=False)
    second.fit(planted_split.training_data(), CPU, progress=False)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
