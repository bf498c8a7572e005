"""The whole pipeline in one process: what ``models.api`` and every benchmark run.

```python
from pipeline.options import DataOptions
from pipeline.run import run

result = run(DataOptions(source="movielens", path="../shared/data/ml-100k", split_mode="standard"),
             ["popularity", "ease", "sasrec"], model_config="laptop")
result.champion                    # chosen by validation NDCG@10 (held-out slices' cases included)
result.validation["sasrec"]["all"] # what the choice read
result.test["sasrec"].metrics      # reported, never read by a choice
```

The steps are those of the Flyte workflow (``pipeline.steps``), in its order; a benchmark that
measures only some of them calls those steps itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline import steps
from pipeline.options import DataOptions


@dataclass
class RunOutput:
    """Everything a run made, in memory."""

    tables: Any  # data_contracts.sources.Tables as read
    contracts: Any  # data_contracts.validate.ValidationOutcome
    split: steps.Split
    side_inputs: dict[str, Any]
    fitted: dict[str, steps.Fitted]  # family -> trained model (the ensemble included, if fitted)
    validation: dict[str, dict[str, dict[str, float]]]  # family -> slice -> metric: what choices read
    test: dict[str, Any] = field(default_factory=dict)  # family -> models.metrics.EvaluationResult
    champion: str = ""
    blend: Any = None  # models.ensemble.BlendFit, when an ensemble was fitted
    score_time_trials: dict[str, list[dict]] = field(default_factory=dict)
    side_input_log: dict[str, dict] = field(default_factory=dict)  # name -> seconds, cache hit or miss

    @property
    def models(self) -> dict[str, Any]:
        return {family: fitted.model for family, fitted in self.fitted.items()}


def run(
    data: DataOptions,
    models: list[str],
    *,
    model_config: str | dict = "",
    text_encoder: str = "all-MiniLM-L6-v2",
    ensemble: bool = True,
    ensemble_top_k: int = 100,
    evaluate_test: bool = True,
    score_time_grid: dict[str, list[float]] | None = None,
    device: str = "auto",
    side_input_cache: Path | None = None,
    checkpoints: Callable[[str, dict], Path | None] | None = None,
    on_epoch: Callable[[str, Any], None] | None = None,
    dataset_name: str | None = None,
    split_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> RunOutput:
    """Read, check, split, build side inputs, fit every family, choose score-time settings and
    the champion on validation, fit the ensemble on validation, and (``evaluate_test``) score the
    test cases of every model. ``checkpoints(family, inputs)`` gives a family's checkpoint
    folder (None: none); ``inputs`` is what its training depends on besides the code (dataset
    checksum, data and split options, the whole training config of the built model, the text
    encoder, the device): key the folder by it. ``on_epoch(family, EpochLog)`` sees each epoch.
    ``split_options``: keyword options of ``steps.split_tables`` (``cold_user_fraction``,
    ``cold_user_targets``)."""
    from dataclasses import asdict

    from models.device import pick_device
    from models.interface import training_config
    from models.registry import FAMILIES
    from pipeline.config import check_models, load_model_config

    data.check()
    config = load_model_config(model_config)
    check_models(models, config)
    torch_device = pick_device(device)
    tables = steps.read_tables(data, name=dataset_name, progress=progress)
    contracts = steps.check_contracts(tables, data)
    frames = contracts.frames
    split = steps.split_tables(frames["interactions"], frames["items"], frames["users"], data, **(split_options or {}))
    training = split.data.training_data()
    needed = [name for family in models for name in FAMILIES[family].side_inputs]
    log: dict[str, dict] = {}
    side_inputs = steps.build_side_inputs(
        needed, training, text_encoder=text_encoder, device=str(torch_device), cache_dir=side_input_cache,
        progress=progress, record=log,
    )  # fmt: skip
    validation_cases = split.validation_cases
    n_items = split.data.n_items
    out = RunOutput(tables, contracts, split, side_inputs, {}, {}, side_input_log=log)
    for family in models:
        overrides = config.get(family, {})
        inputs = {
            "dataset_sha256": tables.checksum, "data": asdict(data), "split_options": split_options or {},
            "device": str(torch_device), "text_encoder": text_encoder if FAMILIES[family].side_inputs else None,
        }  # fmt: skip
        fitted = steps.fit_family(
            family, training, overrides, side_inputs, device=torch_device,
            checkpoint_dir=(lambda config, f=family, i=inputs: checkpoints(f, {**i, "config": training_config(config)}))
            if checkpoints else None,
            on_epoch=(lambda log, f=family: on_epoch(f, log)) if on_epoch else None, progress=progress,
        )  # fmt: skip
        trials = steps.choose_score_time_settings(fitted.model, validation_cases, n_items, score_time_grid or {}, device=torch_device)
        if trials:
            out.score_time_trials[family] = trials
        out.fitted[family] = fitted
        out.validation[family] = steps.validation_metrics(fitted.model, validation_cases, n_items, device=torch_device)
        print(f"{family}: validation NDCG@10 {out.validation[family]['all']['ndcg@10']:.4f} ({fitted.seconds:.1f}s)", flush=True)
    if ensemble and len(models) >= 2:
        started = time.perf_counter()
        table = steps.score_members(out.models, validation_cases, n_items, top_k=ensemble_top_k, device=torch_device)
        model, out.blend = steps.fit_ensemble(out.models, table)
        out.fitted["ensemble"] = steps.Fitted("ensemble", model, None, time.perf_counter() - started, 0.0)
        out.validation["ensemble"] = steps.validation_metrics(model, validation_cases, n_items, device=torch_device)
    out.champion = steps.choose_champion(out.validation)
    print(f"champion on validation NDCG@10: {out.champion} ({out.validation[out.champion]['all']['ndcg@10']:.4f})", flush=True)
    if evaluate_test:
        for family, fitted in out.fitted.items():
            out.test[family] = steps.evaluate(fitted.model, split.test_cases, n_items, device=torch_device)
    return out
