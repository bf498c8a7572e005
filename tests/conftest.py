"""Test-wide settings: no analytics, no network, no reuse of a developer's Flyte cache, and
checkpoints and quarantined rows written under the session's temporary folder, not ~/.cache."""

import os
import tempfile

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["FLYTE_LOCAL_CACHE_ENABLED"] = "false"  # each test runs its tasks for real
# a test that resumes from a checkpoint makes its own; none may resume a developer's
os.environ["CINESYNC_HOME"] = tempfile.mkdtemp(prefix="cinesync-tests-")


TINY_VOCAB = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] . , : the a of and in by star war space love story comedy "
    "drama action genres directed starring network studio created alien ship"
).split()
TINY_ENCODER_DIM = 16


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """Path of a tiny randomly initialised sentence-transformers model (a 16-wide, one-layer BERT
    over a 30-word vocabulary) saved to disk: text encoding in tests without any download."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("tiny_encoder")
    (root / "hf").mkdir()
    (root / "hf" / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=TINY_ENCODER_DIM, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(root / "hf")
    BertTokenizer(vocab_file=str(root / "hf" / "vocab.txt")).save_pretrained(root / "hf")
    transformer = Transformer(str(root / "hf"), max_seq_length=48)
    SentenceTransformer(modules=[transformer, Pooling(TINY_ENCODER_DIM, "mean")], device="cpu").save(str(root / "st"))
    return str(root / "st")
