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


def save_tiny_t5(folder, texts: list[str], dim: int = 16) -> str:
    """A randomly initialised two-block T5 encoder (d_model ``dim``) and a word-level tokenizer
    over the words of ``texts`` and the aspect prompts, saved to ``folder``: what the
    ``t5_hybrid`` family's ``encoder`` loads offline (no pretrained T5 is installable here)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    specials = ["<pad>", "</s>", "<unk>"]
    splitter = pre_tokenizers.Whitespace()
    words = {w for text in [*texts, "genre themes mood :"] for w, _ in splitter.pre_tokenize_str(text)}
    vocab = {token: i for i, token in enumerate(specials + sorted(words - set(specials)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = splitter
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(vocab), d_model=dim, d_ff=2 * dim, num_layers=2, num_heads=2, d_kv=dim // 2,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)  # fmt: skip
    T5EncoderModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> str:
    """Path of a tiny random T5 encoder over TINY_VOCAB's words (others map to <unk>)."""
    return save_tiny_t5(tmp_path_factory.mktemp("tiny_t5"), [" ".join(TINY_VOCAB[5:])])
