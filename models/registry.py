"""Every model family, as one spec each, and saving/loading trained models as config + state_dict.

A family spec says everything the pipeline needs to know about a family: its config class, its
module, where it trains (resource profile) and what it consumes besides the split (side inputs).
The training task, the CLI's model list, config validation and the serialization test all read
``FAMILIES``; nothing else lists families. Adding a family is one model file plus one entry here.

A saved model is ``{"family", "config": asdict(config), "state_dict", "format_version"}``; it is
rebuilt from its config, never unpickled as a module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a model is built, saved or loaded
    import torch
    from torch import nn

import importlib

FORMAT_VERSION = 1

Resources = Literal["cpu", "small_gpu", "large_gpu"]
SIDE_INPUTS = ("interaction_graph", "item_text_embeddings")


class ConfigError(ValueError):
    """A model name or config field that does not exist, or a value the family cannot take."""


@dataclass(frozen=True)
class FamilySpec:
    name: str  # what --models and the results table call it
    config_class: type | str  # the frozen config dataclass (first field n_items), or "module:Class"
    module_class: type | str  # the nn.Module built from that config, or "module:Class"
    resources: Resources  # where its training task runs
    side_inputs: tuple[str, ...] = ()  # computed once per catalogue, handed to fit(side_inputs=...)
    trainable: bool = True  # False: built from other trained models (the ensemble), not by --models

    # Classes named as "module:Class" are imported when first read, so that checking a family's
    # name (the first task of every run) does not import PyTorch and every model file.
    @property
    def config(self) -> type:
        return _resolve(self.config_class)

    @property
    def module(self) -> type:
        return _resolve(self.module_class)


def _resolve(target: type | str) -> type:
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _spec(name: str, file: str, config: str, module: str, resources: Resources, **kw) -> FamilySpec:
    return FamilySpec(name, f"models.{file}:{config}", f"models.{file}:{module}", resources, **kw)


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        _spec("popularity", "general.popularity", "PopularityConfig", "Popularity", "cpu"),
        _spec("ease", "general.ease", "EASEConfig", "EASE", "small_gpu"),
        _spec("sasrec", "sequential.sasrec", "SASRecConfig", "SASRec", "large_gpu"),
        _spec("bert4rec", "sequential.bert4rec", "BERT4RecConfig", "BERT4Rec", "large_gpu"),
        _spec("temporal_attention", "sequential.temporal_attention", "TemporalAttentionConfig", "TemporalAttention", "large_gpu"),
        _spec("lightgcn", "graph.lightgcn", "LightGCNConfig", "LightGCN", "small_gpu", side_inputs=("interaction_graph",)),
        _spec("graphsage", "graph.graphsage", "GraphSAGEConfig", "GraphSAGE", "small_gpu", side_inputs=("interaction_graph", "item_text_embeddings")),
        _spec("hetero_gnn", "graph.hetero_gnn", "HeteroGNNConfig", "HeteroGNN", "small_gpu", side_inputs=("item_text_embeddings",)),
        _spec("content_knn", "content.content_knn", "ContentKNNConfig", "ContentKNN", "cpu", side_inputs=("item_text_embeddings",)),
        _spec("two_tower", "content.two_tower", "TwoTowerConfig", "TwoTower", "small_gpu"),
        _spec("sbert_two_tower", "content.sbert_two_tower", "SBERTTwoTowerConfig", "SBERTTwoTower", "small_gpu", side_inputs=("item_text_embeddings",)),
        _spec("hybrid", "content.hybrid", "HybridConfig", "Hybrid", "small_gpu", side_inputs=("item_text_embeddings",)),
        _spec("t5_hybrid", "content.t5_hybrid", "T5HybridConfig", "T5Hybrid", "small_gpu"),
        _spec("multimodal", "content.multimodal", "MultimodalConfig", "Multimodal", "large_gpu", side_inputs=("item_text_embeddings",)),
        _spec("contrastive", "content.contrastive", "ContrastiveConfig", "Contrastive", "small_gpu", side_inputs=("item_text_embeddings",)),
        _spec("ensemble", "ensemble", "EnsembleConfig", "Ensemble", "cpu", trainable=False),
    )
}


def trainable_families() -> list[str]:
    """The names ``--models`` takes, in registry order."""
    return [name for name, spec in FAMILIES.items() if spec.trainable]


def _family(family: str) -> tuple[type, type]:
    if family not in FAMILIES:
        raise ConfigError(f"unknown model {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family].config, FAMILIES[family].module


def check_config(family: str, overrides: dict[str, Any]) -> None:
    """Raise ConfigError unless ``overrides`` build a valid config for ``family`` (any catalogue):
    every field known, every value accepted by the config's own checks."""
    config_cls, _ = _family(family)
    placeholders = {"n_items": 2} | ({"n_users": 2} if "n_users" in {f.name for f in fields(config_cls)} else {})
    config_from_dict(family, {**placeholders, **{k: v for k, v in overrides.items() if k not in placeholders}})


def config_from_dict(family: str, values: dict[str, Any]) -> Any:
    """Build ``family``'s config dataclass from a plain dict (lists become tuples)."""
    config_cls, _ = _family(family)
    known = [f.name for f in fields(config_cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(map(repr, unknown))} for model {family!r}; "
            f"its fields: {', '.join(known)}"
        )
    try:
        return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except (TypeError, ValueError) as exc:  # a value the config's own checks refuse
        raise ConfigError(f"model {family!r}: {exc}") from exc


def build_model(
    family: str, n_items: int, overrides: dict[str, Any] | None = None, *, n_users: int = 0
) -> nn.Module:
    """A fresh model of ``family`` for a catalogue of ``n_items``, config defaults ← overrides.

    ``n_users`` (the split's) fills the config's ``n_users`` field where the family has one.
    """
    overrides = dict(overrides or {})
    if overrides.pop("n_items", n_items) != n_items:
        raise ConfigError(f"n_items comes from the catalogue ({n_items}), not from overrides")
    config_cls, model_cls = _family(family)
    if "n_users" in {f.name for f in fields(config_cls)}:
        overrides.setdefault("n_users", n_users)
    return model_cls(config_from_dict(family, {"n_items": n_items, **overrides}))


def sized_to_side_inputs(family: str, overrides: dict[str, Any], side_inputs: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` plus the config fields a side input fixes, where not given: the width of the
    item text embeddings goes to ``text_dim`` (GraphSAGE, GNN-TV) or, for a family whose vectors
    are the embeddings themselves, ``dim`` (content k-NN)."""
    config_cls, _ = _family(family)
    text = side_inputs.get("item_text_embeddings")
    if text is None or "item_text_embeddings" not in FAMILIES[family].side_inputs:
        return dict(overrides)
    names = {f.name for f in fields(config_cls)}
    return {("text_dim" if "text_dim" in names else "dim"): int(text.dim), **overrides}


def save_model(path: str | Path, family: str, model: nn.Module) -> None:
    _family(family)
    import torch

    torch.save(
        {
            "family": family,
            "config": asdict(model.config),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "format_version": FORMAT_VERSION,
        },
        path,
    )


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[str, nn.Module]:
    """-> (family, model rebuilt from its config with the saved weights, in eval mode)."""
    import torch

    saved = torch.load(path, map_location=map_location, weights_only=True)
    if saved.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {saved.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    family = saved["family"]
    model = _family(family)[1](config_from_dict(family, saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return family, model.to(map_location).eval()
