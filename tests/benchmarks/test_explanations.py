"""benchmarks/explanations.py end to end on the tiny synthetic dataset: a random T5 hybrid trained
through the pipeline's steps, and the faithfulness of three ways of naming a history item."""

import json

from benchmarks.explanations import main


def test_explanations_are_measured_on_sampled_test_histories(tmp_path, tiny_encoder):
    config = {"dim": 16, "max_text_tokens": 16, "batch_size": 256, "max_epochs": 1}
    result = main(["--synthetic-users", "60", "--name", "tiny", "--samples", "20", "--device", "cpu",
                   "--models-config", json.dumps(config), "--text-encoder", tiny_encoder,
                   "--text-cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path), "--md-out", str(tmp_path)])  # fmt: skip
    assert result["n_cases"] == 20 and set(result["faithful_share"]) == {"explain()", "latest", "most similar text"}
    assert all(0.0 <= share <= 1.0 for share in result["faithful_share"].values())
    assert result["t5_hybrid"]["epochs_run"] == 1 and "cold_user" in result["t5_hybrid"]["test"]
    assert "| explain() |" in (tmp_path / "explanations-tiny-cpu.md").read_text()
