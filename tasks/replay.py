"""The replay as one Flyte task: ``pipeline.replay.replay``, its table and plot in a Deck and in
MLflow (experiment ``cinesync-replay``; one step per window). The replay keeps its models in
memory and never touches the model registry, so replaying a timeline cannot move a champion."""

from __future__ import annotations

import base64
import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from flytekit import Deck, task

from pipeline.options import DataOptions
from tasks.common import LARGE_GPU, TRAIN_CACHE

REPLAY_EXPERIMENT = "cinesync-replay"


@task(cache=TRAIN_CACHE, retries=1, enable_deck=True, **LARGE_GPU)
def replay_timeline(data: DataOptions, start: datetime, step_days: float, windows: int, models: list[str], model_config: str) -> str:
    """Replay ``windows`` cutoffs from ``start`` every ``step_days`` (``pipeline.replay``) -> the
    per-window table as Markdown, with the pooled comparisons."""
    import mlflow

    from pipeline.replay import comparisons, plot, replay, window_table
    from tasks.tracking import quiet_mlflow, tracking_uri

    result = replay(data, models, start=start, step=timedelta(days=step_days), windows=windows, model_config=model_config)
    table = window_table(result)
    pooled = comparisons(result)
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    lines += ["", *(f"- {k}: {v['delta']:+.4f} NDCG@10 [{v['low']:+.4f}, {v['high']:+.4f}] over {v['n_cases']} cases" for k, v in pooled.items())]
    lines += [f"- wall time {result.seconds:.0f} s"]
    markdown = "\n".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "replay.png"
        plot(result, png)
        image = base64.b64encode(png.read_bytes()).decode()
        Deck("Replay", f"<img src='data:image/png;base64,{image}'/>" + table.to_html(index=False, float_format="%.4f")
             + "<ul>" + "".join(f"<li>{k}: {v['delta']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]</li>" for k, v in pooled.items()) + "</ul>")
        with quiet_mlflow():
            mlflow.set_tracking_uri(tracking_uri())
            mlflow.set_experiment(REPLAY_EXPERIMENT)
            with mlflow.start_run(run_name=f"replay-{result.dataset}"):
                mlflow.log_params({"start": result.start, "step_days": step_days, "windows": windows, "models": ",".join(models)})
                for w in result.windows:
                    mlflow.log_metrics({f"ndcg_at_10_{s}": m["all"]["ndcg@10"] for s, m in w.metrics.items()}, step=w.index)
                mlflow.log_metrics({f"pooled_{k.replace(' - ', '_minus_')}": v["delta"] for k, v in pooled.items()})
                mlflow.log_artifact(str(png))
                mlflow.log_text(markdown, "replay.md")
                mlflow.log_dict({"windows": [{"cutoff": w.cutoff, "metrics": w.metrics, "served": w.served, "retrain": w.retrain}
                                             for w in result.windows], "comparisons": pooled}, "replay.json")  # fmt: skip
    print(markdown)
    return markdown
