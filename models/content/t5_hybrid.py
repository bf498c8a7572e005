"""T5 hybrid: collaborative item embeddings fused with T5 encodings of the item text, one prompt
per aspect, and an explanation per recommendation that is exact for the score.

**Aspects.** Each item's text (``models.content.item_text.item_text``: title, year, genres, cast,
plot, ...) is put into one prompt per aspect (``aspects``: genre, themes, mood by default), and
each prompt goes through the T5 *encoder* (``T5EncoderModel``), mean-pooled over its non-pad
tokens: ``aspect_text`` [n_aspects, n_items + 1, text_dim]. ``fit`` computes it once, before the
first epoch; it is a buffer of the state_dict, so a saved model scores without T5 installed or
loaded. ``fine_tune_top_layers = k > 0`` trains the encoder's top k blocks (and its final norm):
each step re-encodes the batch's distinct target items with gradient (k blocks of backward; the
frozen blocks run forward only), the other items read the buffer, and the whole buffer is
re-encoded before each validation (one more pass over n_aspects x n_items prompts per epoch). The
encoder is a submodule only while ``fit`` runs (so checkpoints and the best epoch keep its
weights); the model ``fit`` returns carries the buffer alone.

**Item vector.** e_i is item i's id embedding, or the learned "unknown id" row 0 for an item with
no training interaction (and, while training, for ``cold_item_dropout`` of the items each step, so
that row is trained the way new items are scored). Each aspect is a token
z_ia = proj(LayerNorm(t_ia)) + aspect_emb[a]; attention with the query from the id,
alpha_ia = softmax_a(<W_q e_i, W_k z_ia> / sqrt(dim)), fuses them:

    x_i = e_i + sum_a alpha_ia v_ia,   v_ia = W_v z_ia.

**Score.** Additive over the latest ``history_length`` history items h:

    score(u, i) = sum_h w_h <q_h, x_i>,   q_h = W_h x_h,

with w_h = softmax over the present history items of a learned logit per recency (steps back from
the latest item, 0..history_length - 1): the weights are normalised to sum to 1 over the history,
so the user is a weighted mean and an empty history scores every item 0. Trained with
full-softmax cross-entropy over the catalogue on every (training prefix -> next item) pair of
``data.train``, through the shared loop (``models.training``: early stopping on validation
NDCG@10, checkpoints).

**Explanations** (``explain``) are exact, not approximated: the history items named are those
whose removal from the history lowers the item's score most, computed by re-scoring the history
without each of them (exact leave-one-out, one batched ``score``); the aspects' shares split the
score exactly, since score = <u, e_i> + sum_a alpha_ia <u, v_ia> with u = sum_h w_h q_h. The T5
decoder does not phrase them: the one-line text is a template ("Because you watched A and B
(genre, themes)"). ``faithfulness`` measures, on sampled cases, how often removing the named item
lowers the top recommendation's score.

There is no network and no pretrained T5 here: ``encoder`` must be a hub name already cached or
a local folder with a saved T5 (config, weights, tokenizer); anything else fails in ``fit`` with
an error that says so. ``transformers`` is imported only when encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from models.data import PAD, HistoryBatch, TrainingData, left_pad
from models.interface import EpochLog, FitReport
from models.training import train_loop

DEFAULT_ASPECTS = (("genre", "genre: {text}"), ("themes", "themes: {text}"), ("mood", "mood: {text}"))


@dataclass(frozen=True)
class T5HybridConfig:
    n_items: int
    encoder: str = "t5-small"  # T5 hub name (must be cached: no network) or local folder
    aspects: tuple[tuple[str, str], ...] = DEFAULT_ASPECTS  # (name, prompt template with {text})
    max_text_tokens: int = 128  # prompt tokens kept per item and aspect
    text_dim: int = 512  # the encoder's d_model (t5-small: 512); must match
    fine_tune_top_layers: int = 0  # 0: frozen encoder, aspects encoded once; k: top k blocks train
    encode_batch_size: int = 64  # prompts per encoder call
    dim: int = 64
    history_length: int = 50  # latest history items the score reads
    cold_item_dropout: float = 0.1  # share of items trained with the unknown id each step
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256  # (prefix -> next item) pairs per step
    max_epochs: int = 50
    patience: int = 5  # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        aspects = self.aspects.items() if isinstance(self.aspects, Mapping) else self.aspects
        aspects = tuple(tuple(a) for a in aspects)  # YAML gives lists (or a mapping)
        object.__setattr__(self, "aspects", aspects)
        if not aspects or any(len(a) != 2 or "{text}" not in str(a[1]) for a in aspects):
            raise ValueError(f"aspects must be (name, template with '{{text}}') pairs, got {aspects!r}")
        if len({a[0] for a in aspects}) != len(aspects):
            raise ValueError(f"aspect names must be distinct, got {[a[0] for a in aspects]}")
        sizes = (self.dim, self.text_dim, self.max_text_tokens, self.history_length, self.batch_size, self.encode_batch_size)
        if min(sizes) < 1:
            raise ValueError("dim, text_dim, max_text_tokens, history_length, batch_size and encode_batch_size must be >= 1")
        if self.fine_tune_top_layers < 0:
            raise ValueError(f"fine_tune_top_layers must be >= 0, got {self.fine_tune_top_layers}")
        if not 0.0 <= self.cold_item_dropout < 1.0:
            raise ValueError(f"cold_item_dropout must be in [0, 1), got {self.cold_item_dropout}")


# ----- the T5 encoder (transformers imported here only) ----------------------------------------


def load_encoder(name: str) -> tuple[nn.Module, Any]:
    """(T5EncoderModel, tokenizer) from a hub name already cached or a local folder; OSError that
    names the encoder otherwise."""
    try:
        from transformers import AutoTokenizer, T5EncoderModel

        tokenizer = AutoTokenizer.from_pretrained(name)
        encoder = T5EncoderModel.from_pretrained(name)
    except (OSError, ValueError, ImportError) as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise OSError(
            f"T5 encoder {name!r} could not be loaded ({type(exc).__name__}: {first_line}). "
            "There is no network and no pretrained T5 is installed: pass a local path to a saved T5 "
            "(config, weights and tokenizer) as T5HybridConfig.encoder"
        ) from exc
    return encoder, tokenizer


def tokenize_aspects(
    tokenizer: Any, texts: Sequence[str], aspects: Sequence[tuple[str, str]], max_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (aspect, item) prompt -> (input_ids, attention_mask), each LongTensor[A, n_items + 1, T];
    row 0 (padding item) is all pad and masked."""
    ids, masks = [], []
    for _, template in aspects:
        prompts = [template.replace("{text}", text) for text in texts]
        enc = tokenizer(prompts, padding="max_length", truncation=True, max_length=max_tokens, return_tensors="pt")
        pad_row = torch.full((1, max_tokens), tokenizer.pad_token_id or 0, dtype=torch.long)
        ids.append(torch.cat([pad_row, enc["input_ids"]]))
        masks.append(torch.cat([torch.zeros(1, max_tokens, dtype=torch.long), enc["attention_mask"]]))
    ids, masks = torch.stack(ids), torch.stack(masks)
    used = int(masks.sum(-1).max().clamp(min=1))  # drop columns that are padding everywhere
    return ids[..., :used].contiguous(), masks[..., :used].contiguous()


def mean_pooled(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """T5 encoder states averaged over the non-pad tokens: [n, T] -> FloatTensor[n, d_model]."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


# ----- the model ---------------------------------------------------------------------------------


class T5Hybrid(nn.Module):
    def __init__(self, config: T5HybridConfig):
        super().__init__()
        self.config = config
        self.aspect_names = [name for name, _ in config.aspects]
        n, d, a = config.n_items + 1, config.dim, len(config.aspects)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.item_emb = nn.Embedding(n, d)  # row 0: the unknown id (items without interactions)
            nn.init.normal_(self.item_emb.weight, std=0.1)
            self.text_norm = nn.LayerNorm(config.text_dim)
            self.text_proj = nn.Linear(config.text_dim, d)
            self.aspect_emb = nn.Parameter(0.1 * torch.randn(a, d))
            self.query = nn.Linear(d, d, bias=False)
            self.key = nn.Linear(d, d, bias=False)
            self.value = nn.Linear(d, d)
            self.history_proj = nn.Linear(d, d, bias=False)  # q_h = W_h x_h
            self.recency_logits = nn.Parameter(torch.zeros(config.history_length))  # 0 = plain mean
        self.register_buffer("aspect_text", torch.zeros(a, n, config.text_dim))  # T5, computed by fit
        self.register_buffer("item_is_warm", torch.zeros(n, dtype=torch.bool))  # has training interactions
        self._stale = False  # fine-tuning: the encoder moved since aspect_text was computed
        # the fused item table ``score`` reads in eval mode, computed once: fusing every item's
        # aspects per request cost ~10 ms on ML-1M (3.7k items). Cleared whenever the weights can
        # change (back to training, load_state_dict) or move (.to).
        self._items_for_scoring: torch.Tensor | None = None

    @property
    def history_length(self) -> int:
        """How many of the latest history items ``score`` reads."""
        return self.config.history_length

    # ----- items and users ---------------------------------------------------------------------

    def fuse(self, aspect_text: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """aspect_text [A, N, text_dim], known BoolTensor[N] -> (id part e [N, D], attention
        alpha [N, A], aspect values v [N, A, D]); the item vector is e + sum_a alpha_a v_a."""
        rows = torch.arange(len(known), device=known.device)
        ids = self.item_emb(torch.where(known, rows, 0))
        tokens = self.text_proj(self.text_norm(aspect_text)).transpose(0, 1) + self.aspect_emb  # [N, A, D]
        logits = torch.einsum("nd,nad->na", self.query(ids), self.key(tokens)) / math.sqrt(self.config.dim)
        return ids, logits.softmax(-1), self.value(tokens)

    def item_vectors(self, aspect_text: torch.Tensor | None = None, known: torch.Tensor | None = None) -> torch.Tensor:
        """x = e + sum_a alpha_a v_a for every item -> FloatTensor[n_items + 1, D]."""
        ids, alpha, values = self.fuse(self.aspect_text if aspect_text is None else aspect_text,
                                       self.item_is_warm if known is None else known)  # fmt: skip
        return ids + (alpha.unsqueeze(-1) * values).sum(1)

    def recency_weights(self, items: torch.Tensor) -> torch.Tensor:
        """Left-padded items [B, L] -> w [B, L]: softmax of the learned recency logits over the
        present items (sums to 1 per row), 0 on padding and on rows with no item."""
        present = items != PAD
        steps_back = (present.flip(1).cumsum(1).flip(1) - 1).clamp(0, self.config.history_length - 1)
        logits = self.recency_logits[steps_back].masked_fill(~present, -1e9)  # finite: no NaN on empty rows
        return logits.softmax(1) * present

    def users(self, items: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """u = sum_h w_h W_h x_h over the window -> FloatTensor[B, D]."""
        items = items[:, -self.config.history_length :]
        weights = self.recency_weights(items)
        return self.history_proj(torch.einsum("bl,bld->bd", weights, x[items]))

    @torch.no_grad()
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """sum_h w_h <q_h, x_i> -> FloatTensor[B, n_items + 1] (column 0, padding, is 0)."""
        if self.training:
            x = self.item_vectors()
        else:
            if self._items_for_scoring is None:
                self._items_for_scoring = self.item_vectors()
            x = self._items_for_scoring
        scores = self.users(batch.items.to(x.device), x) @ x.T
        scores[:, PAD] = 0.0
        return scores

    # ----- explanations ------------------------------------------------------------------------

    @torch.no_grad()
    def explain(self, history: Sequence[int] | torch.Tensor, item: int, top: int = 3,
                titles: Mapping[int, str] | None = None) -> dict[str, Any]:  # fmt: skip
        """Why ``item`` scores what it does for ``history`` (item_idx, oldest first):

        - ``history``: up to ``top`` items of the window whose removal (every occurrence) lowers
          the score most, as ``{"item", "drop"}`` with drop = score - score without it > 0,
          computed exactly by re-scoring;
        - ``contributions``: the score split exactly into ``"collaborative"`` (<u, e_i>) and
          each aspect (alpha_a <u, v_a>); they sum to ``score``;
        - ``shares``: each contribution / the sum of their absolute values (signed);
        - ``text``: "Because you watched A and B (genre, themes)", the aspects that raised the
          score, largest first; item names from ``titles`` (item_idx -> title), else "item <idx>".
        """
        history = [int(h) for h in torch.as_tensor(history).flatten().tolist() if int(h) != PAD]
        window = list(dict.fromkeys(history[-self.config.history_length :]))
        variants = [history] + [[h for h in history if h != removed] for removed in window]
        scores = self.score(_batch(variants))[:, item]
        full, drops = float(scores[0]), (scores[0] - scores[1:]).tolist()
        raised = sorted(((d, h) for h, d in zip(window, drops) if d > 0), reverse=True)[:top]

        x_ids, alpha, values = self.fuse(self.aspect_text, self.item_is_warm)
        u = self.users(_batch([history]).items.to(alpha.device), self.item_vectors())[0]
        parts = {"collaborative": float(u @ x_ids[item])}
        for a, name in enumerate(self.aspect_names):
            parts[name] = float(alpha[item, a] * (u @ values[item, a]))
        total = sum(abs(v) for v in parts.values()) or 1.0
        aspects = [n for n in sorted(self.aspect_names, key=lambda n: -parts[n]) if parts[n] > 0]
        name = lambda i: (titles or {}).get(i, f"item {i}")  # noqa: E731
        watched = [name(h) for _, h in raised]
        because = ", ".join(watched[:-1]) + f" and {watched[-1]}" if len(watched) > 1 else "".join(watched)
        reason = f" ({', '.join(aspects)})" if aspects else ""
        if watched:
            text = f"Because you watched {because}{reason}"
        else:  # no history item raised it: the id and text of the item alone did
            text = f"Recommended for its {', '.join(aspects) or 'audience'}"
        return {
            "item": int(item),
            "score": full,
            "history": [{"item": h, "drop": d} for d, h in raised],
            "contributions": parts,
            "shares": {k: v / total for k, v in parts.items()},
            "text": text,
        }

    # ----- training ----------------------------------------------------------------------------

    def loss(self, histories: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy of each next item over the catalogue (items 1..n_items)."""
        known = self.item_is_warm
        if self.config.cold_item_dropout > 0:  # these items are trained as a new item is scored
            known = known & (torch.rand(known.shape, device=known.device) >= self.config.cold_item_dropout)
        aspect_text = self.aspect_text
        if "encoder" in self._modules:  # fine-tuning: the batch's targets re-encoded with gradient
            rows = targets.unique()
            fresh = torch.stack([mean_pooled(self.encoder, ids[rows], mask[rows])
                                 for ids, mask in zip(self.prompt_ids, self.prompt_mask)])  # fmt: skip
            aspect_text = aspect_text.index_copy(1, rows, fresh.to(aspect_text.dtype))
        x = self.item_vectors(aspect_text, known)
        logits = self.users(histories, x) @ x[1:].T
        return F.cross_entropy(logits, targets - 1)

    @torch.no_grad()
    def encode_aspects(self) -> None:
        """aspect_text <- the encoder's mean-pooled states of every prompt (eval mode, no grad)."""
        encoder = self.encoder if "encoder" in self._modules else self._frozen_encoder
        was_training = encoder.training
        encoder.eval()
        step = self.config.encode_batch_size
        for a, (ids, mask) in enumerate(zip(self.prompt_ids, self.prompt_mask)):
            for start in range(1, len(ids), step):  # row 0 (padding item) stays zero
                rows = slice(start, start + step)
                self.aspect_text[a, rows] = mean_pooled(encoder, ids[rows], mask[rows]).to(self.aspect_text.dtype)
        encoder.train(was_training)
        self._stale = False

    def train(self, mode: bool = True) -> "T5Hybrid":
        # Fine-tuning: switching to eval (before each validation) re-encodes the catalogue with
        # the encoder as trained so far, so validation and the kept best epoch read fresh aspects.
        super().train(mode)
        self._items_for_scoring = None
        if mode and "encoder" in self._modules:
            self._stale = True
        elif not mode and self._stale:
            self.encode_aspects()
        return self

    def load_state_dict(self, *args, **kwargs):
        self._items_for_scoring = None
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._items_for_scoring = None
        return super()._apply(fn, *args, **kwargs)

    def fit(
        self,
        data: TrainingData,
        device: torch.device,
        *,
        side_inputs: dict[str, Any] | None = None,
        progress: bool = True,
        on_epoch: Callable[[EpochLog], None] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> FitReport:
        """Encode the item texts (once, frozen encoder), then next-item training on every prefix of
        each user's training sequence. Reads the items table of ``data``; no side input."""
        from models.content.item_text import item_text

        cfg = self.config
        if data.n_items != cfg.n_items:
            raise ValueError(f"data has {data.n_items} items, the config {cfg.n_items}")
        device = torch.device(device)
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        encoder, tokenizer = load_encoder(cfg.encoder)
        if encoder.config.d_model != cfg.text_dim:
            raise ValueError(f"encoder {cfg.encoder!r} has d_model {encoder.config.d_model}, the config "
                             f"text_dim {cfg.text_dim}: set T5HybridConfig.text_dim to {encoder.config.d_model}")  # fmt: skip
        n_blocks = len(encoder.encoder.block)
        if cfg.fine_tune_top_layers > n_blocks:
            raise ValueError(f"fine_tune_top_layers {cfg.fine_tune_top_layers} > the {n_blocks} blocks of {cfg.encoder!r}")
        ids, mask = tokenize_aspects(tokenizer, item_text(data.items), cfg.aspects, cfg.max_text_tokens)
        self.prompt_ids, self.prompt_mask = ids.to(device), mask.to(device)  # not saved
        encoder.requires_grad_(False).to(device)
        if cfg.fine_tune_top_layers:
            for block in encoder.encoder.block[n_blocks - cfg.fine_tune_top_layers :]:
                block.requires_grad_(True)
            encoder.encoder.final_layer_norm.requires_grad_(True)
            self.encoder = encoder  # a submodule while fitting: optimised, checkpointed, best kept
        else:
            self.__dict__["_frozen_encoder"] = encoder  # a plain attribute: never in the state_dict
        warm = torch.zeros_like(self.item_is_warm)
        warm[torch.as_tensor(data.train["item_idx"].to_numpy(np.int64, copy=True))] = True
        warm[PAD] = False
        self.item_is_warm.copy_(warm)
        self.to(device)
        self.encode_aspects()  # the only pass over the catalogue with a frozen encoder
        if not cfg.fine_tune_top_layers:
            del self._frozen_encoder

        flat, positions, starts = _next_item_pairs(data.train)
        width = cfg.history_length

        def epoch_batches(generator: torch.Generator):
            order = torch.randperm(len(positions), generator=generator)
            for chunk in order.split(cfg.batch_size):
                index = positions[chunk].unsqueeze(1) - width + torch.arange(width)  # [b, width]
                real = index >= starts[chunk].unsqueeze(1)
                yield torch.where(real, flat[index.clamp(min=0)], PAD), flat[positions[chunk]]

        try:
            return train_loop(
                self,
                data,
                device,
                name="t5_hybrid",
                epoch_batches=epoch_batches,
                batch_loss=lambda batch: self.loss(*batch),
                progress=progress,
                on_epoch=on_epoch,
                checkpoint_dir=checkpoint_dir,
            )
        finally:  # the returned model scores from aspect_text alone
            if "encoder" in self._modules:
                del self.encoder
            self._stale = False
            del self.prompt_ids, self.prompt_mask


def _next_item_pairs(train: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(items of train grouped by user in time order [n], position of each pair's target in it,
    the start of its user's run): one pair per training event after each user's first."""
    users = train["user_idx"].to_numpy(np.int64)
    order = np.argsort(users, kind="stable")  # train is user-ordered; stable keeps time order
    users, items = users[order], train["item_idx"].to_numpy(np.int64)[order]
    first = np.r_[True, users[1:] != users[:-1]]
    starts = np.maximum.accumulate(np.where(first, np.arange(len(users)), 0))
    positions = np.flatnonzero(~first)
    return torch.from_numpy(items.copy()), torch.from_numpy(positions), torch.from_numpy(starts[positions])


def _batch(histories: Sequence[Sequence[int]]) -> HistoryBatch:
    items = left_pad(list(histories), max(1, max(map(len, histories))))
    return HistoryBatch(items, torch.zeros_like(items), torch.zeros(len(items), dtype=torch.long))


@torch.no_grad()
def faithfulness(model: T5Hybrid, data_cases: pd.DataFrame, n_samples: int = 200, seed: int = 0) -> float:
    """Share of sampled cases (non-empty histories of ``data_cases``) where removing the history
    item that ``explain`` names first lowers the score of the top-1 recommendation (the history
    excluded); a case whose explanation names no item counts as a miss."""
    histories = [[int(h) for h in seq if h != PAD] for seq in data_cases["history"]]
    histories = [h for h in histories if h]
    if not histories:
        raise ValueError("faithfulness needs cases with a non-empty history")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(histories), size=min(n_samples, len(histories)), replace=False)
    hits = 0
    for history in (histories[i] for i in chosen):
        scores = model.score(_batch([history]))[0]
        scores[[PAD, *history]] = -math.inf
        item = int(scores.argmax())
        named = model.explain(history, item, top=1)["history"]
        if named:
            without = [h for h in history if h != named[0]["item"]]
            hits += bool(model.score(_batch([without]))[0, item] < scores[item])
    return hits / len(chosen)
