"""Register each model of a run in the MLflow registry and gate the ``champion`` alias.

Every candidate becomes a new version of ``cinesync-<family>``; the best one by VALIDATION
``metric`` on ``all`` (the validation cases of every slice, the held-out slices' included; the
ensemble is a candidate like any model) also a version of ``cinesync-champion``. Under each name
the new version takes the ``champion`` alias only if it was measured on the same dataset checksum
and protocol as the current champion, beats it on validation ``all`` by ``margin`` and no shared
validation slice drops by more than ``slice_tolerance``; otherwise it takes ``challenger``. Test
metrics are written on the version (tag ``test_metrics``) to be reported; no choice reads them.
The reason is written on the version and on the candidate's run (tag ``promotion.<registered
name>``).

Atomic: the champion alias is only ever moved by one ``set_registered_model_alias`` call (one SQL
upsert), never deleted, so once a champion exists some version always holds it. Idempotent: a
version remembers its ``execution_key``; re-running an execution finds it and returns the
recorded decision without registering or moving anything. A retry after a crash part-way
finishes the same version instead of registering a second one.

Plain functions of an ``MlflowClient``; the Flyte task around them lives with the workflow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tasks.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION_NAME = "cinesync-champion"
CHAMPION, CHALLENGER = "champion", "challenger"
VALIDATION_TAG = "validation_metrics"  # the version tag the gate reads
# float sums such as 0.3 + 0.1 must not turn an exact tie at the margin into a loss
EPS = 1e-12


@dataclass
class Candidate:
    """One model of the run: its logged model (``runs:/<run_id>/model`` or ``models:/m-...``), its
    validation metrics ``{slice: {metric: value}}`` (with at least ``validation["all"][metric]``:
    what the choice and the gate read) and its test metrics (recorded, never read by a choice)."""

    family: str
    model_uri: str
    run_id: str
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    test: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class PromotionDecision:
    """What happened to one registered name: ``promoted`` means ``version`` now holds ``champion``
    (else ``challenger``); ``previous_champion`` is the version it was compared with, if any."""

    name: str
    version: str
    promoted: bool
    reason: str
    previous_champion: str | None = None


def register_and_promote(
    client: MlflowClient,
    *,
    candidates: list[Candidate],
    dataset_checksum: str,
    protocol: str,
    margin: float = 0.0,
    slice_tolerance: float = 0.01,
    metric: str = "ndcg@10",
    execution_key: str,
) -> list[PromotionDecision]:
    """Register every candidate under ``cinesync-<family>`` and the best on validation under
    ``cinesync-champion``; return one decision per registered name (members in the given order,
    the champion name last)."""
    from pipeline.steps import choose_champion

    if not candidates:
        raise UserError("register_and_promote: no candidates to register")
    families = [c.family for c in candidates]
    if len(set(families)) != len(families) or "champion" in families:
        raise UserError(f"register_and_promote: families must be distinct and none named 'champion': {families}")
    if "'" in execution_key or not execution_key:
        raise UserError(f"execution_key must be non-empty and free of quotes: {execution_key!r}")
    for candidate in candidates:
        if metric not in candidate.validation.get("all", {}):
            raise UserError(
                f"candidate {candidate.family} has no validation {metric} on slice 'all' "
                f"(has {sorted(candidate.validation.get('all', {}))})"
            )
    by_family = {c.family: c for c in candidates}
    best = by_family[choose_champion({c.family: c.validation for c in candidates}, metric)]  # first wins a tie
    gate = {"metric": metric, "margin": margin, "slice_tolerance": slice_tolerance}
    record = {"dataset_checksum": dataset_checksum, "protocol": protocol, "execution_key": execution_key}
    entries = [(f"cinesync-{c.family}", c) for c in candidates] + [(CHAMPION_NAME, best)]
    return [_register_and_decide(client, name, candidate, record, gate) for name, candidate in entries]


def _register_and_decide(client: MlflowClient, name: str, candidate: Candidate, record: dict, gate: dict) -> PromotionDecision:
    version = _version_of_execution(client, name, record["execution_key"])
    if version is not None and version.tags.get("promotion.applied") == "true":
        return _recorded_decision(version)  # a re-run of a finished execution changes nothing
    if version is None:
        version = _register(client, name, candidate, record)
    this = str(version.version)
    champion = _alias_version(client, name, CHAMPION)
    recorded = _recorded_decision(version) if "promotion.promoted" in version.tags else None
    if recorded is not None and champion in (this, recorded.previous_champion):
        decision = recorded  # a crash left it half-applied and nothing moved since: finish it
    elif champion is None:
        decision = PromotionDecision(name, this, True, f"first version of {name}: no champion yet")
    elif champion == this:  # the alias was set by hand before this execution recorded anything
        decision = PromotionDecision(name, this, True, f"v{this} already holds {CHAMPION}")
    else:
        promoted, reason = compare_to_champion(version.tags, client.get_model_version(name, champion).tags, champion, **gate)
        decision = PromotionDecision(name, this, promoted, reason, champion)
    # the decision is written before the alias moves, so a retry can tell a half-applied one
    for key, value in (
        ("promotion.promoted", str(decision.promoted).lower()),
        ("promotion.reason", decision.reason),
        ("promotion.previous_champion", decision.previous_champion or ""),
        ("promotion.gate", json.dumps(gate)),
    ):
        client.set_model_version_tag(name, this, key, value)
    alias = CHAMPION if decision.promoted else CHALLENGER
    client.set_registered_model_alias(name, alias, this)
    client.set_tag(candidate.run_id, f"promotion.{name}", f"v{this} {alias}: {decision.reason}")
    client.set_model_version_tag(name, this, "promotion.applied", "true")
    return decision


def compare_to_champion(
    new: dict[str, str], old: dict[str, str], old_version: str, *, metric: str, margin: float, slice_tolerance: float
) -> tuple[bool, str]:
    """The champion gate on two versions' tags (their ``validation_metrics``): (promote?, why)."""
    if new["dataset_checksum"] != old.get("dataset_checksum"):
        return False, (
            f"different dataset checksum: no comparison (champion v{old_version} was measured on "
            f"{_short(old.get('dataset_checksum'))}, this version on {_short(new['dataset_checksum'])})"
        )
    if new["protocol"] != old.get("protocol"):
        return False, (
            f"different protocol: no comparison (champion v{old_version} under {old.get('protocol')!r}, "
            f"this version under {new['protocol']!r})"
        )
    new_metrics, old_metrics = json.loads(new[VALIDATION_TAG]), json.loads(old.get(VALIDATION_TAG, "{}"))
    if metric not in old_metrics.get("all", {}):
        return False, f"champion v{old_version} has no validation {metric} on slice 'all': no comparison"
    gain = new_metrics["all"][metric] - old_metrics["all"][metric]
    headline = (
        f"validation {metric} on all {new_metrics['all'][metric]:.4f} vs champion v{old_version}'s "
        f"{old_metrics['all'][metric]:.4f} (gain {gain:+.4f}, margin {margin:.4f})"
    )
    if gain < margin - EPS:
        return False, f"{headline}: not better by the margin"
    drops = sorted(
        ((old_metrics[s][metric] - new_metrics[s][metric], s) for s in new_metrics if s in old_metrics
         and metric in new_metrics[s] and metric in old_metrics[s]),
        reverse=True,
    )
    regressed = [
        f"slice {s} dropped {drop:.4f} ({old_metrics[s][metric]:.4f} -> {new_metrics[s][metric]:.4f}), past the tolerance {slice_tolerance:.4f}"
        for drop, s in drops
        if drop > slice_tolerance + EPS
    ]
    if regressed:
        return False, f"{headline}, but " + "; ".join(regressed)
    return True, f"{headline}; no slice dropped more than {slice_tolerance:.4f}"


def _register(client: MlflowClient, name: str, candidate: Candidate, record: dict) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="CineSync recommender; alias champion is the one to serve")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source, model_id, run_id = _model_source(client, candidate)
    tags = {
        **record,
        "family": candidate.family,
        VALIDATION_TAG: json.dumps(candidate.validation, sort_keys=True),
        "test_metrics": json.dumps(candidate.test, sort_keys=True),
    }
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags, model_id=model_id)
    if model_id is not None:
        _link_logged_model(client, model_id, name, str(version.version))
    return version


def _model_source(client: MlflowClient, candidate: Candidate) -> tuple[str, str | None, str]:
    """(storage location, logged model id, run id) of the candidate's model.

    MLflow 3 keeps a logged model's files under the model, not the run, so ``runs:/<id>/model``
    must be resolved to the logged model; and the SQL registry resolves a ``models:/m-...`` source
    through the *global* tracking URI, so the location is resolved here with this client instead.
    """
    uri = candidate.model_uri
    if uri.startswith("models:/m-"):
        model = client.get_logged_model(uri.removeprefix("models:/").split("/")[0])
        return model.artifact_location, model.model_id, model.source_run_id or candidate.run_id
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        run = client.get_run(run_id)
        models = client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' and name = '{path}'"
        )
        if len(models) > 1:
            raise UserError(f"{uri} names {len(models)} logged models; pass models:/<model_id> instead")
        if models:
            return models[0].artifact_location, models[0].model_id, run_id
        return f"{run.info.artifact_uri}/{path}", None, run_id  # a model saved as run artifacts
    return uri, None, candidate.run_id


def _link_logged_model(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """The logged model's list of registered versions (what the MLflow UI shows on its page);
    ``mlflow.register_model`` writes it, ``create_model_version`` does not."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    linked = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    linked.append({"name": name, "version": version})
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(linked)})


def _version_of_execution(client: MlflowClient, name: str, execution_key: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name = '{name}' and tags.execution_key = '{execution_key}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    # get_model_version_by_alias raises INVALID_PARAMETER_VALUE for a missing alias; the model's
    # alias map just lacks it
    version = client.get_registered_model(name).aliases.get(alias)
    return None if version is None else str(version)


def _recorded_decision(version: ModelVersion) -> PromotionDecision:
    tags = version.tags
    return PromotionDecision(
        name=version.name,
        version=str(version.version),
        promoted=tags["promotion.promoted"] == "true",
        reason=tags["promotion.reason"],
        previous_champion=tags.get("promotion.previous_champion") or None,
    )


def _short(checksum: str | None) -> str:
    return "an unknown dataset" if not checksum else checksum[:12]
