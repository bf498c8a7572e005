"""What training and evaluation show: the training line (early stopping, samples per second),
what each fit chose (epochs, a search such as EASE's λ, or no curve), the CPU/memory sampled while
training, and Decks that hold their own task's tabs only."""

from __future__ import annotations

import time

import pytest
from flytekit import Deck, task, workflow

from tasks.decks import deck_files, own_deck
from tasks.plots import fit_choice, learning_curve
from tasks.system_metrics import SystemSampler
from tasks.train import training_facts, training_line


def _epochs(values, loss=True):
    return [{"epoch": i, "train_loss": (5.0 - i) if loss else 0.0, "valid": {"ndcg@10": v}, "seconds": 2.0} for i, v in enumerate(values)]


def test_the_training_line_says_when_training_stopped_early():
    report = {"epochs": _epochs([0.1, 0.3, 0.2, 0.2]), "best_epoch": 1, "best_valid": {"ndcg@10": 0.3}, "stopped_early": True}
    report.update(training_facts(report, train_rows=1000, seconds=9.0, started_at=0.0))
    line = training_line("sasrec", report, "cpu")
    assert line.startswith("sasrec: stopped early at epoch 3, best epoch 1: validation NDCG@10 0.3000 (9.0s on cpu")
    assert report["samples_per_second"] == pytest.approx(1000 * 4 / 8.0)  # rows x epochs / the epochs' seconds
    assert "500 samples/s" in line
    report["stopped_early"] = False
    assert "ran all 4 epochs, best epoch 1" in training_line("sasrec", report, "cpu")


def test_what_a_search_and_a_count_chose():
    grid = {"epochs": _epochs([0.2, 0.4, 0.3], loss=False), "best_epoch": 1, "best_valid": {"ndcg@10": 0.4},
            "curve": "l2", "grid": [100.0, 500.0, 2000.0]}  # fmt: skip
    assert fit_choice(grid) == "l2 = 500 chosen of 100, 500, 2,000: validation NDCG@10 0.4000"
    counts = {"epochs": _epochs([0.1], loss=False), "best_epoch": 0, "best_valid": {"ndcg@10": 0.1}, "curve": "", "fitted_by": "counts"}
    assert fit_choice(counts) == "fitted by counts: validation NDCG@10 0.1000"


def test_a_search_is_plotted_against_its_values_and_a_count_not_at_all(tmp_path):
    grid = {"epochs": _epochs([0.2, 0.4, 0.3], loss=False), "best_epoch": 1, "best_valid": {"ndcg@10": 0.4},
            "curve": "l2", "grid": [100.0, 500.0, 2000.0]}  # fmt: skip
    path = learning_curve(grid, "ease", tmp_path / "ease.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    counts = {"epochs": _epochs([0.1], loss=False), "best_epoch": 0, "best_valid": {"ndcg@10": 0.1}, "curve": "", "fitted_by": "counts"}
    assert learning_curve(counts, "popularity", tmp_path / "popularity.png") is None
    assert not (tmp_path / "popularity.png").exists()


def test_the_sampler_records_cpu_and_memory_while_a_block_runs():
    with SystemSampler(interval=0.05) as sampler:
        end = time.time() + 0.3
        while time.time() < end:
            sum(range(1000))
    summary = sampler.summary()
    assert len(summary["samples"]) >= 3
    assert summary["process_peak_rss_megabytes"] > 10
    assert 0 < summary["process_cpu_utilization_percentage"] <= 100 * summary["cpu_count"] + 1
    assert {"cpu_utilization_percentage", "system_memory_usage_megabytes", "time"} <= set(summary["samples"][0])


@task(enable_deck=True)
def _first(x: int) -> int:
    own_deck()
    Deck("First tab", "<p>first</p>")
    return x + 1


@task(enable_deck=True, deck_fields=())
def _second(x: int) -> int:
    own_deck(timeline=False)
    Deck("Second tab", "<p>second</p>")
    return x + 1


@workflow
def _two_decks(x: int = 0) -> int:
    return _second(x=_first(x=x))


def test_each_task_deck_holds_its_own_tabs_only():
    assert _two_decks(x=0) == 2
    found = deck_files({"first": "First tab", "second": "Second tab"})
    second = found["second"].read_text()
    assert "Second tab" in second and "First tab" not in second and "Timeline" not in second
    assert "Second tab" not in found["first"].read_text()
