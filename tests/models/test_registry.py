import pytest
import torch

from models.data import HistoryBatch
from models.general.ease import EASEConfig
from models.content.item_text import ItemTextEmbeddings
from models.registry import (
    FAMILIES,
    build_model,
    config_from_dict,
    load_model,
    save_model,
    sized_to_side_inputs,
    trainable_families,
)
from models.sequential.sasrec import SASRec
from tests.conftest import tiny_config

TEXT_WIDTH = 8  # of the made-up item text embeddings below


def fit_overrides(family: str, request) -> dict:
    """Any family at its test size (``tests.conftest.tiny_config``; T5 hybrid with the tiny T5)."""
    return tiny_config(family, side_input_width=TEXT_WIDTH, batch_size=64, encoder=request.getfixturevalue("tiny_t5"))


def side_inputs(family: str, n_items: int) -> dict:
    """What the family's spec asks for, made up for the round trip (LightGCN builds its graph)."""
    if "item_text_embeddings" not in FAMILIES[family].side_inputs:
        return {}
    matrix = torch.randn(n_items + 1, TEXT_WIDTH, generator=torch.Generator().manual_seed(0))
    matrix = torch.nn.functional.normalize(matrix, dim=1)
    matrix[0] = 0
    return {"item_text_embeddings": ItemTextEmbeddings(matrix, "random", 0.0, 0)}


def test_the_ensemble_is_the_one_family_not_trained_by_name():
    assert [name for name, spec in FAMILIES.items() if not spec.trainable] == ["ensemble"]


def test_build_model_applies_overrides():
    model = build_model("sasrec", 42, {"dim": 16, "n_layers": 1})
    assert isinstance(model, SASRec)
    assert (model.config.n_items, model.config.dim, model.config.n_layers) == (42, 16, 1)
    assert model.config.n_heads == 2  # untouched fields keep their defaults


def test_unknown_family_raises():
    message = "unknown model 'bert5rec'; known: popularity, ease, sasrec, bert4rec, temporal_attention, lightgcn"
    with pytest.raises(ValueError, match=message):
        build_model("bert5rec", 10)


def test_unknown_override_key_raises_naming_key_and_fields():
    with pytest.raises(ValueError, match=r"'hidden'.*'sasrec'.*dim, n_layers"):
        build_model("sasrec", 10, {"hidden": 64})


def test_config_from_dict_turns_lists_into_tuples():
    config = config_from_dict("ease", {"n_items": 5, "l2_grid": [1.0, 2.0]})
    assert config == EASEConfig(5, l2_grid=(1.0, 2.0))


@pytest.mark.parametrize("family", trainable_families())
def test_save_load_round_trip_gives_identical_scores(family, planted_split, tmp_path, request):
    overrides = fit_overrides(family, request)
    model = build_model(family, planted_split.n_items, overrides, n_users=planted_split.n_users)
    model.fit(
        planted_split.training_data(), torch.device("cpu"), side_inputs=side_inputs(family, planted_split.n_items), progress=False
    )
    save_model(tmp_path / "model.pt", family, model)

    loaded_family, loaded = load_model(tmp_path / "model.pt")

    items = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    batch = HistoryBatch(items, torch.zeros_like(items), torch.tensor([1, 2]))
    assert loaded_family == family and loaded.config == model.config
    assert torch.equal(loaded.score(batch), model.eval().score(batch))


def test_saved_file_is_config_and_state_dict_not_a_pickled_module(tmp_path):
    save_model(tmp_path / "model.pt", "popularity", build_model("popularity", 7))
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(saved) == {"family", "config", "state_dict", "format_version"}
    assert saved["config"] == {"n_items": 7} and saved["format_version"] == 1


def test_build_model_fills_n_users_for_families_with_user_embeddings():
    model = build_model("bert4rec", 30, {"use_user_embedding": True, "dim": 16}, n_users=7)
    assert model.config.n_users == 7


def test_sized_to_side_inputs_takes_the_text_width_unless_given():
    text = {"item_text_embeddings": ItemTextEmbeddings(torch.zeros(5, 24), "x", 0.0, 0)}
    assert sized_to_side_inputs("graphsage", {"lr": 0.1}, text) == {"text_dim": 24, "lr": 0.1}
    assert sized_to_side_inputs("hetero_gnn", {"text_dim": 0}, text) == {"text_dim": 0}  # given wins
    assert sized_to_side_inputs("content_knn", {}, text) == {"dim": 24}  # its vectors are the embeddings
    assert sized_to_side_inputs("sasrec", {"dim": 16}, text) == {"dim": 16}  # reads no text
    assert sized_to_side_inputs("graphsage", {}, {}) == {}
