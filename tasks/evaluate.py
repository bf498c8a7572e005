"""Evaluate: every trained model under the one protocol (full ranking, per slice) on the
validation cases of every slice (what the champion and the gate are chosen by) and on the test
cases (reported, never read by a choice)."""

from __future__ import annotations

import json
import time

import numpy as np
from flytekit import Deck, task
from flytekit.types.file import FlyteFile

from tasks.common import SMALL_GPU, TRAIN_CACHE, ModelEvaluation, Table, TrainedModel, work_dir


@task(cache=TRAIN_CACHE, retries=1, enable_deck=True, **SMALL_GPU)
def evaluate_models(
    trained: list[TrainedModel], valid_cases: Table, selection_cases: Table, test_cases: Table, items: Table
) -> list[ModelEvaluation]:
    """Score each model's validation cases (the split's and the held-out slices':
    ``pipeline.steps.validation_metrics``) and test cases (``pipeline.steps.evaluate``) against the
    whole catalogue.

    Writes per model a parquet of every test case (case id, user, target, rank, ranked top-20 item
    ids in index and raw-id space, slice, activity bucket) so anyone can recompute the metrics.
    """
    from models.device import pick_device
    from models.registry import load_model
    from pipeline.steps import evaluate, validation_cases, validation_metrics
    from tasks.decks import own_deck
    from tasks.plots import fit_html, results_matrix_html, results_table

    own_deck()
    device = pick_device()
    test_cases = test_cases.reset_index(drop=True)
    every_slice = validation_cases(valid_cases, selection_cases)
    n_items = int(items["item_idx"].max())
    raw_id = np.zeros(n_items + 1, dtype=np.int64)  # item_idx -> raw item id; 0 stays 0 (no item)
    raw_id[items["item_idx"].to_numpy()] = items["item_id"].to_numpy()
    evaluations, fit_reports, seconds = [], {}, {}
    deck_fits = []
    for model_file in trained:
        family, model = load_model(model_file.weights.download(), map_location=device)
        model.to(device).eval()
        validation = validation_metrics(model, every_slice, n_items, device=device)
        started = time.perf_counter()
        result = evaluate(model, test_cases, n_items, device=device, progress=True)
        elapsed = time.perf_counter() - started
        per_case = result.per_case.copy()
        per_case["target_item_id"] = raw_id[per_case["target_item"].to_numpy()]
        per_case["top_item_ids"] = list(raw_id[np.stack(per_case["top_items"].to_numpy())])
        out = work_dir(f"evaluation-{family}")
        per_case.to_parquet(out / "test_predictions.parquet", index=False)
        evaluations.append(
            ModelEvaluation(
                family=family,
                metrics_json=json.dumps(result.metrics),
                validation_json=json.dumps(validation),
                predictions=FlyteFile(str(out / "test_predictions.parquet")),
                eval_seconds=elapsed,
            )
        )
        fit_reports[family] = json.loads(open(model_file.fit_report.download()).read())
        seconds[family] = model_file.train_seconds
        deck_fits.append(fit_html(fit_reports[family], family, out))
        print(
            f"{family}: validation NDCG@10 {validation['all']['ndcg@10']:.4f} (every slice; what choices read), "
            f"test NDCG@10 {result.metrics['all']['ndcg@10']:.4f}, HR@10 {result.metrics['all']['hr@10']:.4f}"
        )
    table = results_table(evaluations, fit_reports, seconds)
    Deck(
        "Results",
        "<h3>Test NDCG@10 and HR@10 per slice</h3>"
        + results_matrix_html({e.family: e.metrics for e in evaluations})
        + "<h3>Every metric</h3>"
        + table.to_html(index=False, float_format=lambda v: f"{v:.4f}"),
    )
    Deck("What each model chose", "".join(deck_fits))
    return evaluations
