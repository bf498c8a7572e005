"""The DAG's last box: register the run's models in the MLflow registry and gate ``champion``."""

from __future__ import annotations

import json
from dataclasses import asdict

from flytekit import task

from tasks.common import DATA_RESOURCES, DatasetInfo, ModelEvaluation


def protocol_of(split_summary: str) -> str:
    """The evaluation protocol a number was measured under: only numbers with the same one compare."""
    split = json.loads(split_summary)
    return f"leave-one-out full ranking; {split['mode']} split, seed {split['seed']}"


@task(cache=False, retries=2, **DATA_RESOURCES)
def promote_models(
    runs: str,
    evaluations: list[ModelEvaluation],
    info: DatasetInfo,
    split_summary: str,
    margin: float = 0.0,
    slice_tolerance: float = 0.01,
) -> str:
    """Register every model as a version of ``cinesync-<family>`` and the best as a version of
    ``cinesync-champion``; move ``champion`` only past the gate (``tasks.promotion``). Returns the
    decisions as JSON, and prints them."""
    from mlflow import MlflowClient

    from tasks.promotion import Candidate, register_and_promote
    from tasks.tracking import tracking_uri

    logged = json.loads(runs)
    candidates = [
        Candidate(
            family=evaluation.family,
            model_uri=logged["models"][evaluation.family]["model_uri"],
            run_id=logged["models"][evaluation.family]["run_id"],
            metrics={s: {k: v for k, v in m.items() if k != "n_cases"} for s, m in evaluation.metrics.items()},
        )
        for evaluation in evaluations
    ]
    decisions = register_and_promote(
        MlflowClient(tracking_uri=tracking_uri()),
        candidates=candidates,
        dataset_checksum=info.checksum,
        protocol=protocol_of(split_summary),
        margin=margin,
        slice_tolerance=slice_tolerance,
        execution_key=logged["execution_key"],
    )
    for decision in decisions:
        verdict = "champion" if decision.promoted else "challenger"
        print(f"registry: {decision.name} v{decision.version} -> {verdict} ({decision.reason})")
    return json.dumps([asdict(d) for d in decisions])
