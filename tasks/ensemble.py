"""Member scores and the ensemble: every trained model scores the validation cases (the split's and
the held-out slices') over a candidate set; a blend of their standardised scores is fitted on
them. No test case is scored here: the wiring gives these tasks none.
"""

from __future__ import annotations

import json
import time

import pandas as pd
from flytekit import task
from flytekit.types.file import FlyteFile

from tasks.common import SMALL_GPU, TRAIN_CACHE, Table, TrainedModel, work_dir


def _load_members(trained: list[TrainedModel], device) -> dict:
    from models.registry import load_model

    members = {}
    for model_file in trained:
        family, model = load_model(model_file.weights.download(), map_location=device)
        members[family] = model
    return members


@task(cache=TRAIN_CACHE, retries=1, **SMALL_GPU)
def score_members(
    trained: list[TrainedModel], valid_cases: Table, selection_cases: Table, items: Table, top_k: int = 100
) -> Table:
    """Long table: per validation case and candidate item (the union of the members'
    top-``top_k``), each member's score standardised per case (``pipeline.steps.score_members``)."""
    from models.device import pick_device
    from pipeline.steps import score_members as scores
    from pipeline.steps import validation_cases

    if len(trained) < 2:
        return pd.DataFrame({"case_id": pd.Series(dtype="int64"), "stage": pd.Series(dtype="string")})
    device = pick_device()
    members = _load_members(trained, device)
    cases = validation_cases(valid_cases, selection_cases)
    started = time.perf_counter()
    table = scores(members, cases, int(items["item_idx"].max()), top_k=top_k, device=device)
    per_case = table.groupby("case_id").size()
    print(
        f"member scores: {len(members)} members, {len(cases):,} validation cases, {per_case.mean():.0f} candidates a case "
        f"(top {top_k} of each), {time.perf_counter() - started:.1f}s"
    )
    return table


@task(cache=TRAIN_CACHE, retries=1, **SMALL_GPU)
def fit_ensemble(
    trained: list[TrainedModel], member_scores: Table, items: Table, enabled: bool = True
) -> list[TrainedModel]:
    """The members plus their ensemble: weights fitted on the validation cases' member scores
    (``pipeline.steps.fit_ensemble``), saved as one model that scores the full catalogue like any other.
    With fewer than two members, or ``enabled=False``, the members alone."""
    from models.device import pick_device
    from models.interface import EpochLog, FitReport
    from models.registry import save_model
    from pipeline.steps import fit_ensemble as fit_blended

    if not enabled or len(trained) < 2:
        return trained
    started = time.perf_counter()
    device = pick_device()
    members = _load_members(trained, device)
    ensemble, fit = fit_blended(members, member_scores)
    seconds = time.perf_counter() - started
    weights = ", ".join(f"{m} {w:.2f}" for m, w in fit.weights.items() if w > 0)
    print(
        f"ensemble: {weights}; validation NDCG@10 on the candidates {fit.blend:.4f} "
        f"(best member alone {max(fit.member_alone.values()):.4f})"
    )
    valid = {"ndcg@10": fit.blend}
    report = FitReport(
        epochs=[EpochLog(0, 0.0, valid, seconds)], best_epoch=0, best_valid=valid, wall_seconds=seconds,
        curve="", fitted_by="blend weights fitted on the validation cases",
    )
    out = work_dir("trained-ensemble")
    save_model(out / "weights.pt", "ensemble", ensemble)
    (out / "fit_report.json").write_text(json.dumps({**report.to_dict(), "blend": fit.to_dict()}, indent=1))
    return [
        *trained,
        TrainedModel(
            family="ensemble",
            weights=FlyteFile(str(out / "weights.pt")),
            fit_report=FlyteFile(str(out / "fit_report.json")),
            device=str(device),
            train_seconds=seconds,
        ),
    ]
