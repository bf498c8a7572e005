"""Every model family, as one spec each, and saving/loading trained models as config + state_dict.

A family spec says everything the pipeline needs to know about a family: its config class, its
module, where it trains (resource profile) and what it consumes besides the split (side inputs,
each a ``SideInputSpec`` of ``SIDE_INPUTS``: how it is built from the training data, how it is
saved and loaded, and which config field of a family takes its width). The runner, the training
tasks, the CLI's model list, config validation, the tests, the default config check and the
benchmarks all read ``FAMILIES``; nothing else lists families. Adding a family is one model file
plus one entry here; ``check_registry`` (run by every run's input check) refuses a spec that names
a side input or a config field that does not exist.

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


class ConfigError(ValueError):
    """A model name or config field that does not exist, or a value the family cannot take."""


@dataclass(frozen=True)
class FamilySpec:
    name: str  # what --models and the results table call it
    config_class: type | str  # the frozen config dataclass (first field n_items), or "module:Class"
    module_class: type | str  # the nn.Module built from that config, or "module:Class"
    resources: Resources  # where its training task runs
    side_inputs: tuple[str, ...] = ()  # names in SIDE_INPUTS: built once per run, handed to fit(side_inputs=...)
    trainable: bool = True  # False: built from other trained models (the ensemble), not by --models
    # (side input, config field): the field takes the side input's width where a run does not set it
    sized_by: tuple[tuple[str, str], ...] = ()

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


@dataclass(frozen=True)
class SideInputSpec:
    """What some families consume besides the split, built once per run from the training data.

    build: "module:function", called as ``build(training, text_encoder=..., device=..., progress=...)``
        with a ``models.data.TrainingData``; returns an object with ``save(path)``.
    kind: "module:Class" of what ``build`` returns; ``Class.load(path)`` reads a saved one back.
    width: the attribute of the built object that a family's ``sized_by`` field takes, if any.
    resources: where it is built (a text encoder wants a GPU; a graph of the training rows does not).
    """

    name: str
    build: str
    kind: str
    width: str | None = None
    resources: Resources = "cpu"

    def built(self, training: Any, *, text_encoder: str, device: str, progress: bool = False) -> Any:
        return _resolve(self.build)(training, text_encoder=text_encoder, device=device, progress=progress)

    def load(self, path: str | Path) -> Any:
        return _resolve(self.kind).load(path)


SIDE_INPUTS: dict[str, SideInputSpec] = {
    spec.name: spec
    for spec in (
        SideInputSpec("interaction_graph", "models.graph.interaction_graph:graph_of_training",
                      "models.graph.interaction_graph:InteractionGraph"),
        SideInputSpec("item_text_embeddings", "models.content.item_text:embeddings_of_catalogue",
                      "models.content.item_text:ItemTextEmbeddings", width="dim", resources="small_gpu"),
    )
}  # fmt: skip
_TEXT = {"side_inputs": ("item_text_embeddings",), "sized_by": (("item_text_embeddings", "text_dim"),)}


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        _spec("popularity", "general.popularity", "PopularityConfig", "Popularity", "cpu"),
        _spec("ease", "general.ease", "EASEConfig", "EASE", "small_gpu"),
        _spec("sasrec", "sequential.sasrec", "SASRecConfig", "SASRec", "large_gpu"),
        _spec("bert4rec", "sequential.bert4rec", "BERT4RecConfig", "BERT4Rec", "large_gpu"),
        _spec("temporal_attention", "sequential.temporal_attention", "TemporalAttentionConfig", "TemporalAttention", "large_gpu"),
        _spec("lightgcn", "graph.lightgcn", "LightGCNConfig", "LightGCN", "small_gpu", side_inputs=("interaction_graph",)),
        _spec("graphsage", "graph.graphsage", "GraphSAGEConfig", "GraphSAGE", "small_gpu",
              side_inputs=("interaction_graph", "item_text_embeddings"), sized_by=_TEXT["sized_by"]),
        _spec("hetero_gnn", "graph.hetero_gnn", "HeteroGNNConfig", "HeteroGNN", "small_gpu", **_TEXT),
        _spec("content_knn", "content.content_knn", "ContentKNNConfig", "ContentKNN", "cpu",
              side_inputs=("item_text_embeddings",), sized_by=(("item_text_embeddings", "dim"),)),
        _spec("two_tower", "content.two_tower", "TwoTowerConfig", "TwoTower", "small_gpu"),
        _spec("sbert_two_tower", "content.sbert_two_tower", "SBERTTwoTowerConfig", "SBERTTwoTower", "small_gpu", **_TEXT),
        _spec("hybrid", "content.hybrid", "HybridConfig", "Hybrid", "small_gpu", **_TEXT),
        _spec("t5_hybrid", "content.t5_hybrid", "T5HybridConfig", "T5Hybrid", "small_gpu"),
        _spec("multimodal", "content.multimodal", "MultimodalConfig", "Multimodal", "large_gpu", **_TEXT),
        _spec("contrastive", "content.contrastive", "ContrastiveConfig", "Contrastive", "small_gpu", **_TEXT),
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
    """``overrides`` plus the config fields the family's spec sizes by a side input (``sized_by``),
    where not given: e.g. the width of the item text embeddings goes to ``text_dim``."""
    _family(family)
    sized = {
        field_name: int(getattr(side_inputs[name], SIDE_INPUTS[name].width))
        for name, field_name in FAMILIES[family].sized_by
        if name in side_inputs
    }
    return {**sized, **overrides}


def check_registry() -> None:
    """Raise ConfigError unless every family spec names only side inputs of ``SIDE_INPUTS`` and
    sizes only config fields it has, by side inputs it takes that have a width."""
    for family, spec in FAMILIES.items():
        unknown = [name for name in spec.side_inputs if name not in SIDE_INPUTS]
        if unknown:
            raise ConfigError(f"model {family!r} names unknown side input(s) {unknown}; known: {', '.join(SIDE_INPUTS)}")
        field_names = {f.name for f in fields(spec.config)}
        for name, field_name in spec.sized_by:
            if name not in spec.side_inputs or SIDE_INPUTS[name].width is None:
                raise ConfigError(f"model {family!r} is sized by {name!r}, which it does not take or which has no width")
            if field_name not in field_names:
                raise ConfigError(f"model {family!r} sizes config field {field_name!r} by {name!r}; its fields: {', '.join(sorted(field_names))}")


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
