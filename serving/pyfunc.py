"""Every trained model as an MLflow pyfunc: user histories (raw item ids) in, top-k raw ids out.

Logged as code (``serving/pyfunc_model.py`` calls ``mlflow.models.set_model(TopKRecommender())``),
so loading a logged model runs that file instead of unpickling an object.

Request formats (``mlflow models serve``; see ``serving/SERVING.md``): ``dataframe_records``,
``dataframe_split`` and ``inputs`` as a list of records, or ``inputs`` as one record for one user.
Each row is one user: ``history`` (raw item ids, oldest first) and optionally
``history_timestamps``; the param ``k`` (default 10).

Serving is one small request at a time, so ``predict`` is written for latency: torch runs it on
``CINESYNC_INFERENCE_THREADS`` threads (default 1; see ``inference_threads``), raw ids are mapped
with one vectorised ``searchsorted``, the padded batch is built in numpy, and the history is
excluded by writing ``-inf`` at its indices before one ``topk``; pandas only reads the input
column and builds the output frame. A request of one user is scored by the model's traced
single-row scorer where the family has one (``serving.inference``: SASRec, BERT4Rec, TAT-TV,
GraphSAGE, GNN-TV), built and checked against ``score`` when the model loads.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager

import numpy as np
import pandas as pd
import mlflow.pyfunc
import torch

from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from models.data import PAD, HistoryBatch

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(Array("long"), "history"), ColSpec(Array("long"), "history_timestamps", required=False)]),
    outputs=Schema([ColSpec(Array("long"), "items"), ColSpec("long", "unknown_items")]),
    params=ParamSchema([ParamSpec("k", "long", 10)]),
)

INFERENCE_THREADS_ENV = "CINESYNC_INFERENCE_THREADS"
DEFAULT_INFERENCE_THREADS = 1


def inference_threads() -> int | None:
    """The torch threads ``predict`` runs with: ``CINESYNC_INFERENCE_THREADS`` (default 1); 0
    means leave torch's own setting alone (None).

    Why 1: one request scores ~3.7k items against one history, tens of microseconds to about a
    millisecond of arithmetic split into many small ops; fanning each op out to a thread pool costs
    more in wake-ups and synchronisation than it saves, and on a shared machine every extra thread
    waits for a core (on the busy 2-core machine a 64x64 matmul took 8 us on one thread and 0.9 ms
    on two; the issue measured SASRec at p50 32-152 ms with torch's default threads, 4.6 ms with
    one). Throughput comes from more server workers, not from more threads per request.
    """
    value = os.environ.get(INFERENCE_THREADS_ENV, "").strip()
    if not value:
        return DEFAULT_INFERENCE_THREADS
    try:
        threads = int(value)
    except ValueError:
        threads = -1
    if threads < 0:
        raise ValueError(f"{INFERENCE_THREADS_ENV} must be a whole number >= 0 (0: torch's default), got {value!r}")
    return threads or None


class TopKRecommender(mlflow.pyfunc.PythonModel):
    """Loads ``weights`` (models.registry format) and ``item_map`` (parquet item_idx,item_id).

    ``predict`` takes a DataFrame with a ``history`` column (list of raw item ids, oldest first),
    optionally ``history_timestamps`` (unix seconds, aligned; time-aware models such as
    temporal_attention need them) and the param ``k``; returns a DataFrame with ``items`` (top-k raw item ids, history
    excluded) and ``unknown_items`` (how many history ids the model has never seen).
    """

    def load_context(self, context) -> None:
        from serving.inference import single_row_scorer
        from models.registry import load_model

        self.threads = inference_threads()
        self.family, self.model = load_model(context.artifacts["weights"], map_location="cpu")
        self.model.eval()
        self._set_item_map(pd.read_parquet(context.artifacts["item_map"]))
        self.history_length = self.model.history_length  # None: the whole history
        with _torch_threads(self.threads):
            self.single_row = single_row_scorer(self.model, len(self.raw_ids) - 1)

    def _set_item_map(self, item_map: pd.DataFrame) -> None:
        """raw_ids[item_idx] = raw id; sorted raw ids with their item_idx for ``searchsorted``."""
        idx = item_map["item_idx"].to_numpy(np.int64)
        ids = item_map["item_id"].to_numpy(np.int64)
        self.raw_ids = np.zeros(int(idx.max()) + 1, dtype=np.int64)
        self.raw_ids[idx] = ids
        order = np.argsort(ids, kind="stable")
        self._sorted_ids, self._sorted_idx = ids[order], idx[order]

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        histories, times = _columns(model_input, ("history", "history_timestamps"))
        if histories is None:
            raise ValueError("the input needs a 'history' column: raw item ids, oldest first")
        rows = len(histories)
        if not rows:
            return _answer_frame(np.empty(0, dtype=object), np.zeros(0, dtype=np.int64))
        flat, lengths = _flatten(histories)
        # raw id -> item_idx for every history of the batch at once; unknown ids drop out
        pos = np.searchsorted(self._sorted_ids, flat)
        pos[pos == len(self._sorted_ids)] = 0
        known = self._sorted_ids[pos] == flat
        idx = self._sorted_idx[pos[known]]
        row_of = np.repeat(np.arange(rows), lengths)[known]
        n_known = np.bincount(row_of, minlength=rows)
        unknown = lengths - n_known
        if times is None:
            stamps = np.zeros(len(idx), dtype=np.int64)
        else:
            stamps = _flatten(times, lengths)[0][known]
        # left-padded [rows, width] batch of each history's latest ``width`` known items; no
        # wider than the longest history: models read histories right-aligned, so columns that
        # are padding in every row change no score, and attention costs grow with the width
        width = max(1, int(n_known.max(initial=0)))
        if self.history_length:
            width = min(width, self.history_length)
        ends = np.cumsum(n_known)
        from_end = ends[row_of] - 1 - np.arange(len(idx))  # 0 for each history's latest item
        keep = from_end < width
        items = np.full((rows, width), PAD, dtype=np.int64)
        timestamps = np.zeros((rows, width), dtype=np.int64)
        cols = width - 1 - from_end[keep]
        items[row_of[keep], cols] = idx[keep]
        timestamps[row_of[keep], cols] = stamps[keep]
        batch = HistoryBatch(
            items=torch.from_numpy(items),
            timestamps=torch.from_numpy(timestamps),
            users=torch.zeros(rows, dtype=torch.long),
        )
        with torch.inference_mode(), _torch_threads(self.threads):
            scores = self._score(batch, len(idx))
            # a copy of our own (a model may hand back a view of its buffers), float32
            scores = scores.to(torch.float32, copy=True)
            n_items = scores.shape[1] - 1
            # padding is never recommended, and the whole history is excluded, also the part
            # older than the model reads: one indexed write for both
            excluded_rows = np.concatenate([np.arange(rows), row_of])
            excluded_items = np.concatenate([np.full(rows, PAD), idx])
            scores[torch.from_numpy(excluded_rows), torch.from_numpy(excluded_items)] = float("-inf")
            top = torch.topk(scores, k=min(k, n_items), dim=1).indices.numpy()
        ranked = self.raw_ids[top]
        if top.shape[1] > n_items - int(n_known.max(initial=0)):  # k reaches into excluded items
            candidates = n_items - _distinct_per_row(row_of, idx, rows, n_items)
            lists = [ranked[r, : candidates[r]].tolist() for r in range(rows)]
        else:
            lists = ranked.tolist()
        column = np.empty(rows, dtype=object)  # one list per row (numpy would make a 2-D array)
        for r, items_of_row in enumerate(lists):
            column[r] = items_of_row
        return _answer_frame(column, unknown)

    def _score(self, batch: HistoryBatch, known_items: int) -> torch.Tensor:
        """The model's scores of ``batch``: the traced single-row scorer for one history with at
        least one known item (a batch without padding, all it was checked for), else ``score``."""
        if self.single_row is not None and len(batch.items) == 1 and known_items:
            return self.single_row(batch.items, batch.timestamps)
        return self.model.score(batch)


def _columns(model_input, names: tuple[str, ...]) -> list[list | None]:
    """The values of each column of ``names`` (a list, one value per row), None for a column
    the input does not have."""
    if isinstance(model_input, pd.DataFrame):
        # the frame as one 2-D object array (the lists themselves are not copied), split into
        # its columns: a third of what a Series per column costs for a one-row request
        model_input = dict(zip(model_input.columns.tolist(), model_input.to_numpy(dtype=object).T))
    return [list(model_input[name]) if name in model_input else None for name in names]


ANSWER_COLUMNS = pd.Index(["items", "unknown_items"], dtype=object)


def _answer_frame(items: np.ndarray, unknown: np.ndarray) -> pd.DataFrame:
    """The answer: ``items`` (an object array of one list per row) and ``unknown_items``.

    Built from its ready column arrays by ``DataFrame._from_arrays`` (where ``DataFrame(dict)``
    ends up), which skips inferring the column labels' dtype — pandas 3 makes them a pyarrow
    string index, 40–60 µs of a one-row request, three quarters of the frame's cost. Private to
    pandas, so the public constructor stands in where it is gone."""
    index = pd.RangeIndex(len(items))
    try:
        return pd.DataFrame._from_arrays([items, unknown], columns=ANSWER_COLUMNS, index=index, verify_integrity=False)
    except (AttributeError, TypeError):
        return pd.DataFrame({"items": items, "unknown_items": unknown}, index=index, copy=False)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _flatten(rows: list, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(all rows' values concatenated as int64, each row's length). With ``lengths`` (the
    histories'), each row must have exactly that many values; a missing row is zeros."""
    arrays = []
    for r, values in enumerate(rows):
        if _missing(values):
            array = np.zeros(0 if lengths is None else int(lengths[r]), dtype=np.int64)
        else:
            array = np.asarray(values, dtype=np.int64).reshape(-1)
            if lengths is not None and len(array) != lengths[r]:
                raise ValueError(
                    f"row {r}: history has {int(lengths[r])} ids but history_timestamps {len(array)} values"
                )
        arrays.append(array)
    if lengths is None:
        lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    flat = arrays[0] if len(arrays) == 1 else (np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64))
    return flat, lengths


def _distinct_per_row(row_of: np.ndarray, idx: np.ndarray, rows: int, n_items: int) -> np.ndarray:
    """How many distinct items each row's history holds."""
    return np.bincount(np.unique(row_of * (n_items + 1) + idx) // (n_items + 1), minlength=rows)


@contextmanager
def _torch_threads(threads: int | None):
    """Run the block with ``threads`` torch threads, then give the caller back its own.

    Set per call, not once at load: torch's thread count is per OS thread once a thread has run
    torch code, and the scoring server calls ``predict`` from a worker thread, not the one that
    loaded the model. Restoring it keeps the setting from leaking into the caller (MLflow itself
    loads the model and predicts the input example inside ``log_model``, in the training process).
    Setting and restoring costs well under a microsecond."""
    previous = torch.get_num_threads()
    if not threads or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
