"""Figures people would rather look than read: learning curves and the results table."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def learning_curve(fit_report: dict, family: str, path: Path) -> Path:
    """Training loss and validation NDCG@10 per epoch, best epoch marked; saved as PNG."""
    epochs = fit_report.get("epochs", [])
    fig, ax_loss = plt.subplots(figsize=(6, 3.5), dpi=110)
    xs = [e["epoch"] for e in epochs]
    ax_loss.plot(xs, [e["train_loss"] for e in epochs], color="tab:blue", marker=".", label="train loss")
    ax_loss.set_xlabel("epoch" if family != "ease" else "L2 grid step")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_ylabel("train loss", color="tab:blue")
    ax_val = ax_loss.twinx()
    ax_val.plot(xs, [e["valid"].get("ndcg@10", float("nan")) for e in epochs], color="tab:orange", marker=".")
    ax_val.set_ylabel("validation NDCG@10", color="tab:orange")
    best = fit_report.get("best_epoch")
    if best is not None and xs:
        ax_val.axvline(best, color="grey", linestyle="--", linewidth=1)
    ax_loss.set_title(f"{family}: best validation NDCG@10 {fit_report.get('best_valid', {}).get('ndcg@10', float('nan')):.4f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def png_html(path: Path, width: int = 560) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img width="{width}" src="data:image/png;base64,{encoded}"/>'


def results_table(evaluations: list, fit_reports: dict[str, dict], train_seconds: dict[str, float]) -> pd.DataFrame:
    """One row per model and slice: the numbers every comparison reads."""
    rows = []
    for evaluation in evaluations:
        metrics = json.loads(evaluation.metrics_json)
        for slice_name, values in metrics.items():
            rows.append(
                {
                    "model": evaluation.family,
                    "slice": slice_name,
                    "n_cases": int(values.get("n_cases", 0)),
                    "hr@10": values.get("hr@10"),
                    "ndcg@10": values.get("ndcg@10"),
                    "hr@20": values.get("hr@20"),
                    "ndcg@20": values.get("ndcg@20"),
                    "mrr": values.get("mrr"),
                    "coverage@10": values.get("coverage@10"),
                    "best_valid_ndcg@10": fit_reports[evaluation.family].get("best_valid", {}).get("ndcg@10"),
                    "train_seconds": round(train_seconds[evaluation.family], 1),
                }
            )
    return pd.DataFrame(rows)
