"""The DAG's last box: register the run's models in the MLflow registry and gate ``champion``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import NamedTuple

import pandas as pd
from flytekit import task
from flytekit.types.structured import StructuredDataset

from tasks.common import DATA_RESOURCES, DatasetInfo, ModelEvaluation, RunResults


def protocol_of(split_summary: str) -> str:
    """The evaluation protocol a number was measured under: only numbers with the same one compare."""
    split = json.loads(split_summary)
    return (
        f"leave-one-out full ranking, catalogue = item table; {split['mode']} split, seed {split['seed']}; "
        "compared on validation cases of every slice"
    )


class Promotion(NamedTuple):
    decisions: str  # JSON: one PromotionDecision per registered model
    results: RunResults  # the results table with the end-of-run summary


@task(cache=False, retries=2, **DATA_RESOURCES)
def promote_models(
    runs: str,
    evaluations: list[ModelEvaluation],
    info: DatasetInfo,
    split_summary: str,
    results: pd.DataFrame,
    margin: float = 0.0,
    slice_tolerance: float = 0.01,
) -> Promotion:
    """Register every model as a version of ``cinesync-<family>`` and the best on validation as a
    version of ``cinesync-champion``; move ``champion`` only past the gate (``tasks.promotion``). Prints the
    decisions and returns them as JSON; writes the champion decision on the pipeline's parent
    run; returns ``results`` (the tracked results table) with the summary of the run
    (``end_of_run_summary``), which is what the workflow returns and ``pyflyte run`` prints last."""
    from mlflow import MlflowClient

    from tasks.promotion import CHAMPION_NAME, Candidate, register_and_promote
    from tasks.tracking import quiet_mlflow, tracking_uri

    logged = json.loads(runs)
    candidates = [
        Candidate(
            family=evaluation.family,
            model_uri=logged["models"][evaluation.family]["model_uri"],
            run_id=logged["models"][evaluation.family]["run_id"],
            validation={s: {k: v for k, v in m.items() if k not in ("n_cases", "n_users")} for s, m in evaluation.validation.items()},
            test={s: {k: v for k, v in m.items() if k != "n_cases"} for s, m in evaluation.metrics.items()},
        )
        for evaluation in evaluations
    ]
    with quiet_mlflow():
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
    champion = next(d for d in decisions if d.name == CHAMPION_NAME)
    client = MlflowClient(tracking_uri=tracking_uri())
    with quiet_mlflow():
        family = client.get_model_version(CHAMPION_NAME, champion.version).tags.get("family", "?")
        log_decision(client, logged["parent_run_id"], champion, family)
    metrics = {e.family: e.metrics for e in evaluations}
    validation = {e.family: e.validation for e in evaluations}
    summary = end_of_run_summary(metrics, champion, family, logged, list(metrics), validation)
    table = StructuredDataset(dataframe=results)
    return Promotion(json.dumps([asdict(d) for d in decisions]), RunResults(table=table, summary=summary))


def log_decision(client, parent_run_id: str, decision, family: str) -> None:
    """The champion decision on the pipeline's parent run: tags and a line of its description."""
    from tasks.tracking import NOTE

    verdict = "promoted to champion" if decision.promoted else "challenger (champion unchanged)"
    line = f"Champion decision: {decision.name} v{decision.version} ({family}) {verdict}: {decision.reason}."
    tags = {
        "champion.family": family,
        "champion.registered_model": decision.name,
        "champion.version": decision.version,
        "champion.promoted": str(decision.promoted).lower(),
        "champion.reason": decision.reason,
        "champion.previous_version": decision.previous_champion or "",
    }
    for key, value in tags.items():
        client.set_tag(parent_run_id, key, value)
    note = client.get_run(parent_run_id).data.tags.get(NOTE, "")
    kept = [part for part in note.split("\n\n") if part and not part.startswith("Champion decision:")]
    client.set_tag(parent_run_id, NOTE, "\n\n".join([*kept, line]))
    client.log_metric(parent_run_id, "champion_promoted", float(decision.promoted))


def end_of_run_summary(
    metrics: dict, decision, family: str, logged: dict, families: list[str], validation: dict | None = None
) -> str:
    """What the end of a run shows: the models x slices table (test NDCG@10 and HR@10, every model
    and slice), which model validation chose and by what number, the champion decision, how to
    open MLflow on this run, and where the Decks are."""
    import sys

    from tasks.decks import deck_files
    from tasks.plots import render, results_matrix
    from tasks.tracking import absolute_tracking_uri

    color = sys.stdout.isatty()
    table = render(results_matrix(metrics, "Test NDCG@10 and HR@10 per slice (leave-one-out, full ranking; best in bold)"), color=color)
    verdict = "promoted to champion" if decision.promoted else "challenger: the champion stays"
    uri = absolute_tracking_uri()
    experiment, run = logged.get("experiment_id"), logged["parent_run_id"]
    link = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run}" if experiment else f"run {run}"
    lines = [table]
    if validation and family in validation:
        ranked = sorted(validation, key=lambda f: -validation[f]["all"]["ndcg@10"])
        lines.append(
            f"chosen    {family} by validation NDCG@10 {validation[family]['all']['ndcg@10']:.4f} (validation cases of every "
            f"slice; next: " + ", ".join(f"{f} {validation[f]['all']['ndcg@10']:.4f}" for f in ranked[1:3])
            + "); test numbers are reported, never chosen by"
        )
    lines += [
        f"champion  {decision.name} v{decision.version} ({family}) {verdict}: {decision.reason}",
        f"MLflow    mlflow ui --backend-store-uri {uri}",
        f"          then open {link}",
    ]
    tabs = {"validate": "Data contracts", **{f"train {f}": f"Training: {f}" for f in families if f != "ensemble"},
            "evaluate": "Results"}  # fmt: skip
    found = deck_files(tabs)
    width = max(len(label) for label in found)
    for i, (label, path) in enumerate(found.items()):
        where = path.as_uri() if path is not None else "(no Deck written in this process: served from Flyte's cache, or on a cluster)"
        lines.append(f"{'Decks' if i == 0 else '':<10}{label:<{width}}  {where}")
    lines.append(f"{'':<10}(open in a browser; on a Flyte cluster, each task's Flyte Deck in the console)")
    return "\n".join(lines)
