"""Which families a run trains and with what settings: model names and per-family config overrides.

``load_model_config`` reads overrides from "" (none), a bundled name such as "laptop"
(``workflows/configs/laptop.yaml``), a YAML file, or inline YAML/JSON text; ``check_models``
checks the requested names and every field of every requested family's overrides against
``models.registry.FAMILIES`` before any data moves. Errors are ``models.registry.ConfigError``
naming what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "workflows" / "configs"


def load_model_config(spec: str | dict) -> dict[str, dict]:
    """Per-family config overrides from ``spec`` (a dict is taken as it is, after the name check)."""
    from models.registry import FAMILIES, ConfigError

    if isinstance(spec, dict):
        config = spec
    elif not spec.strip():
        return {}
    else:
        looks_like_path = "\n" not in spec and len(spec) < 256
        if looks_like_path and (CONFIG_DIR / f"{spec}.yaml").is_file():
            text = (CONFIG_DIR / f"{spec}.yaml").read_text()
        elif looks_like_path and Path(spec).is_file():
            text = Path(spec).read_text()
        else:
            text = spec
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"model config {spec!r} is neither a file nor valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"model config {spec!r} must map family names to overrides, e.g. 'sasrec: {{dim: 64}}'")
    unknown = sorted(set(config) - set(FAMILIES))
    if unknown:
        raise ConfigError(f"model config names unknown model(s) {unknown}; known: {sorted(FAMILIES)}")
    return {family: dict(overrides or {}) for family, overrides in config.items()}


def check_models(models: list[str], config: dict[str, dict]) -> None:
    """Every requested name is a trainable family, the registry is consistent, and every field of
    every requested family's overrides builds a valid config."""
    from models.registry import ConfigError, check_config, check_registry, trainable_families

    check_registry()
    known = trainable_families()
    unknown = [m for m in models if m not in known]
    if unknown or not models:
        hint = "; the ensemble is fitted on the members by itself" if "ensemble" in unknown else ""
        raise ConfigError(f"unknown model(s) {unknown or '(none given)'}; known: {', '.join(known)}{hint}")
    if len(set(models)) != len(models):
        raise ConfigError(f"a model is named twice: {models}")
    for family in models:
        check_config(family, config.get(family, {}))
