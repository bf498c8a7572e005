"""serving/benchmarks/score_ab.py: the earlier version of a family's module, with the current weights."""

import torch

from models.registry import build_model
from serving.benchmarks.score_ab import compare, model_at
from serving.inference import example_history, single_row_scorer


def test_the_module_at_a_revision_scores_with_the_current_weights():
    now = build_model("temporal_attention", 40, {"dim": 16, "max_len": 12}).eval()
    before = model_at("HEAD", now)  # the committed module (a clone may be shallow: no older revision)
    assert type(before).__module__ != type(now).__module__  # the module as it was, loaded apart
    items, times = example_history(12, 40)
    scorers = {"before": single_row_scorer(before, 40), "now": single_row_scorer(now, 40)}
    with torch.inference_mode():
        torch.testing.assert_close(scorers["before"](items, times), scorers["now"](items, times), rtol=1e-5, atol=1e-5)
    ms = compare(scorers, [(items, times)] * 7, warmup=2, block=2)
    assert set(ms) == {"before", "now"} and all(len(v) == 5 and (v > 0).all() for v in ms.values())
