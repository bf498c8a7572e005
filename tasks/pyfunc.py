"""Every trained model as an MLflow pyfunc: user histories (raw item ids) in, top-k raw ids out.

Logged as code (``tasks/pyfunc_model.py`` calls ``mlflow.models.set_model(TopKRecommender())``),
so loading a logged model runs that file instead of unpickling an object."""

from __future__ import annotations

import numpy as np
import pandas as pd
import mlflow.pyfunc
import torch

from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from models.data import HistoryBatch, left_pad
from models.metrics import exclusion_mask

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(Array("long"), "history"), ColSpec(Array("long"), "history_timestamps", required=False)]),
    outputs=Schema([ColSpec(Array("long"), "items"), ColSpec("long", "unknown_items")]),
    params=ParamSchema([ParamSpec("k", "long", 10)]),
)


class TopKRecommender(mlflow.pyfunc.PythonModel):
    """Loads ``weights`` (models.registry format) and ``item_map`` (parquet item_idx,item_id).

    ``predict`` takes a DataFrame with a ``history`` column (list of raw item ids, oldest first),
    optionally ``history_timestamps`` (unix seconds, aligned; time-aware models such as
    temporal_attention need them) and the param ``k``; returns a DataFrame with ``items`` (top-k raw item ids, history
    excluded) and ``unknown_items`` (how many history ids the model has never seen).
    """

    def load_context(self, context) -> None:
        from models.registry import load_model

        self.family, self.model = load_model(context.artifacts["weights"], map_location="cpu")
        self.model.eval()
        item_map = pd.read_parquet(context.artifacts["item_map"])
        self.raw_ids = np.zeros(int(item_map["item_idx"].max()) + 1, dtype=np.int64)
        self.raw_ids[item_map["item_idx"].to_numpy()] = item_map["item_id"].to_numpy()
        self.index_of = dict(zip(item_map["item_id"].tolist(), item_map["item_idx"].tolist()))
        self.history_length = self.model.history_length  # None: the whole history

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        raw = list(model_input["history"])
        if "history_timestamps" in model_input:
            times = list(model_input["history_timestamps"])
        else:
            times = [[0] * len(h) for h in raw]
        known = [[(self.index_of[i], t) for i, t in zip(h, ts) if i in self.index_of] for h, ts in zip(raw, times)]
        histories = [[i for i, _ in pairs] for pairs in known]
        unknown = [len(h) - len(pairs) for h, pairs in zip(raw, known)]
        width = self.history_length or max(1, max((len(h) for h in histories), default=1))
        batch = HistoryBatch(
            items=left_pad(histories, width),
            timestamps=left_pad([[t for _, t in pairs] for pairs in known], width),
            users=torch.zeros(len(histories), dtype=torch.long),
        )
        with torch.inference_mode():
            scores = self.model.score(batch).float()
            seen = exclusion_mask(histories, scores.shape[1] - 1)
            seen[:, 0] = True  # padding is never recommended
            scores = scores.masked_fill(seen, float("-inf"))
            top = torch.topk(scores, k=min(k, scores.shape[1] - 1), dim=1).indices.numpy()
        return pd.DataFrame({"items": [list(self.raw_ids[t]) for t in top], "unknown_items": unknown})
