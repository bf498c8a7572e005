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


# ----- every family at test size, by one rule ---------------------------------------------------

TINY_T5_DIM = 16  # d_model of ``save_tiny_t5``'s encoder (its default ``dim``)
# Fields that size a model or its training, by name, and their test values: every family's config
# field of one of these names takes it, so a family added to models.registry.FAMILIES is made
# tiny with no edit here (tests/test_every_family.py fails for a size field this rule misses).
TINY_SIZES = {
    "dim": 16, "n_layers": 1, "max_len": 20, "history_length": 20, "max_epochs": 2, "patience": 2,
    "batch_size": 256, "attribute_buckets": 64, "max_text_tokens": 16, "l2_grid": (50.0, 500.0),
}  # fmt: skip
# The few values one family needs besides the rule: T5 hybrid's text width is its encoder's.
TINY_SPECIAL = {"t5_hybrid": {"text_dim": TINY_T5_DIM}}
# Integer fields over TINY_LIMIT that size neither the model nor its training beyond the catalogue
# or the request (batches of evaluation, sampled negatives, the time-bucket span, ...).
NOT_SIZES = ("eval_batch_size", "n_negatives", "time_span", "contrastive_items", "encode_batch_size")
TINY_LIMIT = 32


def tiny_config(family: str, *, side_input_width: int | None = None, **given) -> dict:
    """Config overrides that make ``family`` (any family of ``models.registry.FAMILIES``) tiny:
    each of its fields named in ``TINY_SIZES`` at that value, then ``TINY_SPECIAL[family]``, then
    ``given`` — of each only the fields the family has, so ``encoder=<tiny T5 path>`` reaches T5
    hybrid alone and ``max_len=6`` only the families with a window.

    The fields a side input sizes (the spec's ``sized_by``: ``text_dim``, content k-NN's ``dim``)
    are left out, for the run to size by the side input it builds; ``side_input_width`` sets them
    instead, for a test that builds the model (and any side input) itself."""
    from dataclasses import fields

    from models.registry import FAMILIES

    spec = FAMILIES[family]
    names = {f.name for f in fields(spec.config)}
    config = {**TINY_SIZES, **TINY_SPECIAL.get(family, {})}
    for _, field_name in spec.sized_by:
        config.pop(field_name, None)
        if side_input_width is not None:
            config[field_name] = side_input_width
    return {name: value for name, value in {**config, **given}.items() if name in names}
