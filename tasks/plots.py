"""Figures and tables people would rather look at than read: what each fit chose, the results
table, and the models x slices summary printed at the end of a run."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# The slices the summary shows, in this order (any other slice follows them).
SLICE_ORDER = ("all", "warm", "cold_user", "cold_item")


def curve_kind(fit_report: dict) -> str:
    """"epoch" (trained epochs), a hyper-parameter name (a search on validation, e.g. "l2"), or
    "" (no curve). Fit reports written before FitReport.curve existed are epoch curves."""
    return fit_report.get("curve", "epoch")


def no_curve_note(fit_report: dict) -> str:
    """The one line shown instead of a curve for a fit that has none."""
    return f"no training curve: {fit_report.get('fitted_by') or 'one fit'}"


def learning_curve(fit_report: dict, family: str, path: Path) -> Path | None:
    """What the fit chose, as a PNG at ``path``; None (no file) for a fit without a curve.

    Epochs: training loss and validation NDCG@10 per epoch, best epoch marked. A search over a
    hyper-parameter (EASE's λ): validation NDCG@10 against the values tried, the chosen one marked.
    """
    kind = curve_kind(fit_report)
    epochs = fit_report.get("epochs", [])
    if not kind or not epochs:
        return None
    best = fit_report.get("best_epoch")
    best_ndcg = fit_report.get("best_valid", {}).get("ndcg@10", float("nan"))
    ndcgs = [e["valid"].get("ndcg@10", float("nan")) for e in epochs]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    if kind == "epoch":
        xs = [e["epoch"] for e in epochs]
        ax.plot(xs, [e["train_loss"] for e in epochs], color="tab:blue", marker=".", label="train loss")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("train loss", color="tab:blue")
        ax_val = ax.twinx()
        ax_val.plot(xs, ndcgs, color="tab:orange", marker=".")
        ax_val.set_ylabel("validation NDCG@10", color="tab:orange")
        if best is not None:
            ax_val.axvline(best, color="grey", linestyle="--", linewidth=1)
        title = f"{family}: best validation NDCG@10 {best_ndcg:.4f} at epoch {best}"
    else:
        grid = fit_report.get("grid") or list(range(len(epochs)))
        ax.plot(grid, ndcgs, color="tab:orange", marker="o")
        if len(grid) > 1 and min(grid) > 0 and max(grid) / min(grid) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(kind)
        ax.set_ylabel("validation NDCG@10", color="tab:orange")
        chosen = grid[best] if best is not None and best < len(grid) else None
        if chosen is not None:
            ax.axvline(chosen, color="grey", linestyle="--", linewidth=1)
        title = f"{family}: {kind} = {_number(chosen)} chosen, validation NDCG@10 {best_ndcg:.4f}"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def png_html(path: Path, width: int = 560) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img width="{width}" src="data:image/png;base64,{encoded}"/>'


def fit_html(fit_report: dict, family: str, folder: Path) -> str:
    """One model's fit for a Deck: what it chose (figure, or the no-curve note) and its numbers."""
    figure = learning_curve(fit_report, family, Path(folder) / "learning_curve.png")
    shown = png_html(figure) if figure is not None else f"<p><i>{html.escape(no_curve_note(fit_report))}</i></p>"
    facts = {"what it chose": fit_choice(fit_report)}
    facts.update(
        (label, fit_report[key])
        for label, key in (
            ("training rows", "train_rows"),
            ("train seconds", "train_seconds"),
            ("samples per second", "samples_per_second"),
        )
        if key in fit_report
    )
    system = fit_report.get("system", {})
    if system:
        facts["peak RSS (MB)"] = system.get("process_peak_rss_megabytes")
        facts["mean CPU % (100 = one core)"] = system.get("process_cpu_utilization_percentage")
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(_number(v))}</td></tr>"
        for k, v in facts.items()
    )
    return f"<h3>{html.escape(family)}</h3>{shown}<table>{rows}</table>"


def fit_choice(fit_report: dict) -> str:
    """One phrase: which epoch / hyper-parameter value the fit kept, and its validation NDCG@10."""
    kind = curve_kind(fit_report)
    ndcg = fit_report.get("best_valid", {}).get("ndcg@10")
    score = f"validation NDCG@10 {ndcg:.4f}" if ndcg is not None else "no validation cases"
    best = fit_report.get("best_epoch", 0)
    n = len(fit_report.get("epochs", []))
    if not kind:
        return f"fitted by {fit_report.get('fitted_by') or 'one fit'}: {score}"
    if kind == "epoch":
        how = f"stopped early at epoch {n - 1}" if fit_report.get("stopped_early") else f"ran all {n} epochs"
        return f"{how}, best epoch {best}: {score}"
    grid = fit_report.get("grid") or []
    chosen = grid[best] if best < len(grid) else best
    return f"{kind} = {_number(chosen)} chosen of {', '.join(_number(g) for g in grid)}: {score}"


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


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


def ordered_slices(slices) -> list[str]:
    known = [s for s in SLICE_ORDER if s in slices]
    return known + [s for s in slices if s not in known]


def slice_label(slice_name: str) -> str:
    """'cold_user' -> 'cold user', 'activity:11-50' -> 'history 11-50'."""
    if slice_name.startswith("activity:"):
        return "history " + slice_name.removeprefix("activity:")
    return slice_name.replace("_", " ")


def results_matrix(metrics: dict[str, dict[str, dict[str, float]]], title: str = ""):
    """A rich Table: one block per model (best NDCG@10 on all first), a row each for NDCG@10 and
    HR@10, a column per slice with its number of test cases; every model and slice shown."""
    from rich import box
    from rich.table import Table

    models = sorted(metrics, key=lambda m: -metrics[m].get("all", {}).get("ndcg@10", float("-inf")))
    slices = ordered_slices(list(dict.fromkeys(s for m in models for s in metrics[m])))
    table = Table(title=title or None, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column("model", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    for slice_name in slices:
        cases = next((metrics[m][slice_name].get("n_cases") for m in models if slice_name in metrics[m]), None)
        header = slice_label(slice_name) + (f"\n{int(cases):,} cases" if cases is not None else "")
        table.add_column(header, justify="right", no_wrap=True)
    best = {
        (s, k): max((metrics[m][s][k] for m in models if k in metrics[m].get(s, {})), default=None)
        for s in slices
        for k in ("ndcg@10", "hr@10")
    }
    for i, model in enumerate(models):
        for j, (key, label) in enumerate((("ndcg@10", "NDCG@10"), ("hr@10", "HR@10"))):
            cells = []
            for s in slices:
                value = metrics[model].get(s, {}).get(key)
                text = "-" if value is None else f"{value:.4f}"
                cells.append(f"[bold]{text}[/bold]" if value is not None and value == best[(s, key)] else text)
            table.add_row(model if j == 0 else "", label, *cells, end_section=(j == 1 and i < len(models) - 1))
    return table


def results_matrix_html(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    """The same models x slices table as ``results_matrix``, as HTML for a Deck."""
    models = sorted(metrics, key=lambda m: -metrics[m].get("all", {}).get("ndcg@10", float("-inf")))
    slices = ordered_slices(list(dict.fromkeys(s for m in models for s in metrics[m])))
    rows = {
        (model, label): {
            f"{slice_label(s)} ({int(metrics[model][s].get('n_cases', 0)):,})": metrics[model].get(s, {}).get(key)
            for s in slices
            if s in metrics[model]
        }
        for model in models
        for key, label in (("ndcg@10", "NDCG@10"), ("hr@10", "HR@10"))
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.names = ["model", "metric"]
    return frame.to_html(float_format=lambda v: f"{v:.4f}", na_rep="-")


def render(renderable, width: int | None = None, color: bool = False) -> str:
    """A rich renderable as text, at its natural width (never squeezed to a narrow terminal)."""
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=width or 250, color_system="standard" if color else None,
                      force_terminal=color, highlight=False)  # fmt: skip
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())
