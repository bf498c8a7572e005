"""The retraining workflow's tasks: which versions serve now, the retrain itself, and the registry.

- ``serving_versions``: the registry's ``champion`` version of every name the retrain may replace
  (``cinesync-<family>`` and ``cinesync-champion``); for an execution that already registered,
  the versions it compared with then, so a re-run sees the same inputs (Flyte's cache answers it)
  and changes nothing.
- ``retrain_window``: ``pipeline.retrain.retrain`` at the cutoff, starting from those versions
  (warm start and gate); both candidate and serving model are scored here on the same fresh
  validation cases. Returns the trained models and the report (JSON).
- ``register_retrained``: logs each model to MLflow (experiment ``cinesync-retrain``) and
  registers every one as a version, blessed or not, with its lineage; ``champion`` moves only past
  the gate (``tasks.promotion.register_retrain``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from flytekit import Deck, task
from flytekit.types.directory import FlyteDirectory

from pipeline.options import DataOptions
from tasks.common import DATA_RESOURCES, LARGE_GPU, TRAIN_CACHE, work_dir

RETRAIN_EXPERIMENT = "cinesync-retrain"


def family_name(family: str) -> str:
    return f"cinesync-{family}"


def retrain_key(data: DataOptions, cutoff: datetime, models: list[str], model_config: str, warm_start: bool,
                validation_days: float, margin: float) -> str:  # fmt: skip
    """The execution key of a retrain: the same inputs give the same key, whatever ran since."""
    from pipeline.window import as_utc

    given = json.dumps([asdict(data), as_utc(cutoff).isoformat(), models, model_config, warm_start, validation_days, margin], sort_keys=True)
    return f"retrain-{as_utc(cutoff).strftime('%Y%m%dT%H%M%SZ')}-{hashlib.sha256(given.encode()).hexdigest()[:12]}"


@task(cache=False)
def execution_key(data: DataOptions, cutoff: datetime, models: list[str], model_config: str, warm_start: bool,
                  validation_days: float, margin: float) -> str:  # fmt: skip
    """``retrain_key`` as a task (a workflow cannot hash its inputs itself)."""
    return retrain_key(data, cutoff, models, model_config, warm_start, validation_days, margin)


@task(cache=False, retries=2, **DATA_RESOURCES)
def serving_versions(key: str, models: list[str]) -> str:
    """JSON {registered name: version serving as ``champion`` ("" where none)} (module docstring)."""
    from mlflow import MlflowClient

    from tasks.promotion import CHAMPION_NAME, _alias_version, _version_of_execution
    from tasks.tracking import quiet_mlflow, tracking_uri

    names = [family_name(f) for f in models] + [CHAMPION_NAME]
    client = MlflowClient(tracking_uri=tracking_uri())
    versions = {}
    with quiet_mlflow():
        for name in names:
            if not _exists(client, name):  # nothing registered under it yet
                versions[name] = ""
                continue
            done = _version_of_execution(client, name, key)
            if done is not None:  # a re-run: the version this execution compared with then
                baseline = done.tags.get("baseline_version", "none")
                versions[name] = "" if baseline in ("", "none") else baseline
                continue
            versions[name] = _alias_version(client, name, "champion") or ""
    print("serving now: " + ", ".join(f"{n} {('v' + v) if v else '(none)'}" for n, v in versions.items()))
    return json.dumps(versions, sort_keys=True)


def load_served(name: str, version: str):
    """A registered version as a ``pipeline.retrain.Served`` (its weights and raw-id maps) and the
    cutoff it was trained at (None if it has no ``cutoff`` tag: not made by a retrain)."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from models.registry import load_model
    from pipeline.retrain import Served
    from tasks.tracking import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri())
    tags = client.get_model_version(name, version).tags
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", tracking_uri=tracking_uri()))
    weights = next(iter(folder.rglob("*.pt")))
    family, model = load_model(weights)
    item_map = pd.read_parquet(next(iter(folder.rglob("item_map.parquet"))))
    user_files = list(folder.rglob("user_map.parquet"))
    user_ids = np.sort(pd.read_parquet(user_files[0])["user_id"].to_numpy(np.int64)) if user_files else np.empty(0, np.int64)
    served = Served(family, model, np.sort(item_map["item_id"].to_numpy(np.int64)), user_ids, f"v{version}")
    cutoff = tags.get("cutoff")
    return served, (datetime.fromisoformat(cutoff.replace("Z", "+00:00")) if cutoff else None)


class RetrainResult(NamedTuple):
    models: FlyteDirectory  # <family>.pt (models.registry format), item_map.parquet, user_map.parquet
    report: str  # JSON: pipeline.retrain.RetrainOutput.report() + the versions it compared with


@task(cache=TRAIN_CACHE, retries=1, enable_deck=True, **LARGE_GPU)
def retrain_window(
    data: DataOptions, cutoff: datetime, models: list[str], model_config: str, warm_start: bool,
    validation_days: float, margin: float, baselines: str,
) -> RetrainResult:  # fmt: skip
    """The retrain at ``cutoff`` from the versions in ``baselines`` (``pipeline.retrain``)."""
    from models.registry import save_model
    from pipeline import steps
    from pipeline.retrain import CHAMPION, Previous, retrain
    from tasks.local_state import checkpoint_dir
    from tasks.promotion import CHAMPION_NAME

    versions = json.loads(baselines)
    served, previous_cutoff = {}, None
    for family in models + [CHAMPION]:
        name = CHAMPION_NAME if family == CHAMPION else family_name(family)
        if versions.get(name):
            served[family], trained_at = load_served(name, versions[name])
            if family == CHAMPION:
                previous_cutoff = trained_at
    previous = Previous(served, previous_cutoff) if served else None
    if previous is not None and previous.cutoff is None:  # a champion of full_pipeline: no window to compare with
        previous.cutoff = cutoff
    tables = steps.read_tables(data, progress=False)
    def checkpoints(family: str, inputs: dict) -> Path:  # a killed retrain resumes its training here
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:24]
        return checkpoint_dir(f"retrain-{family}", key)

    out = retrain(tables, data, cutoff, models, model_config=model_config, previous=previous, warm_start=warm_start,
                  validation_days=validation_days, margin=margin, checkpoints=checkpoints)  # fmt: skip
    folder = work_dir("retrained")
    for family, fitted in out.fitted.items():
        save_model(folder / f"{family}.pt", family, fitted.model)
    out.split.items[["item_idx", "item_id"]].to_parquet(folder / "item_map.parquet", index=False)
    out.split.users[["user_idx", "user_id"]].to_parquet(folder / "user_map.parquet", index=False)
    report = {**out.report(), "baselines": versions, "n_events": len(out.window.interactions),
              "first_event": int(out.window.interactions["timestamp"].min())}  # fmt: skip
    Deck("Retrain", retrain_html(report, None if out.drift is None else out.drift.markdown()))
    return RetrainResult(FlyteDirectory(str(folder)), json.dumps(report))


def retrain_html(report: dict, drift_markdown: str | None) -> str:
    """The Deck of a retrain: the gates and the drift."""
    import html

    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{'first version' if gate is None else html.escape(gate['reason'])}</td></tr>"
        for name, gate in report["gates"].items()
    )
    drift = "<p>No previous window: no drift measured.</p>" if drift_markdown is None else f"<pre>{html.escape(drift_markdown)}</pre>"
    return (f"<h3>Retrain at {report['cutoff']}</h3><p>champion on fresh validation: {report['champion']}; "
            f"warm starts: {html.escape(json.dumps(report['warm_started']))}</p><table>{rows}</table><h3>Drift</h3>{drift}")  # fmt: skip


@task(cache=False, retries=2, **DATA_RESOURCES)
def register_retrained(models: FlyteDirectory, report: str, key: str) -> str:
    """Log and register every retrained model (module docstring) -> JSON of the decisions."""
    import mlflow
    from mlflow import MlflowClient

    from pipeline.gate import GateResult
    from pipeline.retrain import CHAMPION
    from serving import PYFUNC_MODEL_FILE
    from serving.pyfunc import SIGNATURE
    from tasks.promotion import CHAMPION_NAME, _recorded_decision, _version_of_execution, register_retrain
    import pandas as pd

    from tasks.tracking import PYFUNC_REQUIREMENTS, _input_example, quiet_mlflow, tracking_uri

    info = json.loads(report)
    folder = Path(models.download())
    example = _input_example(pd.read_parquet(folder / "item_map.parquet").sort_values("item_idx")["item_id"].head(3).tolist())
    client = MlflowClient(tracking_uri=tracking_uri())
    names = {family: family_name(family) for family in info["fitted_families"]} | {CHAMPION: CHAMPION_NAME}
    decisions = []
    with quiet_mlflow():
        done = [_version_of_execution(client, n, key) if _exists(client, n) else None for n in names.values()]
        if all(v is not None and v.tags.get("promotion.applied") == "true" for v in done):
            decisions = [_recorded_decision(v) for v in done]
            print(f"registry: execution {key} was registered already; nothing changes")
        else:
            mlflow.set_tracking_uri(tracking_uri())
            mlflow.set_experiment(RETRAIN_EXPERIMENT)
            logged = {}
            with mlflow.start_run(run_name=f"retrain-{info['cutoff']}") as parent:
                mlflow.set_tags({"cutoff": info["cutoff"], "execution_key": key, "champion_family": info["champion"],
                                 "dataset_digest": info["dataset_digest"]})  # fmt: skip
                mlflow.log_dict(info, "retrain_report.json")
                if info["drift"] is not None:  # the drift of the new events, beside the report
                    drift = info["drift"]
                    metrics = {"drift_new_item_share": drift["new_item_share"], "drift_new_user_share": drift["new_user_share"],
                               "drift_forces_retrain": float(drift["forces_retrain"])}  # fmt: skip
                    for stat in drift["statistics"]:
                        slug = stat["name"].replace(" ", "_")
                        metrics[f"drift_{slug}"] = stat["value"]
                        if stat["p_value"] is not None:
                            metrics[f"drift_{slug}_p_value"] = stat["p_value"]
                    mlflow.log_metrics(metrics)
                    mlflow.set_tag("drift", info["drift_summary"])
                for family in info["fitted_families"]:
                    with mlflow.start_run(run_name=family, nested=True) as child:
                        mlflow.log_metrics({f"validation_{s}_{m.replace('@', '_at_')}": v for s, ms in info["validation"][family].items()
                                            for m, v in ms.items() if m in ("ndcg@10", "hr@10")})  # fmt: skip
                        model = mlflow.pyfunc.log_model(
                            name=family, python_model=str(PYFUNC_MODEL_FILE),
                            artifacts={"weights": str(folder / f"{family}.pt"), "item_map": str(folder / "item_map.parquet"),
                                       "user_map": str(folder / "user_map.parquet")},
                            pip_requirements=PYFUNC_REQUIREMENTS, signature=SIGNATURE, model_type="recommender", input_example=example,
                        )  # fmt: skip
                        logged[family] = (model.model_uri, child.info.run_id)
            for name_key, name in names.items():
                family = info["champion"] if name_key == CHAMPION else name_key
                gate = info["gates"].get(name_key)
                baseline = info["baselines"].get(name) or None
                lineage = {
                    "cutoff": info["cutoff"],
                    "data_window": f"[{_iso(info['first_event'])}, {info['cutoff']})",
                    "dataset_digest": info["dataset_digest"],
                    "drift": "none (first retrain)" if info["drift"] is None else info["drift_summary"],
                    "warm_started_from": info["warm_started"][family],
                    "validation_metrics": json.dumps(info["validation"][family], sort_keys=True),
                }
                decisions.append(register_retrain(
                    client, name=name, family=family, model_uri=logged[family][0], run_id=logged[family][1],
                    lineage=lineage, gate=None if gate is None or baseline is None else GateResult(**gate),
                    execution_key=key, baseline_version=baseline if gate is not None else None,
                ))  # fmt: skip
    for decision in decisions:
        print(f"registry: {decision.name} v{decision.version} -> {'champion' if decision.promoted else 'challenger'} ({decision.reason})")
    return json.dumps([asdict(d) for d in decisions])


def _exists(client, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def _iso(seconds: int) -> str:
    from datetime import timezone

    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
