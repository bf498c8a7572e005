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

Scheduled retraining (``register_retrain``) registers every retrained version, blessed or not,
with its lineage (cutoff, data window, dataset digest, drift summary, what it was warm-started
from) and the result of ``paired_gate``: candidate and champion re-scored by the caller in the
same task on the same fresh validation cases, compared case by case (never the champion's stored
number). A promotion gives the old champion the ``previous_champion`` alias and appends to the
registered model's ``champion_history`` tag (MLflow keeps no alias history); ``rollback_champion``
(or ``python -m tasks.promotion rollback``) moves ``champion`` back.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pipeline.gate import GateResult, paired_gate  # noqa: F401  (the gate is the runner's; re-exported)
from tasks.errors import UserError

if TYPE_CHECKING:
    import numpy as np
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
    _ensure_registered_model(client, name)
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


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="CineSync recommender; alias champion is the one to serve")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


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


# --- Scheduled retraining: the paired gate, lineage, champion history and rollback -------------

PREVIOUS_CHAMPION = "previous_champion"
HISTORY_TAG = "champion_history"  # registered-model tag: JSON list, oldest first
# MLflow's SQL store keeps a registered-model tag value in VARCHAR(5000) (a version tag in TEXT);
# every value written here stays under this, the history by dropping its oldest entries
MAX_TAG_VALUE = 4000
HISTORY_REASON_LENGTH = 300  # a history entry's reason; the version's own tags keep it whole
# the tags register_retrain writes itself: a lineage key may not take one of them
RETRAIN_TAGS = ("family", "execution_key", "baseline_version")
RETRAIN_TAG_PREFIXES = ("gate.", "promotion.", "rollback.")


def register_retrain(
    client: MlflowClient,
    *,
    name: str,
    family: str,
    model_uri: str,
    run_id: str,
    lineage: dict[str, str],
    gate: GateResult | None,
    execution_key: str,
    baseline_version: str | None,
) -> PromotionDecision:
    """Register a retrained model as a new version of ``name`` (always, blessed or not) with its
    lineage and gate, and move the aliases: ``champion`` (the old one becomes
    ``previous_champion``, and ``champion_history`` gets an entry) if the gate promotes it,
    else ``challenger``.

    ``gate`` compares the candidate with ``baseline_version``, the champion the caller re-scored;
    ``gate=None`` with ``baseline_version=None`` means there was no champion. If the champion
    alias has moved since (it is no longer ``baseline_version``), nothing is promoted: the
    comparison is stale. Idempotent by ``execution_key`` like ``register_and_promote``. Any object
    with ``GateResult``'s ``promote, delta, low, high, n_cases, candidate_mean, champion_mean,
    reason`` will do (``pipeline.gate.GateResult`` too)."""
    if "'" in execution_key or not execution_key:
        raise UserError(f"execution_key must be non-empty and free of quotes: {execution_key!r}")
    if (gate is None) != (baseline_version is None):
        raise UserError(
            "register_retrain: a gate compares with a baseline champion: pass both gate and "
            f"baseline_version, or neither (no champion yet); got gate={'set' if gate else None}, "
            f"baseline_version={baseline_version!r}"
        )
    baseline = _version_number(baseline_version) if baseline_version is not None else None
    gated = getattr(gate, "champion_version", None)  # pipeline.gate's GateResult has no such field
    if gated is not None and _version_number(gated) != baseline:
        raise UserError(f"register_retrain: the gate was run against v{gated}, not the baseline v{baseline}")
    for key, value in lineage.items():
        if key in RETRAIN_TAGS or key.startswith(RETRAIN_TAG_PREFIXES):
            raise UserError(f"register_retrain: lineage key {key!r} is a tag register_retrain writes itself")
        if not isinstance(value, str):
            raise UserError(f"register_retrain: lineage values are strings; {key!r} is {type(value).__name__}")

    version = _version_of_execution(client, name, execution_key)
    if version is not None and version.tags.get("promotion.applied") == "true":
        return _recorded_decision(version)  # a re-run of a finished execution changes nothing
    if version is None:
        tags = {
            **lineage,
            "family": family,
            "execution_key": execution_key,
            "baseline_version": baseline or "none",
            **_gate_tags(gate),
        }
        version = _register_version(client, name, Candidate(family, model_uri, run_id), tags)
    this = str(version.version)
    champion = _alias_version(client, name, CHAMPION)
    recorded = _recorded_decision(version) if "promotion.promoted" in version.tags else None
    if recorded is not None and champion in (this, recorded.previous_champion):
        decision = recorded  # a crash left it half-applied and nothing moved since: finish it
        at = version.tags.get("promotion.at") or _now()
    else:
        at = _now()
        if champion == this:  # the alias was set by hand before this execution recorded anything
            decision = PromotionDecision(name, this, True, f"v{this} already holds {CHAMPION}", baseline)
        elif champion != baseline:
            decision = PromotionDecision(name, this, False, (
                f"the champion moved from {_label(baseline)} to {_label(champion)} since the candidate was "
                f"compared: not promoted; re-run to compare with {_label(champion)}"
            ), baseline)
        elif gate is None:
            decision = PromotionDecision(name, this, True, "first version: no champion yet")
        else:
            decision = PromotionDecision(name, this, gate.promote, gate.reason, baseline)
        # the decision is written before any alias moves, so a retry can tell a half-applied one
        for key, value in (
            ("promotion.promoted", str(decision.promoted).lower()),
            ("promotion.reason", decision.reason),
            ("promotion.previous_champion", decision.previous_champion or ""),
            ("promotion.gate", json.dumps(_gate_rule(gate))),
            ("promotion.at", at),
        ):
            client.set_model_version_tag(name, this, key, _clip(value))
    if decision.promoted:
        replaced = decision.previous_champion
        if replaced is not None and replaced != this:
            # previous_champion first: once champion moves, a rollback target is already there
            client.set_registered_model_alias(name, PREVIOUS_CHAMPION, replaced)
        client.set_registered_model_alias(name, CHAMPION, this)
        _append_history(client, name, {
            "version": this, "replaced": replaced, "at": at, "reason": decision.reason, "execution_key": execution_key,
        })
        alias = CHAMPION
    else:
        client.set_registered_model_alias(name, CHALLENGER, this)
        alias = CHALLENGER
    client.set_tag(run_id, f"promotion.{name}", _clip(f"v{this} {alias}: {decision.reason}"))
    client.set_model_version_tag(name, this, "promotion.applied", "true")
    return decision


def rollback_champion(
    client: MlflowClient, name: str = CHAMPION_NAME, *, to_version: str | None = None, reason: str = ""
) -> PromotionDecision:
    """Move ``champion`` back to ``previous_champion`` (or to ``to_version``); the version that
    held it becomes ``previous_champion`` (so a second rollback undoes the first). Records a
    ``champion_history`` entry "rollback: ..." and a ``rollback.*`` tag on both versions. The
    decision's ``version`` is the new champion, its ``previous_champion`` the one rolled back."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"rollback: no registered model {name!r} in this MLflow store") from error
        raise
    champion = model.aliases.get(CHAMPION)
    if champion is None:
        raise UserError(f"rollback: {name} has no {CHAMPION}: nothing to roll back")
    champion = str(champion)
    if to_version is None:
        target = model.aliases.get(PREVIOUS_CHAMPION)
        if target is None:
            raise UserError(
                f"rollback: {name} has no {PREVIOUS_CHAMPION} to roll back to (champion is v{champion}); "
                "pass the version to restore (--to N)"
            )
        target = str(target)
    else:
        target = _version_number(to_version)
        try:
            client.get_model_version(name, target)
        except MlflowException as error:
            raise UserError(f"rollback: {name} has no version {to_version!r}") from error
    if target == champion:
        raise UserError(f"rollback: v{target} already holds {CHAMPION} of {name}: nothing to roll back")
    at = _now()
    why = f"rollback: v{champion} -> v{target}" + (f": {reason}" if reason else "")
    client.set_registered_model_alias(name, CHAMPION, target)  # one upsert: a champion serves throughout
    client.set_registered_model_alias(name, PREVIOUS_CHAMPION, champion)
    client.set_model_version_tag(name, target, "rollback.restored", _clip(f"{at} {CHAMPION} again, replacing v{champion}: {why}"))
    client.set_model_version_tag(name, champion, "rollback.replaced", _clip(f"{at} replaced by v{target}: {why}"))
    _append_history(client, name, {"version": target, "replaced": champion, "at": at, "reason": why, "execution_key": None})
    return PromotionDecision(name, target, True, why, champion)


def champion_history(client: MlflowClient, name: str) -> list[dict]:
    """Who held ``champion`` of ``name`` and why, oldest first (newest entries only, as many as
    the tag holds): ``{"version", "replaced", "at", "reason", "execution_key"}`` each."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"no registered model {name!r} in this MLflow store") from error
        raise
    return json.loads(model.tags.get(HISTORY_TAG, "[]"))


def _register_version(client: MlflowClient, name: str, candidate: Candidate, tags: dict[str, str]) -> ModelVersion:
    _ensure_registered_model(client, name)
    source, model_id, run_id = _model_source(client, candidate)
    tags = {key: _clip(value) for key, value in tags.items()}
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags, model_id=model_id)
    if model_id is not None:
        _link_logged_model(client, model_id, name, str(version.version))
    return version


def _gate_tags(gate: GateResult | None) -> dict[str, str]:
    if gate is None:
        return {}
    return {
        "gate.delta": f"{gate.delta:+.6f}",
        "gate.interval": f"[{gate.low:+.6f}, {gate.high:+.6f}]",
        "gate.n_cases": str(gate.n_cases),
        "gate.candidate_mean": f"{gate.candidate_mean:.6f}",
        "gate.champion_mean": f"{gate.champion_mean:.6f}",
        "gate.reason": gate.reason,
    }


def _gate_rule(gate: GateResult | None) -> dict:
    if gate is None:
        return {"rule": "none: no champion to compare with"}
    return {
        "rule": "paired bootstrap on fresh validation ndcg@10: promote iff delta > 0 and delta >= margin",
        **{k: getattr(gate, k) for k in ("margin", "confidence", "n_boot", "seed") if hasattr(gate, k)},
    }


def _append_history(client: MlflowClient, name: str, entry: dict) -> None:
    """Append ``entry`` to the ``champion_history`` tag unless a retry of the same execution
    already did (same version and execution key; a rollback has none and is always appended);
    drop the oldest entries past the tag limit."""
    history = json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))
    key = entry["execution_key"]
    if key and any(old.get("execution_key") == key and old.get("version") == entry["version"] for old in history):
        return
    entry = {**entry, "reason": _clip(entry["reason"], HISTORY_REASON_LENGTH)}
    history.append(entry)
    while len(history) > 1 and len(json.dumps(history)) > MAX_TAG_VALUE:
        history.pop(0)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def _version_number(version: str) -> str:
    """"3", "v3" or 3 -> "3"."""
    text = str(version).strip()
    number = text[1:] if text[:1] in ("v", "V") else text
    if not number.isdigit():
        raise UserError(f"not a model version number: {version!r}")
    return str(int(number))


def _label(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


def _clip(value: str, limit: int = MAX_TAG_VALUE) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    """``python -m tasks.promotion rollback [--name N] [--to V] [--reason TEXT]``: roll the champion
    back in the store ``MLFLOW_TRACKING_URI`` names; one line says what moved."""
    parser = argparse.ArgumentParser(prog="python -m tasks.promotion", description="The CineSync model registry by hand.")
    commands = parser.add_subparsers(dest="command", required=True)
    rollback = commands.add_parser("rollback", help=f"move {CHAMPION} back to {PREVIOUS_CHAMPION} (or to --to)")
    rollback.add_argument("--name", default=CHAMPION_NAME, help=f"registered model (default {CHAMPION_NAME})")
    rollback.add_argument("--to", dest="to_version", default=None, help=f"the version to restore (default: {PREVIOUS_CHAMPION})")
    rollback.add_argument("--reason", default="", help="why, for champion_history")
    args = parser.parse_args(argv)

    from mlflow import MlflowClient

    from tasks.tracking import absolute_tracking_uri, tracking_uri

    uri = tracking_uri()
    try:
        if uri.startswith("sqlite:///"):
            path = absolute_tracking_uri(uri).removeprefix("sqlite:///")
            from pathlib import Path

            if not Path(path).is_file():  # opening it would create an empty store
                raise UserError(f"no MLflow store at {path} (set MLFLOW_TRACKING_URI)")
        decision = rollback_champion(MlflowClient(uri), args.name, to_version=args.to_version, reason=args.reason)
    except UserError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(
        f"{decision.name}: {CHAMPION} v{decision.previous_champion} -> v{decision.version}, "
        f"{PREVIOUS_CHAMPION} now v{decision.previous_champion} ({decision.reason})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
