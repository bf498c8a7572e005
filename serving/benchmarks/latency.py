"""Serving latency of the logged pyfunc (issue 10, item 8): in process and over HTTP.

    python serving/benchmarks/latency.py --path /work/shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path /work/shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz

Builds an ML-1M-size setup: the data read by path through the pipeline's steps
(``pipeline.steps``: read, contracts, the standard leave-one-out split, seed 0), and one model of
every family of ``models.registry.FAMILIES`` (``--families``; default all, in registry order) at
its default (real) size. A family is ``fit`` for at most one epoch (``max_epochs: 1`` where its
config has the field: popularity and EASE fit whole, in seconds; the content families set up
their scoring state in fit), with the side inputs its spec names built from the training part
(``SIDE_INPUTS``), except item text embeddings, which are random unit vectors of width 384 (no
encoder is loaded). A few families take a shortcut instead of fit (``SHORTCUTS``): SASRec,
BERT4Rec, TAT-TV and T5 hybrid untrained, LightGCN, GraphSAGE and GNN-TV untrained but
propagated over the real training graph (GNN-TV's with the real genres, the two with random
unit text embeddings), content k-NN with random unit item embeddings. The ensemble is the
seven families issue 10 measured (all but GraphSAGE and GNN-TV) with equal weights. Latency
does not depend on what the weights learned: the same tensors of the same shapes go through the
same operations, so untrained weights time the same as trained ones. A family added to the
registry is measured with no edit here.

Each model is logged exactly as the pipeline logs it (``tasks.tracking.log_model_run``: models
from code, artifacts ``weights`` + ``item_map``, signature, input example) into a temporary SQLite
store, loaded with ``mlflow.pyfunc.load_model``, and asked for the top 10 of one user's history
at a time: the test cases' real histories (raw MovieLens ids, in a fixed random order), time-aware
models with their timestamps. In process: ``--requests`` calls (default 1000) after
``--warmup`` calls, timing ``PyFuncModel.predict`` (what a Python caller gets, MLflow's schema
enforcement included) and ``TopKRecommender.predict`` alone. Over HTTP: ``mlflow models serve -m
<uri> --env-manager local`` in a subprocess on loopback, ``--http-requests`` requests (default
500) in the ``dataframe_records`` format over one keep-alive connection (``http.client``), after
a warm-up. A no-op pyfunc with the same signature is measured the same way: the floor that
MLflow itself costs.

The machine is shared (one of the 2 cores is usually busy with other jobs): before each
measurement the script waits up to ``--quiet-wait`` seconds for the 1-minute load average to
drop under ``--quiet-load`` and records the load average before and after every measurement.

Writes ``serving-<machine>.json`` (every run appended to ``runs``) to the results folder outside the
checkout (``benchmarks.results_dir()``) and to ``serving/benchmarks/results/`` a Markdown table of the latest run, next to the last earlier run whose ``--label`` starts with
"before". The "before" run on file is this script run on the tree of commit 26113ef (the pyfunc
before issue 10's serving work) with ``PYTHONPATH`` set to that tree, so that the server loads
that code too, and the pyfunc's thread setting stubbed out (it did not exist).
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a file from anywhere

from models.registry import FAMILIES  # noqa: E402
from serving.benchmarks import add_output_arguments, command_line, commands_note, output_dirs, results_dir  # noqa: E402

# Families built without ``fit`` (at real size their fit trains for minutes to hours; serving needs
# only their weights, and the graph families their propagated graph): ``without_fit`` builds them.
# Every other family, one added to the registry included, is fit for at most one epoch.
SHORTCUTS = ("sasrec", "bert4rec", "temporal_attention", "t5_hybrid", "lightgcn", "graphsage", "hetero_gnn", "content_knn")
TEXT_WIDTH = 384  # of the random unit "item text embeddings": all-MiniLM-L6-v2's width
# the ensemble measured since issue 10 (every family then); kept so runs stay comparable
ENSEMBLE_MEMBERS = ("popularity", "ease", "sasrec", "bert4rec", "temporal_attention", "lightgcn", "content_knn")
TIME_AWARE = ("temporal_attention", "ensemble")  # their requests carry history_timestamps
IN_PROCESS_BAR_MS = 2.0
HTTP_BAR_MS = 10.0
K = 10
NOOP_MODEL = '''"""A pyfunc that does nothing (serving benchmark): MLflow's own cost per request."""
import mlflow
import pandas as pd


class NoOp(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        n = len(model_input)
        return pd.DataFrame({"items": [list(range(1, 11))] * n, "unknown_items": [0] * n})


mlflow.models.set_model(NoOp())
'''


# ----- setup: data, models, MLflow ----------------------------------------------------------


def load_split(path: str, ratings_path: str | None, name: str):
    """The MovieLens data at ``path`` through the pipeline's steps: read, contracts, the standard
    leave-one-out split (seed 0) -> (the tables as read, the split's ``models.data.SplitData``)."""
    from pipeline import steps
    from pipeline.options import DataOptions

    options = DataOptions(source="movielens", path=path, ratings_path=ratings_path or "", split_mode="standard").check()
    tables = steps.read_tables(options, name=name, progress=False)
    frames = steps.check_contracts(tables, options).frames
    return tables, steps.split_tables(frames["interactions"], frames["items"], frames["users"], options).data


# Config fields a sweep records that the dataset fixes (the model is built for the served data).
DATASET_FIELDS = ("n_items", "n_users")


def validated_configs(name: str, checksum: str, families: list[str], results: Path | None = None) -> dict[str, dict]:
    """family -> the config validation chose for it on this dataset: the chosen trial of
    ``sweep-<family>-<name>-cpu.json`` in ``results`` (default the results folder,
    ``benchmarks.results_dir()``; written by ``benchmarks/sweep.py``), for the families that
    have one. A sweep on other data (its ``dataset_sha256`` is not ``checksum``) is an error, not
    a silent fallback to the default size."""
    configs = {}
    results = results_dir() if results is None else results
    for family in families:
        path = results / f"sweep-{family}-{name}-cpu.json"
        if not path.exists():
            continue
        sweep = json.loads(path.read_text())
        if sweep["dataset_sha256"] != checksum:
            raise ValueError(f"{path}: swept on data with sha256 {sweep['dataset_sha256'][:16]}…, "
                             f"not the served {name} ({checksum[:16]}…)")  # fmt: skip
        chosen = sweep["trials"][sweep["chosen"]]["config"]
        configs[family] = {k: v for k, v in chosen.items() if k not in DATASET_FIELDS}
    return configs


def random_unit_rows(n_items: int, width: int, seed: int = 0):
    """[n_items + 1, width] random unit vectors, row 0 (padding) zero: text embeddings that time
    like real ones."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    rows = torch.nn.functional.normalize(torch.randn(n_items + 1, width, generator=generator), dim=1)
    rows[0] = 0.0
    return rows


def side_inputs_of(family: str, training, seed: int = 0) -> dict:
    """The side inputs ``family``'s spec names: item text embeddings as random unit vectors of
    width ``TEXT_WIDTH`` (no encoder is loaded; latency does not depend on the text), every other
    one built from the training part by its ``models.registry.SIDE_INPUTS`` spec."""
    from models.content.item_text import ItemTextEmbeddings
    from models.registry import SIDE_INPUTS

    built = {}
    for name in FAMILIES[family].side_inputs:
        if name == "item_text_embeddings":
            built[name] = ItemTextEmbeddings(random_unit_rows(training.n_items, TEXT_WIDTH, seed), "random unit vectors", 0.0, 0)
        else:
            built[name] = SIDE_INPUTS[name].built(training, text_encoder="all-MiniLM-L6-v2", device="cpu")
    return built


def without_fit(family: str, model, data, seed: int = 0) -> None:
    """Give an untrained model of a ``SHORTCUTS`` family what its ``fit`` would have set up for
    scoring: the graph families their real training graph (and random unit text embeddings),
    content k-NN random unit item embeddings of its width."""
    from models.graph.interaction_graph import build_hetero_graph, build_interaction_graph

    if family == "lightgcn":  # propagated over the real training graph, as after fit
        model.attach_graph(build_interaction_graph(data.train, data.n_users, data.n_items))
    elif family == "graphsage":
        text = random_unit_rows(data.n_items, model.config.text_dim, seed)
        model.attach(build_interaction_graph(data.train, data.n_users, data.n_items), text)
    elif family == "hetero_gnn":
        text = random_unit_rows(data.n_items, model.config.text_dim, seed)
        model.attach(build_hetero_graph(data.train, data.items, data.n_users, data.n_items), text)
    elif family == "content_knn":  # random unit text embeddings of the encoder's width
        model.item_embeddings.copy_(random_unit_rows(data.n_items, model.config.dim, seed))


def build_models(data, families: list[str], seed: int = 0, overrides: dict | None = None) -> tuple[dict, dict, dict]:
    """family -> model (eval mode), family -> fit report dict, family -> seconds to build.

    A family of ``SHORTCUTS`` is built untrained (``without_fit``); any other is fitted by the
    pipeline's step (``pipeline.steps.fit_family``) for at most one epoch (``max_epochs: 1``
    where its config has the field) with ``side_inputs_of`` it. ``overrides``: family -> config
    fields replacing the family's defaults (``--models-config``)."""
    from dataclasses import fields

    import torch

    from models.ensemble import Ensemble
    from models.registry import build_model
    from pipeline.steps import fit_family

    training = data.training_data()
    members = [f for f in families if f != "ensemble"]
    if "ensemble" in families:
        members = list(dict.fromkeys([*members, *ENSEMBLE_MEMBERS]))  # the ensemble needs its members
    models, reports, seconds = {}, {}, {}
    for family in members:
        started = time.perf_counter()
        config = dict((overrides or {}).get(family, {}))
        if family in SHORTCUTS:
            model = build_model(family, data.n_items, config, n_users=data.n_users)
            without_fit(family, model, data, seed)
            report = {
                "epochs": [], "best_epoch": 0, "best_valid": {}, "curve": "",
                "fitted_by": "nothing: untrained weights at the family's default size (serving benchmark)",
            }  # fmt: skip
        else:
            if "max_epochs" in {f.name for f in fields(FAMILIES[family].config)}:
                config = {"max_epochs": 1, **config}
            fitted = fit_family(family, training, config, side_inputs_of(family, training, seed), device=torch.device("cpu"))
            model, report = fitted.model, fitted.report.to_dict()
        models[family] = model.eval()
        reports[family] = report
        seconds[family] = time.perf_counter() - started
    if "ensemble" in families:
        started = time.perf_counter()
        weights = {f: 1.0 / len(ENSEMBLE_MEMBERS) for f in ENSEMBLE_MEMBERS}
        models["ensemble"] = Ensemble.from_members({f: models[f] for f in ENSEMBLE_MEMBERS}, weights).eval()
        reports["ensemble"] = {"epochs": [], "best_epoch": 0, "best_valid": {}, "curve": "",
                               "fitted_by": "equal weights over the seven families of issue 10 (serving benchmark)"}  # fmt: skip
        seconds["ensemble"] = time.perf_counter() - started
    return {f: models[f] for f in families}, reports, seconds


def log_models(models: dict, reports: dict, data, folder: Path, example_history: list[int]) -> dict[str, str]:
    """Log every model as ``tasks.tracking.log_model_run`` does; -> family -> model URI."""
    import mlflow
    import pandas as pd
    from flytekit.types.file import FlyteFile

    from models.registry import save_model
    from tasks.common import ModelEvaluation, TrainedModel
    from tasks.tracking import log_model_run, quiet_mlflow

    item_map = folder / "item_map.parquet"
    data.items[["item_idx", "item_id"]].to_parquet(item_map, index=False)
    uris = {}
    with quiet_mlflow():
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        # artifacts next to the temporary store, never in the working folder's ./mlruns
        mlflow.create_experiment("serving-benchmark", artifact_location=(folder / "artifacts").as_uri())
        mlflow.set_experiment("serving-benchmark")
        with mlflow.start_run(run_name="serving-benchmark") as parent:
            for family, model in models.items():
                weights = folder / f"{family}.pt"
                save_model(weights, family, model)
                report = folder / f"{family}-fit_report.json"
                report.write_text(json.dumps(reports[family]))
                predictions = folder / f"{family}-predictions.parquet"
                pd.DataFrame({"case_id": [0], "target_item": [1]}).to_parquet(predictions)
                trained = TrainedModel(family, FlyteFile(str(weights)), FlyteFile(str(report)), "cpu", 0.0)
                evaluation = ModelEvaluation(family, json.dumps({}), FlyteFile(str(predictions)), 0.0)
                logged = log_model_run(trained, evaluation, reports[family], item_map, parent.info.run_id,
                                       example_history=example_history)  # fmt: skip
                uris[family] = logged["model_uri"]
            uris["no-op"] = log_noop(folder)
    return uris


def log_noop(folder: Path) -> str:
    import mlflow

    from serving.pyfunc import SIGNATURE

    code = folder / "noop_model.py"
    code.write_text(NOOP_MODEL)
    with mlflow.start_run(run_name="no-op", nested=True):
        logged = mlflow.pyfunc.log_model(name="noop", python_model=str(code), signature=SIGNATURE,
                                         pip_requirements=["mlflow"])  # fmt: skip
    return logged.model_uri


def test_requests(data, n: int, seed: int = 0) -> list[dict]:
    """``n`` test histories in raw ids with their timestamps, in a fixed random order (cycled)."""
    test = data.stage("test")
    raw = np.zeros(data.n_items + 1, dtype=np.int64)
    raw[data.items["item_idx"].to_numpy(np.int64)] = data.items["item_id"].to_numpy(np.int64)
    order = np.random.default_rng(seed).permutation(len(test))
    out = []
    for i in range(n):
        case = test.iloc[int(order[i % len(order)])]
        history = np.asarray(case["history"], dtype=np.int64)
        out.append({"history": raw[history].tolist(), "history_timestamps": [int(t) for t in case["history_timestamps"]]})
    return out


# ----- measuring ------------------------------------------------------------------------------


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def wait_for_quiet(max_load: float, max_wait: float) -> dict:
    """Wait (up to ``max_wait`` s) for the 1-minute load average to drop under ``max_load``."""
    started = time.perf_counter()
    while load1() >= max_load and time.perf_counter() - started < max_wait:
        time.sleep(5)
    return {"load_before": load1(), "waited_s": round(time.perf_counter() - started, 1), "quiet": load1() < max_load}


def percentiles(ms: list[float]) -> dict:
    values = np.asarray(ms)
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p90_ms": round(float(np.percentile(values, 90)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "max_ms": round(float(values.max()), 3),
        "mean_ms": round(float(values.mean()), 3),
    }


HISTORY_BANDS = ((0, 50), (51, 200), (201, 500), (501, None))  # history lengths, ids sent per request


def band_name(low: int, high: int | None) -> str:
    return f"{low}-{high}" if high is not None else f"{low}+"


def by_history_length(ms: list[float], lengths: list[int]) -> dict:
    """``percentiles`` of the calls in each band of ``HISTORY_BANDS`` (ms[i] is a request with
    lengths[i] history ids): the work of MLflow's schema check, EASE and the graph models grows
    with the history, so the tail is the long histories'."""
    values, lengths = np.asarray(ms), np.asarray(lengths)
    out = {}
    for low, high in HISTORY_BANDS:
        inside = (lengths >= low) & (lengths <= (np.inf if high is None else high))
        if inside.any():
            out[band_name(low, high)] = percentiles(list(values[inside]))
    return out


def time_calls(call, inputs: list, warmup: int) -> list[float]:
    for x in inputs[:warmup]:
        call(x)
    gc.collect()
    out = []
    for x in inputs[warmup:]:
        started = time.perf_counter_ns()
        call(x)
        out.append((time.perf_counter_ns() - started) / 1e6)
    return out


def time_interleaved(calls: dict, inputs: list, warmup: int, block: int = 50) -> dict[str, list[float]]:
    """Each call timed on every input after ``warmup`` inputs, the calls taking turns in blocks of
    ``block`` requests, so that a burst of load from another job hits them alike."""
    for call in calls.values():
        for x in inputs[:warmup]:
            call(x)
    gc.collect()
    out = {name: [] for name in calls}
    for start in range(warmup, len(inputs), block):
        for name, call in calls.items():
            for x in inputs[start : start + block]:
                began = time.perf_counter_ns()
                call(x)
                out[name].append((time.perf_counter_ns() - began) / 1e6)
    return out


def in_process(uri: str, family: str, requests: list[dict], warmup: int, quiet: dict) -> dict:
    import mlflow
    import pandas as pd
    import torch

    model = mlflow.pyfunc.load_model(uri)
    columns = ["history", "history_timestamps"] if family in TIME_AWARE else ["history"]
    frames = [pd.DataFrame({c: [r[c]] for c in columns}) for r in requests]
    params = {"k": K}
    check = model.predict(frames[0], params=params)
    assert len(check) == 1 and len(check["items"][0]) == K, check
    python_model = model.unwrap_python_model()
    # the batches predict hands the model, to time the model's own score on them
    has_model = hasattr(python_model, "model")  # the no-op has none
    if has_model:  # what predict scores with: the traced single-row scorer where the family has one
        batches, score = [], python_model._score
        python_model._score = lambda *args: batches.append(args) or score(*args)
        for frame in frames:
            python_model.predict(None, frame, params)
        python_model._score = score
    threads = torch.get_num_threads()

    def score_alone(i: int) -> None:
        with torch.inference_mode():
            score(*batches[i])

    calls = {
        "pyfunc": lambda i: model.predict(frames[i], params=params),
        "python_model": lambda i: python_model.predict(None, frames[i], params),
        **({"score": score_alone} if has_model else {}),
    }
    waited = wait_for_quiet(**quiet)
    timed = time_interleaved(calls, list(range(len(frames))), warmup)
    return {
        **waited,
        "torch_threads": threads,
        "pyfunc_predict": percentiles(timed["pyfunc"]),
        "pyfunc_predict_by_history_length": by_history_length(timed["pyfunc"], [len(r["history"]) for r in requests[warmup:]]),
        "python_model_predict": percentiles(timed["python_model"]),
        "model_score": percentiles(timed["score"]) if has_model else None,
        "traced_single_row": bool(getattr(python_model, "single_row", None)),
        "load_after": load1(),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def over_http(uri: str, family: str, requests: list[dict], warmup: int, quiet: dict, server_env: dict) -> dict:
    """``mlflow models serve`` in a subprocess; one keep-alive connection; dataframe_records."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", uri,
               "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]  # fmt: skip
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(command, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.perf_counter()
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"mlflow models serve exited {server.returncode}: {log.read().decode()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.5)
            if time.perf_counter() - started > 180:
                raise RuntimeError("mlflow models serve did not answer /ping in 180 s")
        startup_s = time.perf_counter() - started
        columns = ["history", "history_timestamps"] if family in TIME_AWARE else ["history"]
        bodies = [json.dumps({"dataframe_records": [{c: r[c] for c in columns}], "params": {"k": K}}).encode() for r in requests]
        headers = {"Content-Type": "application/json"}
        connection = [http.client.HTTPConnection("127.0.0.1", port, timeout=30)]

        def post(body: bytes) -> bytes:
            connection[0].request("POST", "/invocations", body, headers)
            response = connection[0].getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:500]!r}")
            return payload

        answer = json.loads(post(bodies[0]))["predictions"][0]
        assert len(answer["items"]) == K, answer
        waited = wait_for_quiet(**quiet)
        # a fresh keep-alive connection: uvicorn closes one that idled 5 s while we waited
        connection[0].close()
        connection[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        ms = time_calls(post, bodies, warmup)
        connection[0].close()
        return {**waited, "server_startup_s": round(startup_s, 1), "http": percentiles(ms), "load_after": load1()}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# ----- report -----------------------------------------------------------------------------------


def comparison(before: dict, run: dict) -> list[str]:
    """p50 / p99 of an earlier run labelled "before..." next to this run's, per model."""
    lines = ["", f"Before and after, same benchmark ({before['label']}, {before['started_at']}):", "",
             "| model | in process before | after | HTTP before | after |", "|---|---|---|---|---|"]  # fmt: skip

    def cell(result: dict | None, where: str, key: str) -> str:
        part = (result or {}).get(where)
        if not part:
            return "–"
        p = part[key]
        return f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f} (load {part['load_before']})"

    for family, result in run["models"].items():
        old = before["models"].get(family)
        lines.append(f"| {family} | {cell(old, 'in_process', 'pyfunc_predict')} | {cell(result, 'in_process', 'pyfunc_predict')} "
                     f"| {cell(old, 'over_http', 'http')} | {cell(result, 'over_http', 'http')} |")  # fmt: skip
    for label, result in before.get("threads_comparison", {}).items():
        p = result["pyfunc_predict"]
        lines.append(f"| sasrec, {label} threads ({result['torch_threads']}), before | {p['p50_ms']:.2f} / {p['p99_ms']:.2f} "
                     f"(load {result['load_before']}) | | | |")  # fmt: skip
    lines.append("")
    lines.append("(p50 / p99 in ms, the 1-minute load average when the measurement began. Before, the pyfunc did not "
                 "set torch's threads: in process it ran on the benchmark's one thread, in the server on torch's "
                 "default of 2.)")  # fmt: skip
    return lines


def markdown(run: dict, earlier: list[dict] | None = None) -> str:
    setup = run["setup"]
    lines = [
        f"**Serving latency, {setup['dataset']}** ({setup['n_items']:,} items, sha256 `{setup['checksum'][:16]}…`, "
        f"standard split, top-{K} for one real test history per request; {run['machine']['cpus']} CPUs, "
        f"torch {run['machine']['torch']}, MLflow {run['machine']['mlflow']}, inference threads "
        f"{run['inference_threads']}; {run['started_at']})"
        + (f"; configs changed from the defaults: `{json.dumps(run['models_config'])}`" if run.get("models_config") else "")
        + (f"; built at the config validation chose on this dataset: {', '.join(run['validated_configs'])}"
           if run.get("validated_configs") else ""),
        "",
        f"Bars (issue 10): p99 < {IN_PROCESS_BAR_MS:g} ms in process, p99 < {HTTP_BAR_MS:g} ms over HTTP. "
        "Load = 1-minute load average before / after the measurement (the benchmark keeps one of the 2 cores busy "
        "itself; above 1, another job is running too).",
        "",
        "| model | in process p50 | p90 | p99 | < 2 ms | predict alone p50 / p99 | score alone p50 / p99 | load | HTTP p50 | p90 | p99 | < 10 ms | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family, result in run["models"].items():
        local, http_ = result.get("in_process"), result.get("over_http")
        row = [family]
        if local:
            p = local["pyfunc_predict"]
            raw, score = local["python_model_predict"], local.get("model_score")
            row += [f"{p['p50_ms']:.2f}", f"{p['p90_ms']:.2f}", f"{p['p99_ms']:.2f}", "yes" if p["p99_ms"] < IN_PROCESS_BAR_MS else "**no**",
                    f"{raw['p50_ms']:.2f} / {raw['p99_ms']:.2f}", f"{score['p50_ms']:.2f} / {score['p99_ms']:.2f}" if score else "–",
                    f"{local['load_before']} / {local['load_after']}"]  # fmt: skip
        else:
            row += ["–"] * 7
        if http_:
            h = http_["http"]
            row += [f"{h['p50_ms']:.2f}", f"{h['p90_ms']:.2f}", f"{h['p99_ms']:.2f}", "yes" if h["p99_ms"] < HTTP_BAR_MS else "**no**",
                    f"{http_['load_before']} / {http_['load_after']}"]  # fmt: skip
        else:
            row += ["–"] * 5
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"In process: {run['requests']} timed calls of `mlflow.pyfunc.load_model(uri).predict(DataFrame, params={{'k': {K}}})` "
        f"after {run['warmup']} warm-up calls; \"predict alone\" is `TopKRecommender.predict` without MLflow's schema "
        f"enforcement, \"score alone\" what predict scores the same batches with (the traced single-row scorer, "
        f"`serving.inference`, for SASRec, BERT4Rec, TAT-TV, GraphSAGE, GNN-TV and the ensemble's members, else the "
        f"model's `score`; the three take turns in blocks of 50 requests). HTTP: {run['http_requests']} `dataframe_records` requests over one keep-alive loopback connection to "
        "`mlflow models serve --env-manager local` (1 uvicorn worker), client time included. `no-op` is a pyfunc with the "
        "same signature that returns a constant: MLflow's own floor.",
    ]
    bands = [band_name(low, high) for low, high in HISTORY_BANDS]
    banded = {f: r["in_process"]["pyfunc_predict_by_history_length"] for f, r in run["models"].items()
              if (r.get("in_process") or {}).get("pyfunc_predict_by_history_length")}  # fmt: skip
    if banded:
        counts = {b: next(iter(banded.values())).get(b, {}).get("n", 0) for b in bands}
        lines += ["", "In process by history length (ids in the request): p50 / p99 in ms, the same calls as above:", "",
                  "| model | " + " | ".join(f"{b} ids ({counts[b]})" for b in bands) + " |", "|---|" + "---|" * len(bands)]  # fmt: skip
        for family, band in banded.items():
            lines.append(f"| {family} | " + " | ".join(
                f"{band[b]['p50_ms']:.2f} / {band[b]['p99_ms']:.2f}" if b in band else "–" for b in bands) + " |")  # fmt: skip
    if run.get("threads_comparison"):
        lines += ["", "SASRec in process with torch's default threads instead of 1:", ""]
        for label, result in run["threads_comparison"].items():
            p = result["pyfunc_predict"]
            lines.append(f"- {label} ({result['torch_threads']} threads): p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms "
                         f"(load {result['load_before']} / {result['load_after']})")  # fmt: skip
    before = [r for r in earlier or [] if r.get("label", "").startswith("before")]
    if before:
        lines += comparison(before[-1], run)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="/work/shared/data/ml-1m")
    parser.add_argument("--ratings-path", default="/work/shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz")
    parser.add_argument("--name", default="ml-1m-u2999")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="models to measure (default: every family of models.registry.FAMILIES, in its order)")
    parser.add_argument("--http-families", default=",".join(FAMILIES) + ",no-op",
                        help="models also measured over HTTP ('' for none)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--http-requests", type=int, default=500)
    parser.add_argument("--http-warmup", type=int, default=50)
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait for a 1-minute load average under this")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="seconds to wait for it at most")
    parser.add_argument("--no-threads-comparison", action="store_true")
    parser.add_argument("--machine", default=f"{os.cpu_count()}cpu")
    parser.add_argument("--label", default="", help="a note stored with the run")
    parser.add_argument("--models-config", default="{}",
                        help='JSON per-family config overrides, e.g. \'{"temporal_attention": {"max_len": 50}}\'')
    parser.add_argument("--validated-configs", action="store_true",
                        help="build each family with the config validation chose on this dataset where a sweep "
                             "is on file (sweep-<family>-<name>-cpu.json in the results folder, --out); "
                             "--models-config still wins")
    add_output_arguments(parser)
    args = parser.parse_args()
    out_dir, md_dir = output_dirs(args)

    import torch

    torch.set_num_threads(1)  # the setup (EASE's fit) on one core: the machine is shared
    import mlflow

    from serving.pyfunc import INFERENCE_THREADS_ENV, inference_threads

    families = [f for f in args.families.split(",") if f]
    models_config = json.loads(args.models_config)
    http_families = [f for f in args.http_families.split(",") if f]
    quiet = {"max_load": args.quiet_load, "max_wait": args.quiet_wait}
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="cinesync-serving-") as tmp:
        folder = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
        t0 = time.perf_counter()
        tables, data = load_split(args.path, args.ratings_path, args.name)
        print(f"data: {data.n_items:,} items, {data.n_users:,} users, {len(data.stage('test')):,} test cases "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
        validated = {}
        if args.validated_configs:
            validated = validated_configs(tables.name, tables.checksum, families, results=out_dir)
            print("validated configs: " + (", ".join(validated) or "none on file"), flush=True)
        overrides = {f: {**validated.get(f, {}), **models_config.get(f, {})} for f in {*validated, *models_config}}
        models, reports, build_seconds = build_models(data, families, overrides=overrides)
        print("built: " + ", ".join(f"{f} {s:.1f} s" for f, s in build_seconds.items()), flush=True)
        requests = test_requests(data, args.warmup + args.requests)
        example = data.items.sort_values("item_idx")["item_id"].head(3).astype(int).tolist()
        uris = log_models(models, reports, data, folder, example)
        del models
        gc.collect()
        run = {
            "started_at": started_at,
            "label": args.label,
            "command": command_line("latency.py"),
            "models_config": models_config,
            "validated_configs": validated,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__, "mlflow": mlflow.__version__},  # fmt: skip
            "inference_threads": inference_threads(),
            "setup": {"dataset": tables.name, "checksum": tables.checksum, "n_items": data.n_items, "n_users": data.n_users,
                      "n_test_cases": len(data.stage("test")), "build_seconds": build_seconds,
                      "weights": f"fit for at most one epoch; untrained at default size: {', '.join(SHORTCUTS)} (latency does not depend on training)"},  # fmt: skip
            "requests": args.requests,
            "warmup": args.warmup,
            "http_requests": args.http_requests,
            "quiet_load": args.quiet_load,
            "models": {},
        }
        for family in [*families, "no-op"]:
            result = run["models"].setdefault(family, {})
            result["in_process"] = in_process(uris[family], family, requests, args.warmup, quiet)
            p = result["in_process"]["pyfunc_predict"]
            print(f"{family:>20} in process: p50 {p['p50_ms']:.2f} ms  p99 {p['p99_ms']:.2f} ms  "
                  f"(load {result['in_process']['load_before']})", flush=True)  # fmt: skip
        if "sasrec" in uris and not args.no_threads_comparison:
            previous = os.environ.get(INFERENCE_THREADS_ENV)
            os.environ[INFERENCE_THREADS_ENV] = "0"  # leave torch's default
            torch.set_num_threads(os.cpu_count() or 1)
            try:
                run["threads_comparison"] = {
                    "torch default": in_process(uris["sasrec"], "sasrec", requests[: args.warmup + 300], args.warmup, quiet)
                }
            finally:
                if previous is None:
                    os.environ.pop(INFERENCE_THREADS_ENV, None)
                else:
                    os.environ[INFERENCE_THREADS_ENV] = previous
                torch.set_num_threads(1)
        server_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        server_env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        http_requests = requests[: args.http_warmup + args.http_requests]
        for family in http_families:
            if family not in uris:
                continue
            result = run["models"].setdefault(family, {})
            result["over_http"] = over_http(uris[family], family, http_requests, args.http_warmup, quiet, server_env)
            h = result["over_http"]["http"]
            print(f"{family:>20} over HTTP: p50 {h['p50_ms']:.2f} ms  p99 {h['p99_ms']:.2f} ms  "
                  f"(load {result['over_http']['load_before']})", flush=True)  # fmt: skip

    out = out_dir / f"serving-{args.machine}.json"
    previous_runs = json.loads(out.read_text())["runs"] if out.exists() else []
    out.write_text(json.dumps({"runs": [*previous_runs, run]}, indent=1) + "\n")
    text = markdown(run, previous_runs) + commands_note([run["command"]])
    (md_dir / f"serving-{args.machine}.md").write_text(text)
    print(text)
    print(f"wrote {out} and {md_dir / f'serving-{args.machine}.md'}")


if __name__ == "__main__":
    main()
