"""T5 hybrid: aspects encoded once per fit from a tiny random T5 saved to disk (no download), a
saved model that scores without the encoder, cold items from their text, exact explanations and
their faithfulness, the encoder error, and validation NDCG@10 that training raises."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.content.item_text import item_text
from models.content.t5_hybrid import T5Hybrid, T5HybridConfig, _batch, faithfulness
from models.data import TrainingData
from models.metrics import evaluate
from models.registry import load_model, save_model
from models.training import CHECKPOINT_NAME
from tests.conftest import save_tiny_t5
from tests.models.conftest import CHAIN_LEN, N_CHAINS

CPU = torch.device("cpu")
COLD_ITEMS = [5, 25, 45]  # one per chain: every training row and validation target with them is removed
T5_DIM = 16
TINY = dict(text_dim=T5_DIM, dim=16, max_text_tokens=32, history_length=10, lr=0.02, batch_size=128,
            max_epochs=25, patience=5, cold_item_dropout=0.2)  # fmt: skip


def chain_of(item: int) -> int:
    return (item - 1) // CHAIN_LEN


@pytest.fixture(scope="module")
def chains(planted_split) -> TrainingData:
    """The planted chains with one cold item per chain and metadata that names each item's chain."""
    data = planted_split.training_data()
    items = data.items.copy()
    chain = (items["item_idx"] - 1) // CHAIN_LEN
    items["genres"] = [f"Genre{c}|Drama" for c in chain]
    items["cast"] = [f"Actor{c}a|Actor{c}{i % 3}" for c, i in zip(chain, items["item_idx"])]
    items["network"] = [f"Net{c}" for c in chain]
    train = data.train[~data.train["item_idx"].isin(COLD_ITEMS)].reset_index(drop=True)
    valid = data.valid_cases[~data.valid_cases["target_item"].isin(COLD_ITEMS)].reset_index(drop=True)
    return TrainingData(data.n_users, data.n_items, train, valid, items, data.users)


@pytest.fixture(scope="module")
def encoder_path(chains, tmp_path_factory) -> str:
    return save_tiny_t5(tmp_path_factory.mktemp("tiny_t5"), item_text(chains.items))


@pytest.fixture(scope="module")
def trained(chains, encoder_path):
    model = T5Hybrid(T5HybridConfig(chains.n_items, encoder=encoder_path, **TINY))
    report = model.fit(chains, CPU, progress=False)
    return model, report


def ndcg(model, data) -> float:
    return evaluate(model.score, data.valid_cases, data.n_items, max_len=model.history_length).metrics["all"]["ndcg@10"]


def test_aspects_are_encoded_once_per_fit_and_differ_per_prompt(chains, encoder_path, monkeypatch):
    from transformers import T5EncoderModel

    calls = []
    forward = T5EncoderModel.forward
    monkeypatch.setattr(T5EncoderModel, "forward", lambda self, *a, **kw: calls.append(1) or forward(self, *a, **kw))
    model = T5Hybrid(T5HybridConfig(chains.n_items, encoder=encoder_path, **{**TINY, "max_epochs": 3, "encode_batch_size": 25}))
    report = model.fit(chains, CPU, progress=False)
    assert len(report.epochs) == 3
    assert len(calls) == 3 * 3  # 3 aspects x ceil(60 items / 25) calls, for 3 epochs together
    genre, themes, mood = model.aspect_text[:, 1:]
    assert not torch.allclose(genre, themes, atol=1e-3) and not torch.allclose(themes, mood, atol=1e-3)
    assert model.aspect_text[:, 0].abs().sum() == 0  # padding item
    assert not any(key.startswith("encoder") for key in model.state_dict())


def test_training_raises_validation_ndcg_over_the_untrained_model(trained, chains):
    model, report = trained
    untrained = T5Hybrid(model.config)
    untrained.aspect_text.copy_(model.aspect_text)
    untrained.item_is_warm.copy_(model.item_is_warm)
    before, after = ndcg(untrained.eval(), chains), ndcg(model, chains)
    assert after > before + 0.2, (before, after)
    assert report.best_valid["ndcg@10"] == pytest.approx(after)


def test_saved_model_scores_identically_without_the_encoder(chains, encoder_path, tmp_path):
    folder = tmp_path / "t5"
    shutil.copytree(encoder_path, folder)
    model = T5Hybrid(T5HybridConfig(chains.n_items, encoder=str(folder), **{**TINY, "max_epochs": 2}))
    model.fit(chains, CPU, progress=False)
    save_model(tmp_path / "m.pt", "t5_hybrid", model)
    shutil.rmtree(folder)
    family, loaded = load_model(tmp_path / "m.pt")
    batch = _batch([[1, 2, 3], [21, 22], [44, 46, 47, 48]])
    assert family == "t5_hybrid" and loaded.config == model.config
    assert torch.equal(loaded.score(batch), model.score(batch))


def test_cold_items_are_scored_from_their_text(trained):
    """Items without training interactions: a chain-c history ranks chain c's cold item above
    the other chains' cold items, which only their text tells apart."""
    model, _ = trained
    assert not model.item_is_warm[COLD_ITEMS].any()
    for chain, cold in enumerate(COLD_ITEMS):
        history = [chain * CHAIN_LEN + k for k in (10, 11, 12, 13)]
        scores = model.score(_batch([history]))[0]
        others = [i for i in COLD_ITEMS if i != cold]
        assert scores[cold] > scores[others].max(), (chain, scores[COLD_ITEMS])


def test_explanation_is_exact_leave_one_out_and_aspect_split(trained):
    model, _ = trained
    history = [21, 22, 23, 24, 41]
    item = 26
    explanation = model.explain(history, item, top=3, titles={22: "Twenty-two", 23: "Twenty-three", 24: "Twenty-four"})
    full = model.score(_batch([history]))[0, item]
    assert explanation["score"] == pytest.approx(float(full))
    assert sum(explanation["contributions"].values()) == pytest.approx(float(full), abs=1e-5)
    assert set(explanation["contributions"]) == {"collaborative", "genre", "themes", "mood"}
    assert sum(abs(s) for s in explanation["shares"].values()) == pytest.approx(1.0)
    named = explanation["history"]
    assert named and [n["drop"] for n in named] == sorted((n["drop"] for n in named), reverse=True)
    for entry in named:
        without = [h for h in history if h != entry["item"]]
        assert float(full - model.score(_batch([without]))[0, item]) == pytest.approx(entry["drop"], abs=1e-5)
    # the off-chain item 41 does not raise a chain-1 item's score
    assert 41 not in [n["item"] for n in named]
    assert explanation["text"].startswith("Because you watched ")


def test_removing_the_named_item_lowers_the_score_in_90_percent_of_cases(trained, chains):
    model, _ = trained
    assert faithfulness(model, chains.valid_cases, n_samples=50, seed=0) >= 0.9


def test_an_encoder_that_cannot_be_loaded_names_itself_and_the_fix(chains, tmp_path):
    missing = str(tmp_path / "no-such-t5")
    model = T5Hybrid(T5HybridConfig(chains.n_items, encoder=missing, **TINY))
    with pytest.raises(OSError, match=r"no-such-t5.*no network.*local path"):
        model.fit(chains, CPU, progress=False)


def test_encoder_width_must_match_text_dim(chains, encoder_path):
    model = T5Hybrid(T5HybridConfig(chains.n_items, encoder=encoder_path, **{**TINY, "text_dim": 8}))
    with pytest.raises(ValueError, match="d_model 16.*text_dim 8"):
        model.fit(chains, CPU, progress=False)


def test_fine_tuning_trains_the_top_block_only_and_leaves_no_encoder_in_the_weights(chains, encoder_path):
    from transformers import T5EncoderModel

    original = T5EncoderModel.from_pretrained(encoder_path).encoder.block
    moved = []  # per epoch: (bottom block changed, top block changed), read while fit holds the encoder

    def on_epoch(_):
        blocks = model.encoder.encoder.block
        moved.append(tuple(not all(torch.equal(p, q) for p, q in zip(blocks[b].parameters(), original[b].parameters())) for b in (0, 1)))

    model = T5Hybrid(T5HybridConfig(chains.n_items, encoder=encoder_path, **{**TINY, "max_epochs": 2, "fine_tune_top_layers": 1}))
    frozen = T5Hybrid(T5HybridConfig(chains.n_items, encoder=encoder_path, **{**TINY, "max_epochs": 2}))
    model.fit(chains, CPU, progress=False, on_epoch=on_epoch)
    frozen.fit(chains, CPU, progress=False)
    assert moved == [(False, True), (False, True)]
    assert not any(key.startswith("encoder") for key in model.state_dict())
    assert not torch.allclose(model.aspect_text, frozen.aspect_text)  # re-encoded with the trained block


def test_resumes_from_a_checkpoint(chains, encoder_path, tmp_path):
    config = T5HybridConfig(chains.n_items, encoder=encoder_path, **{**TINY, "max_epochs": 3, "patience": 10})
    whole = T5Hybrid(config)
    whole.fit(chains, CPU, progress=False)
    first = T5Hybrid(config.__class__(**{**config.__dict__, "max_epochs": 2}))
    first.fit(chains, CPU, progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed = T5Hybrid(config)
    report = resumed.fit(chains, CPU, progress=False, checkpoint_dir=tmp_path)
    assert len(report.epochs) == 3
    batch = _batch([[1, 2, 3], [21, 22]])
    torch.testing.assert_close(resumed.score(batch), whole.score(batch))


def test_config_checks_and_yaml_lists():
    config = T5HybridConfig(10, aspects=[["genre", "genre: {text}"], ["plot", "plot: {text}"]])
    assert config.aspects == (("genre", "genre: {text}"), ("plot", "plot: {text}"))
    with pytest.raises(ValueError, match="text"):
        T5HybridConfig(10, aspects=(("genre", "no placeholder"),))
    with pytest.raises(ValueError, match="fine_tune_top_layers"):
        T5HybridConfig(10, fine_tune_top_layers=-1)


def test_checking_the_config_loads_no_transformers():
    code = ("import sys; from models.registry import check_config; check_config('t5_hybrid', {}); "
            "assert 'transformers' not in sys.modules, 'transformers imported'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])


def test_scoring_reads_the_fused_items_once_and_sees_new_weights(trained):
    """In eval mode ``score`` fuses the catalogue once (per request it cost ~10 ms on ML-1M);
    loading other weights or training again drops that table."""
    model, _ = trained
    model.eval()
    batch = _batch([[1, 2, 3]])
    calls = []
    fuse = model.item_vectors
    model.item_vectors = lambda *a, **k: calls.append(1) or fuse(*a, **k)
    try:
        first = model.score(batch)
        assert torch.equal(model.score(batch), first) and len(calls) == 1
        state = {k: v.clone() for k, v in model.state_dict().items()}
        changed = {**state, "item_emb.weight": state["item_emb.weight"] * 2}
        model.load_state_dict(changed)
        assert not torch.equal(model.score(batch), first) and len(calls) == 2
        model.load_state_dict(state)
        model.train()
        model.eval()
        torch.testing.assert_close(model.score(batch), first)
        assert len(calls) == 3
    finally:
        del model.item_vectors
