"""The plug-in families (issue 9): popularity, EASE, LightGCN, content k-NN and their ensemble.

    python benchmarks/plugin_families.py --path ../shared/data/ml-100k --name ml-100k \
        --split-mode standard --models popularity,ease,lightgcn,content_knn --ensemble
    python benchmarks/plugin_families.py --path ../shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz \
        --item-text-path ../shared/data/melu-ml1m-movie-extrainfos/movies_extrainfos.dat.gz \
        --split-mode pipeline --models popularity,ease,lightgcn,content_knn --ensemble \
        --models-config '{"lightgcn": {"max_epochs": 60}}'

Reads the data by path (never copied), validates it against the data contracts, splits it
(leave-one-out, ``--split-mode`` standard or pipeline, ``--seed``, default 0), computes the side inputs the
requested families' specs name (``models.registry.FAMILIES``) once — the interaction graph, and
the item text embeddings, which are cached on disk under ``--text-cache-dir`` keyed by the sha256
of the encoder name and the exact texts it would embed — trains every family on
``SplitData.training_data()`` (validation cases only) and scores the test cases by full ranking,
per slice. With ``--ensemble`` the members' standardised scores on the validation and test cases
(top 100 each) go to ``fit_blend``, which reads the validation rows only; the ensemble is scored
like the members, and a paired bootstrap over the test cases compares it with the member that
was best on *validation* NDCG@10.

Writes ``plugin-<name>-<split>-<device>.json`` to the results folder outside the checkout
(``benchmarks.results_dir()``) and a Markdown table to ``benchmarks/results/``. Running
the same command again adds a row to the JSON file's ``runs`` (wall times, cache hit or miss), so the
first-run text encoding and the cached load are both on record.
"""

from __future__ import annotations

import os

# One thread everywhere (the machine is shared): set before torch / tokenizers load.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default encoder is packaged: never download

import argparse  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, fields, replace  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

STARTED = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

from benchmarks import add_output_arguments, output_dirs  # noqa: E402
from benchmarks.baselines import checkpoint_folder  # noqa: E402
from benchmarks.baselines import hardware as baseline_hardware  # noqa: E402
from benchmarks.side_by_side import paired_bootstrap  # noqa: E402
from data_contracts.suites import ContractConfig  # noqa: E402
from data_contracts.validate import validate_tables  # noqa: E402
from models.content.item_text import (  # noqa: E402
    DEFAULT_ENCODER,
    TEXT_COLUMNS,
    ItemTextEmbeddings,
    encode_item_text,
    item_text,
)
from models.device import pick_device, seed_everything  # noqa: E402
from models.ensemble import Ensemble, fit_blend  # noqa: E402
from models.graph.interaction_graph import build_interaction_graph  # noqa: E402
from models.member_scores import member_scores  # noqa: E402
from models.data import SLICES  # noqa: E402
from models.interface import training_config  # noqa: E402
from models.metrics import evaluate, ndcg_gains, per_user_slice_means  # noqa: E402
from models.registry import FAMILIES, build_model, sized_to_side_inputs  # noqa: E402
from models.split import MODES, cold_selection_cases, leave_one_out_split  # noqa: E402

DEFAULT_TEXT_CACHE = Path("~/.cache/cinesync/text")
# Written out so the JSON says what ran. LightGCN: the paper's settings (dim 64, 3 layers, Adam
# lr 1e-3, batch 2048, L2 1e-4); content k-NN and EASE: their defaults (decay / λ on validation).
BENCHMARK_OVERRIDES = {
    "lightgcn": {"dim": 64, "n_layers": 3, "lr": 1e-3, "batch_size": 2048, "reg": 1e-4,
                 "patience": 10, "max_epochs": 200},
}  # fmt: skip
ENSEMBLE_TOP_K = 100
BOOTSTRAP = {"n_resamples": 2000, "seed": 0}
METRICS = ("hr@10", "ndcg@10", "mrr", "coverage@10", "n_cases")
ITEM_TEXT_PARTS = ("title", "release_date", *TEXT_COLUMNS)


def _r(x: float, digits: int = 2) -> float:
    return round(float(x), digits)


# ----- data -----------------------------------------------------------------------------------


def load_tables(args: argparse.Namespace):
    """Read (MovieLens by path, or the synthetic source) and validate -> Tables."""
    if args.source == "synthetic":
        from data_contracts.sources import read_source

        tables = read_source("synthetic", None, synthetic_users=args.synthetic_users, seed=args.seed, progress=False)
    else:
        from data_contracts.sources.movielens import read_movielens

        tables = read_movielens(args.path, ratings_path=args.ratings_path, item_text_path=args.item_text_path,
                                name=args.name, progress=False)  # fmt: skip
    validate_tables(tables.interactions, tables.items, tables.users, ContractConfig(), dataset=args.name)
    return tables


# ----- side inputs ----------------------------------------------------------------------------


def text_cache_key(texts: list[str], encoder: str) -> str:
    """sha256 of the encoder name and the exact texts (item_idx order) it embeds."""
    digest = hashlib.sha256()
    digest.update(f"encoder:{encoder}\nn_items:{len(texts)}\n".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def text_parts_present(items) -> dict[str, int]:
    """How many catalogue items have each item-text part non-empty."""
    out = {}
    for name in ITEM_TEXT_PARTS:
        if name in items.columns:
            values = items[name].astype("string").fillna("").str.strip()
            out[name] = int((values != "").sum())
        else:
            out[name] = 0
    return out


def item_text_embeddings(items, encoder: str, cache_dir: Path) -> tuple[ItemTextEmbeddings, dict]:
    """The catalogue's text embeddings, from the disk cache when the same texts were embedded by
    the same encoder before, else encoded now and cached. -> (embeddings, record for the JSON)."""
    started = tick = time.perf_counter()
    texts = item_text(items)
    key = text_cache_key(texts, encoder)
    key_seconds = time.perf_counter() - tick
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(encoder).name or encoder)[:60]
    path = cache_dir.expanduser() / f"{slug}-{key[:32]}.pt"
    record = {
        "encoder": encoder,
        "cache_key_sha256": key,
        "cache_path": str(path),
        "text_parts_present": text_parts_present(items),
        "example_text": texts[0][:300] if texts else "",
        "key_seconds": _r(key_seconds, 3),
    }
    if path.exists():
        tick = time.perf_counter()
        embeddings = ItemTextEmbeddings.load(path)
        load_seconds = time.perf_counter() - tick
        if embeddings.n_items != len(texts):
            raise SystemExit(f"{path}: {embeddings.n_items} items cached, the catalogue has {len(texts)}")
        record |= {"cache_hit": True, "load_seconds": _r(load_seconds, 3), "encode_seconds": None,
                   "first_run_encode_seconds": _r(embeddings.seconds, 1)}  # fmt: skip
    else:
        embeddings = encode_item_text(items, encoder=encoder, device="cpu", progress=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        embeddings.save(partial)
        partial.replace(path)
        record |= {"cache_hit": False, "load_seconds": None, "encode_seconds": _r(embeddings.seconds, 1),
                   "first_run_encode_seconds": _r(embeddings.seconds, 1)}  # fmt: skip
    record |= {
        "seconds_this_run": _r(time.perf_counter() - started, 3),  # texts, key, encode or load, save
        "n_items": embeddings.n_items,
        "dim": embeddings.dim,
        "n_without_text": embeddings.n_without_text,
    }
    return embeddings, record


def side_inputs_for(families: list[str], data, args: argparse.Namespace) -> tuple[dict, dict]:
    """Every side input a requested family's spec names, computed once -> (inputs, records)."""
    needed = [s for s in ("interaction_graph", "item_text_embeddings") if any(s in FAMILIES[f].side_inputs for f in families)]
    inputs, records = {}, {}
    if "interaction_graph" in needed:
        graph = build_interaction_graph(data.train, data.n_users, data.n_items)
        inputs["interaction_graph"] = graph
        records["interaction_graph"] = {"seconds": _r(graph.seconds, 3), "n_pairs": graph.n_pairs,
                                        "num_nodes": graph.num_nodes}  # fmt: skip
        print(f"interaction graph: {graph.n_pairs:,} pairs, {graph.num_nodes:,} nodes, {graph.seconds:.2f}s", flush=True)
    if "item_text_embeddings" in needed:
        embeddings, record = item_text_embeddings(data.items, args.encoder, Path(args.text_cache_dir))
        inputs["item_text_embeddings"] = embeddings
        records["item_text_embeddings"] = record
        how = f"loaded from cache in {record['load_seconds']}s" if record["cache_hit"] else f"encoded in {record['encode_seconds']}s"
        print(f"item text embeddings: {embeddings.n_items:,} x {embeddings.dim}, {how}", flush=True)
    return inputs, records


# ----- training and scoring -------------------------------------------------------------------


def slice_table(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {name: {k: float(m[k]) for k in METRICS if k in m} for name, m in metrics.items()}


def ranks_by_user(per_case, data) -> dict[str, int]:
    raw_user = dict(zip(data.users["user_idx"].tolist(), data.users["user_id"].tolist()))
    return {str(raw_user[u]): int(r) for u, r in zip(per_case["user_idx"], per_case["rank"])}


def slices_by_user(per_case, data) -> dict[str, str]:
    raw_user = dict(zip(data.users["user_idx"].tolist(), data.users["user_id"].tolist()))
    return {str(raw_user[u]): str(s) for u, s in zip(per_case["user_idx"], per_case["slice"])}


def against_reference(rows: list[dict], reference: str) -> dict[str, dict[str, dict]]:
    """model -> slice -> paired bootstrap of test NDCG@10 (model - ``reference``) over that
    slice's test cases (each test user is one case in a leave-one-out split)."""
    ref = next((r for r in rows if r["model"] == reference), None)
    if ref is None:
        raise SystemExit(f"--reference {reference!r} is not among --models")
    out = {}
    for row in rows:
        if row["model"] == reference:
            continue
        out[row["model"]] = {}
        for name in ["all", *sorted(set(ref["test_slices_by_user"].values()))]:
            users = [u for u, s in ref["test_slices_by_user"].items() if name == "all" or s == name]
            mine, theirs = ({u: r["test_ranks_by_user"][u] for u in users} for r in (row, ref))
            gain = lambda ranks: float(ndcg_gains(list(ranks.values())).mean())  # noqa: E731
            out[row["model"]][name] = {"ndcg@10_diff": gain(mine) - gain(theirs), **paired_bootstrap(mine, theirs, **BOOTSTRAP)}
    return out


def _selection_scores(model, data, selection_cases, device) -> dict[str, dict[str, float]]:
    """HR@10 and NDCG@10 per slice on the validation cases and the held-out slices' ones, scored
    like the test cases; each user counted once per slice (a new user's several targets averaged:
    ``per_user_slice_means``)."""
    cases = pd.concat([data.stage("valid"), selection_cases], ignore_index=True)
    per_case = evaluate(model.score, cases, data.n_items, device=device, max_len=model.history_length).per_case
    return per_user_slice_means(per_case)


# the score-time settings chosen on validation with the held-out slices, and their CLI options
SCORE_TIME_OPTIONS = {"new_item_offset": "--new-item-offsets", "short_history_popularity": "--short-history-popularity"}


def choose_score_time_settings(model, data, selection_cases, grid: dict[str, list[float]], device) -> list[dict]:
    """Score ``model`` with every combination of the ``grid``'s score-time settings (the fields
    its config has) on the validation cases plus the held-out slices' ones (``selection_cases``),
    keep the best by NDCG@10 over all of them (the first on a tie), and return every trial: its
    settings and its validation and test NDCG@10 per slice. The test numbers are recorded for
    every trial, as a sweep records them; the choice reads validation only."""
    grid = {name: values for name, values in grid.items() if values and hasattr(model.config, name)}
    if not grid:
        return []
    if selection_cases is None:
        options = " and ".join(SCORE_TIME_OPTIONS[name] for name in grid)
        raise SystemExit(f"{options} need the held-out slices' validation cases: use --split-mode pipeline")
    trials = []
    for values in itertools.product(*grid.values()):
        settings = {name: float(value) for name, value in zip(grid, values)}
        model.config = replace(model.config, **settings)
        valid = _selection_scores(model, data, selection_cases, device)
        test = evaluate(model.score, data.stage("test"), data.n_items, device=device, max_len=model.history_length).metrics
        trials.append({
            **settings,
            "valid_ndcg@10": {k: float(m["ndcg@10"]) for k, m in valid.items() if k in ("all", *SLICES)},
            "test_ndcg@10": {k: float(m["ndcg@10"]) for k, m in test.items() if k in ("all", *SLICES)},
        })
    best = max(range(len(trials)), key=lambda i: (trials[i]["valid_ndcg@10"]["all"], -i))
    trials[best]["chosen"] = True
    model.config = replace(model.config, **{name: trials[best][name] for name in grid})
    return trials


def chosen_settings(family: str, model) -> dict:
    """What the family chose on validation (beyond the epoch)."""
    if hasattr(model.config, "new_item_offset"):
        return {name: float(getattr(model.config, name)) for name in SCORE_TIME_OPTIONS if hasattr(model.config, name)}
    if family == "ease":
        return {"l2": float(model.l2)}
    if family == "content_knn":
        return {"recency_decay": round(float(model.recency_decay), 6)}
    return {}


def train_and_score(
    family: str, data, training, overrides: dict, side_inputs: dict, device, checkpoints_key: str | None = None,
    selection_cases=None, score_time_grid: dict[str, list[float]] | None = None,
) -> tuple[dict, object]:
    """Train one family (seeded), score the test cases per slice -> (results row, model).

    With ``checkpoints_key`` (the dataset checksum and split) the training checkpoints every
    epoch outside the checkout and a stopped run resumes (``baselines.checkpoint_folder``).
    With ``selection_cases`` (``models.split.cold_selection_cases``) the trained model also scores
    the validation cases and those, like the test cases (``score``, the whole catalogue): the
    validation number per slice that configurations are chosen by. With ``score_time_grid`` too
    (``new_item_offset``, ``short_history_popularity``: the fields the family has), each
    combination is scored there and the one with the best validation NDCG@10 over all those
    cases is kept; every trial's test numbers are recorded (``choose_score_time_settings``)."""
    seed_everything(0)
    model = build_model(family, data.n_items, overrides, n_users=data.n_users).to(device)
    mine = {name: side_inputs[name] for name in FAMILIES[family].side_inputs}
    checkpoints = None
    if checkpoints_key is not None:
        # score-time settings (new_item_offset, ...) do not change training: not part of the key
        checkpoints = checkpoint_folder(family, checkpoints_key, {**training_config(model.config), "device": device.type})
        checkpoints.mkdir(parents=True, exist_ok=True)
        print(f"  {family}: checkpoints in {checkpoints}", flush=True)

    def on_epoch(log) -> None:
        print(f"  {family} epoch {log.epoch}: loss {log.train_loss:.4f} valid NDCG@10 "
              f"{log.valid.get('ndcg@10', float('nan')):.4f} ({log.seconds:.1f}s)", flush=True)  # fmt: skip

    tick = time.perf_counter()
    report = model.fit(training, device, side_inputs=mine, progress=False, on_epoch=on_epoch, checkpoint_dir=checkpoints)
    train_seconds = time.perf_counter() - tick
    model.eval()
    score_time_trials = choose_score_time_settings(model, data, selection_cases, score_time_grid or {}, device) or None
    tick = time.perf_counter()
    result = evaluate(model.score, data.stage("test"), data.n_items, device=device, max_len=model.history_length)
    eval_seconds = time.perf_counter() - tick
    selection = None
    if selection_cases is not None:
        selection = _selection_scores(model, data, selection_cases, device)
    elapsed, curve = 0.0, []  # [epoch, seconds since training started (end of that epoch), valid NDCG@10]
    for e in report.epochs:
        elapsed += e.seconds
        curve.append([e.epoch, _r(elapsed), e.valid.get("ndcg@10")])
    max_epochs = getattr(model.config, "max_epochs", None)
    capped = max_epochs is not None and len(report.epochs) >= max_epochs and not report.stopped_early
    m = result.metrics["all"]
    print(f"{family}: test NDCG@10 {m['ndcg@10']:.4f} HR@10 {m['hr@10']:.4f} MRR {m['mrr']:.4f} "
          f"(best epoch {report.best_epoch} of {len(report.epochs)}, {train_seconds:.0f}s)", flush=True)  # fmt: skip
    row = {
        "model": family,
        "side_inputs": list(FAMILIES[family].side_inputs),
        "test": slice_table(result.metrics),
        "best_valid_ndcg@10": report.best_valid.get("ndcg@10"),
        "best_valid": report.best_valid,
        "selection_valid": selection,
        "score_time_trials": score_time_trials,
        "best_epoch": report.best_epoch,
        "epochs_run": len(report.epochs),
        "stopped_early": report.stopped_early,
        "capped_at_max_epochs": capped,
        "epochs_after_best": len(report.epochs) - 1 - report.best_epoch,
        "chosen": chosen_settings(family, model),
        "train_seconds": _r(train_seconds, 1),
        "seconds_per_epoch": _r(elapsed / max(len(curve), 1), 2),
        "test_eval_seconds": _r(eval_seconds, 1),
        "valid_curve": curve,
        "test_ranks_by_user": ranks_by_user(result.per_case, data),
        "test_slices_by_user": slices_by_user(result.per_case, data),
        "config": asdict(model.config),
    }
    return row, model


def ensemble_of(models: dict, rows: list[dict], data, device) -> dict:
    """Blend weights on validation rows, the ensemble scored on the test cases, and the paired
    bootstrap of ensemble minus the best-on-validation member (test NDCG@10)."""
    cases = data.cases[data.cases["stage"].isin(["valid", "test"])].reset_index(drop=True)
    tick = time.perf_counter()
    table = member_scores(models, cases, data.n_items, top_k=ENSEMBLE_TOP_K, device=device)
    scores_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    blend = fit_blend(table, list(models))
    fit_seconds = time.perf_counter() - tick
    ensemble = Ensemble.from_members(models, blend.weights)
    tick = time.perf_counter()
    test = evaluate(ensemble.score, data.stage("test"), data.n_items, device=device, max_len=ensemble.history_length)
    eval_seconds = time.perf_counter() - tick
    valid = evaluate(ensemble.score, data.stage("valid"), data.n_items, device=device, max_len=ensemble.history_length)
    ranks = ranks_by_user(test.per_case, data)
    best = max(rows, key=lambda r: r["best_valid_ndcg@10"] if r["best_valid_ndcg@10"] is not None else -1.0)
    diff = test.metrics["all"]["ndcg@10"] - best["test"]["all"]["ndcg@10"]
    boot = paired_bootstrap(ranks, best["test_ranks_by_user"], **BOOTSTRAP)
    per_member = {r["model"]: paired_bootstrap(ranks, r["test_ranks_by_user"], **BOOTSTRAP)["ndcg@10_diff_ci95"] for r in rows}
    stages = table.drop_duplicates("case_id")["stage"].value_counts().to_dict()
    hit = table.drop_duplicates("case_id").groupby("stage")["target_in_candidates"].mean().to_dict()
    print(f"ensemble: weights {({k: round(v, 3) for k, v in blend.weights.items()})}, test NDCG@10 "
          f"{test.metrics['all']['ndcg@10']:.4f}, minus {best['model']} {diff:+.4f} "
          f"[{boot['ndcg@10_diff_ci95'][0]:+.4f}, {boot['ndcg@10_diff_ci95'][1]:+.4f}]", flush=True)  # fmt: skip
    return {
        "model": "ensemble",
        "members": list(models),
        "weights": blend.weights,
        "top_k": ENSEMBLE_TOP_K,
        "member_table": {"rows": len(table), "cases_per_stage": {str(k): int(v) for k, v in stages.items()},
                         "target_in_candidates_share": {str(k): float(v) for k, v in hit.items()}},  # fmt: skip
        "blend_valid_ndcg@10_on_candidates": blend.blend,
        "member_alone_valid_ndcg@10_on_candidates": blend.member_alone,
        "blend_search": blend.history,
        "valid_ndcg@10": float(valid.metrics["all"]["ndcg@10"]),
        "test": slice_table(test.metrics),
        "best_member_by_valid": best["model"],
        "test_ndcg@10_minus_best_member": diff,
        "bootstrap_vs_best_member": boot,
        "bootstrap_diff_ci95_vs_each_member": per_member,
        "member_scores_seconds": _r(scores_seconds, 1),
        "fit_blend_seconds": _r(fit_seconds, 1),
        "test_eval_seconds": _r(eval_seconds, 1),
        "history_length": ensemble.history_length,
        "test_ranks_by_user": ranks,
    }


# ----- the run --------------------------------------------------------------------------------


def hardware(device: torch.device) -> dict:
    """``baselines.hardware`` plus the load average when the run began (the machine is shared)."""
    return {**baseline_hardware(device), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def overrides_for(families: list[str], given: dict, threads: int) -> dict[str, dict]:
    """Benchmark defaults <- --models-config, plus num_threads where the family has the field."""
    out = {}
    for family in families:
        values = {**BENCHMARK_OVERRIDES.get(family, {}), **given.get(family, {})}
        if "num_threads" in {f.name for f in fields(FAMILIES[family].config)}:
            values.setdefault("num_threads", threads)
        out[family] = values
    return out


def run(args: argparse.Namespace) -> dict:
    families = [f.strip() for f in args.models.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES or not FAMILIES[f].trainable]
    if unknown:
        raise SystemExit(f"unknown or untrainable families {unknown}")
    overrides = overrides_for(families, json.loads(args.models_config), args.threads)
    device = pick_device(args.device)

    tick = time.perf_counter()
    tables = load_tables(args)
    fractions = {} if args.cold_user_fraction is None else {"cold_user_fraction": args.cold_user_fraction}
    data, summary = leave_one_out_split(tables.interactions, tables.items, tables.users, mode=args.split_mode, seed=args.seed, **fractions)
    prep_seconds = time.perf_counter() - tick
    test_cases = data.stage("test")
    print(f"{args.name} ({args.split_mode}): {data.n_users:,} users, {data.n_items:,} items, "
          f"{len(data.train):,} training rows, {len(test_cases):,} test cases, prep {prep_seconds:.1f}s", flush=True)  # fmt: skip

    side_inputs, side_records = side_inputs_for(families, data, args)
    overrides = {family: sized_to_side_inputs(family, overrides[family], side_inputs) for family in families}

    training = data.training_data()
    # validation cases of the held-out slices (pipeline split): what new users and items are chosen by
    selection_cases = (
        cold_selection_cases(tables.interactions, summary, items=tables.items, cold_user_targets=args.cold_user_validation_targets)
        if args.split_mode == "pipeline" else None
    )  # fmt: skip
    score_time_grid = {name: json.loads(getattr(args, option[2:].replace("-", "_")) or "[]")
                       for name, option in SCORE_TIME_OPTIONS.items()}  # fmt: skip
    # another held-out share is another split: its checkpoints apart
    checkpoints_key = f"{tables.checksum}-{args.split_mode}" + (f"-cold-users-{args.cold_user_fraction:g}" if fractions else "")
    checkpoints_key += f"-seed-{args.seed}" if args.seed else ""  # seed 0 keeps the keys it always had
    rows, models = [], {}
    for family in families:
        row, model = train_and_score(
            family, data, training, overrides[family], side_inputs, device, checkpoints_key,
            selection_cases, score_time_grid,
        )
        rows.append(row)
        models[family] = model
    ensemble = ensemble_of(models, rows, data, device) if args.ensemble else None
    versus = against_reference(rows, args.reference) if args.reference else None

    split = {k: v for k, v in asdict(summary).items() if k not in ("cold_user_ids", "cold_item_ids")}
    return {
        "dataset": args.name,
        "source": args.source,
        "path": args.path,
        "ratings_path": args.ratings_path,
        "item_text_path": args.item_text_path,
        "dataset_sha256": tables.checksum,
        "split": {**split, "mode": args.split_mode, "seed": args.seed, **fractions},
        "n_test_cases": len(test_cases),
        "test_cases_per_slice": {str(k): int(v) for k, v in test_cases["slice"].value_counts().items()},
        "n_valid_cases": len(data.stage("valid")),
        "cold_user_validation_targets": args.cold_user_validation_targets,
        "selection_cases_per_slice": (
            None if selection_cases is None else {str(k): int(v) for k, v in selection_cases["slice"].value_counts().items()}
        ),
        "hardware": hardware(device),
        "prep_seconds": _r(prep_seconds, 1),
        "side_inputs": side_records,
        "results": rows,
        "ensemble": ensemble,
        "reference": args.reference,
        "versus_reference": versus,
    }


def run_entry(result: dict, wall_seconds: float) -> dict:
    """One line of the ``runs`` history: when, how long, cache hit, and the headline numbers."""
    text = result["side_inputs"].get("item_text_embeddings")
    graph = result["side_inputs"].get("interaction_graph")
    rows = result["results"] + ([result["ensemble"]] if result["ensemble"] else [])
    return {
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": _r(wall_seconds, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "prep_seconds": result["prep_seconds"],
        "interaction_graph_seconds": graph["seconds"] if graph else None,
        "text_cache_hit": text["cache_hit"] if text else None,
        "text_seconds_this_run": text["seconds_this_run"] if text else None,
        "train_seconds": {r["model"]: r["train_seconds"] for r in result["results"]},
        "test_ndcg@10": {r["model"]: r["test"]["all"]["ndcg@10"] for r in rows},
    }


def with_history(result: dict, previous: dict | None, wall_seconds: float) -> dict:
    """``result`` plus ``runs`` (earlier runs of the same command on the same data kept) and the
    text-embedding timings of both a first run and a cached run when the history has them."""
    runs = []
    if previous and previous.get("dataset_sha256") == result["dataset_sha256"] \
            and previous.get("split", {}).get("mode") == result["split"]["mode"]:  # fmt: skip
        runs = list(previous.get("runs", []))
    runs.append(run_entry(result, wall_seconds))
    result["wall_seconds"] = _r(wall_seconds, 1)
    result["runs"] = runs
    text = result["side_inputs"].get("item_text_embeddings")
    if text is not None:
        hits = [r["text_seconds_this_run"] for r in runs if r["text_cache_hit"]]
        misses = [r["text_seconds_this_run"] for r in runs if r["text_cache_hit"] is False]
        text["measured"] = {
            "first_run_seconds": misses[-1] if misses else text["first_run_encode_seconds"],
            "first_run_measured_by_this_file": bool(misses),
            "cached_run_seconds": hits[-1] if hits else None,
        }
    return result


# ----- Markdown -------------------------------------------------------------------------------


def _f(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    hw = result["hardware"]
    rows = result["results"]
    ens = result["ensemble"]
    split = result["split"]
    slices = ", ".join(f"{v:,} {k}" for k, v in result["test_cases_per_slice"].items())
    lines = [
        f"**{result['dataset']}** (sha256 `{result['dataset_sha256'][:16]}…`, {split['mode']} split, seed "
        f"{split['seed']}; {split['n_users']:,} users, {split['n_items']:,} items, {split['train_rows']:,} training rows; "
        f"{result['n_test_cases']:,} test cases: {slices}; {hw['device']}"
        + (f" {hw['gpu']}" if hw["gpu"] else f", {hw['cpu_threads']} thread(s) on {hw['cpus']} cores")
        + f"; wall {result['wall_seconds']:,.0f} s)",
        "",
        "| model | HR@10 | NDCG@10 | MRR | coverage@10 | best valid NDCG@10 | epochs (best) | chosen | train s | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["test"]["all"]
        chosen = ", ".join(f"{k} {v:g}" for k, v in r["chosen"].items())
        capped = " capped" if r["capped_at_max_epochs"] else ""
        lines.append(
            f"| {r['model']} | {_f(t['hr@10'])} | {_f(t['ndcg@10'])} | {_f(t['mrr'])} | {_f(t['coverage@10'], 3)} | "
            f"{_f(r['best_valid_ndcg@10'])} | {r['epochs_run']} ({r['best_epoch']}){capped} | {chosen} | "
            f"{r['train_seconds']:,} | {r['seconds_per_epoch']} |"
        )
    if ens:
        t = ens["test"]["all"]
        lines.append(
            f"| ensemble | {_f(t['hr@10'])} | {_f(t['ndcg@10'])} | {_f(t['mrr'])} | {_f(t['coverage@10'], 3)} | "
            f"{_f(ens['valid_ndcg@10'])} | | weights fitted on validation | {ens['member_scores_seconds'] + ens['fit_blend_seconds']:.1f} | |"
        )
    every = rows + ([ens] if ens else [])
    names = [s for s in rows[0]["test"] if s != "all"]
    lines += ["", "Per slice (test; HR@10 / NDCG@10 / MRR / coverage@10, n cases):", "",
              "| slice | n | " + " | ".join(r["model"] for r in every) + " |",
              "|---|---|" + "---|" * len(every)]  # fmt: skip
    for name in ["all", *names]:
        n = int(rows[0]["test"][name]["n_cases"])
        cells = []
        for r in every:
            m = r["test"].get(name)
            cells.append("" if m is None else f"{m['hr@10']:.4f} / **{m['ndcg@10']:.4f}** / {m['mrr']:.4f} / {m['coverage@10']:.3f}")
        lines.append(f"| {name} | {n:,} | " + " | ".join(cells) + " |")
    if any(r.get("selection_valid") for r in rows):
        names = [s for s in SLICES if any(s in (r.get("selection_valid") or {}) for r in rows)]
        targets = result.get("cold_user_validation_targets", 1)
        cold_user_targets = {1: "each cold user's second-to-last interaction",
                             None: "every interaction of each cold user after the shown ones but the last"}.get(
            targets, f"each cold user's {targets} latest interactions before the last")
        first = rows[0]["selection_valid"]

        def header(n: str) -> str:
            users, cases = first[n].get("n_users", first[n]["n_cases"]), first[n]["n_cases"]
            return f"{n} ({cases:,.0f})" if users == cases else f"{n} ({users:,.0f} users, {cases:,.0f} cases)"

        lines += ["", "Validation NDCG@10 per slice, the held-out slices included (`models.split.cold_selection_cases`: "
                  f"{cold_user_targets} from the same first interactions, and the validation targets the cold-item "
                  "holdout removed; each user counted once, a user's several targets averaged), every item ranked as "
                  "in test — what settings that matter only for new users or items are chosen by:", "",
                  "| model | all | " + " | ".join(header(n) for n in names) + " |",
                  "|---|---|" + "---|" * len(names)]  # fmt: skip
        for r in rows:
            v = r.get("selection_valid")
            if v:
                lines.append(f"| {r['model']} | {_f(v['all']['ndcg@10'])} | "
                             + " | ".join(_f(v[n]['ndcg@10']) if n in v else "" for n in names) + " |")
    for r in rows:
        trials = r.get("score_time_trials")
        if not trials:
            continue
        names = [name for name in SCORE_TIME_OPTIONS if name in trials[0]]
        lines += ["", f"{r['model']}: score-time settings chosen on validation NDCG@10 over all the validation cases "
                  "above (`new_item_offset`: added to the score of every item without training edges; "
                  "`short_history_popularity`: weight of log(1 + training users) added for histories of at most "
                  "`short_history_items` items); test recorded for every trial:", "",
                  "| " + " | ".join(names) + " | valid all | valid warm | valid cold users | valid cold items | test all | "
                  "test warm | test cold users | test cold items |", "|" + "---|" * (len(names) + 8)]  # fmt: skip
        for t in trials:
            v, te = t["valid_ndcg@10"], t["test_ndcg@10"]
            mark = " **(chosen)**" if t.get("chosen") else ""
            lines.append("| " + " | ".join(f"{t[n]:g}" for n in names) + f"{mark} | " + " | ".join(
                _f(d.get(k)) if d.get(k) is not None else "" for d in (v, te) for k in ("all", *SLICES)) + " |")
    if ens:
        b = ens["bootstrap_vs_best_member"]
        lo, hi = b["ndcg@10_diff_ci95"]
        weights = ", ".join(f"{m} {w:.2f}" for m, w in ens["weights"].items())
        lines += [
            "",
            f"- ensemble weights (fit_blend on {ens['member_table']['cases_per_stage'].get('valid', 0):,} validation cases, "
            f"top-{ens['top_k']} candidates per member): {weights}; on the candidates: blend "
            f"{ens['blend_valid_ndcg@10_on_candidates']:.4f} vs best member alone "
            f"{max(ens['member_alone_valid_ndcg@10_on_candidates'].values()):.4f}",
            f"- ensemble − {ens['best_member_by_valid']} (the best member by validation NDCG@10) on test NDCG@10: "
            f"{ens['test_ndcg@10_minus_best_member']:+.4f}, paired bootstrap over the {b['n_cases']:,} test cases "
            f"({b['n_resamples']} resamples, seed {BOOTSTRAP['seed']}): 95% interval [{lo:+.4f}, {hi:+.4f}], "
            f"ratio [{b['ndcg@10_ratio_ci95'][0]:.2f}, {b['ndcg@10_ratio_ci95'][1]:.2f}]",
        ]
    if result.get("versus_reference"):
        ref = result["reference"]
        compared = list(next(iter(result["versus_reference"].values())))  # "all" and the case slices
        lines += ["", f"Test NDCG@10 minus {ref}'s, per slice: difference [95% paired-bootstrap interval over the slice's "
                  f"test cases, {BOOTSTRAP['n_resamples']} resamples]; **bold** where the interval is above 0:", "",
                  "| model | " + " | ".join(compared) + " |", "|---|" + "---|" * len(compared)]  # fmt: skip
        for model, per_slice in result["versus_reference"].items():
            cells = []
            for name in compared:
                b = per_slice.get(name)
                if b is None:
                    cells.append("")
                    continue
                lo, hi = b["ndcg@10_diff_ci95"]
                text = f"{b['ndcg@10_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                cells.append(f"**{text}**" if lo > 0 else text)
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    side = result["side_inputs"]
    lines.append("")
    for r in rows:
        cfg = r["config"]
        if "max_epochs" in cfg and "patience" in cfg:
            how = (f"stopped by patience {cfg['patience']} after epoch {r['epochs_run'] - 1}" if r["stopped_early"]
                   else f"stopped at the max_epochs cap {cfg['max_epochs']} ({r['epochs_after_best']} epochs after its best: "
                   + ("still improving" if r["epochs_after_best"] == 0 else "plateaued or past its peak") + ")")
            lines.append(f"- {r['model']}: max_epochs {cfg['max_epochs']}, {how}; best validation NDCG@10 "
                         f"{_f(r['best_valid_ndcg@10'])} at epoch {r['best_epoch']}")
    if "interaction_graph" in side:
        g = side["interaction_graph"]
        lines.append(f"- interaction graph: {g['n_pairs']:,} user–item pairs, built in {g['seconds']:.2f} s")
    if "item_text_embeddings" in side:
        t = side["item_text_embeddings"]
        parts = ", ".join(k for k, v in t["text_parts_present"].items() if v)
        measured = t.get("measured", {})
        cached = measured.get("cached_run_seconds")
        lines.append(
            f"- item text embeddings: {t['n_items']:,} items × {t['dim']} ({t['encoder']}), text from {parts}; "
            f"{t['n_without_text']:,} items with nothing beyond title/year; first run (encode) "
            f"{measured.get('first_run_seconds', t['first_run_encode_seconds'])} s, cached run "
            + (f"{cached} s (load {t['load_seconds']} s)" if cached is not None else "not run yet")
        )
    lines.append(f"- command: `{result['command']}`")
    for r in result["runs"]:
        lines.append(f"- run finished {r['finished_utc']}: wall {r['wall_seconds']:,} s, text cache "
                     f"{'hit' if r['text_cache_hit'] else 'miss' if r['text_cache_hit'] is False else 'n/a'}, "
                     f"load average at end {r['load_average_at_end']}")  # fmt: skip
    return "\n".join(lines) + "\n"


# ----- command line ---------------------------------------------------------------------------


def _targets(text: str) -> int | None:
    return None if text == "all" else int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("movielens", "synthetic"), default="movielens")
    parser.add_argument("--path", default=None, help="MovieLens folder (any release format)")
    parser.add_argument("--name", required=True, help="dataset name used in the results")
    parser.add_argument("--ratings-path", default=None, help="ratings file overriding the folder's (gzip ok)")
    parser.add_argument("--item-text-path", default=None, help="item text joined on item_id (MeLU extrainfos, TMDB CSV)")
    parser.add_argument("--synthetic-users", type=int, default=60, help="--source synthetic: number of users")
    parser.add_argument("--split-mode", choices=MODES, default="standard")
    parser.add_argument("--cold-user-fraction", type=float, default=None,
                        help="pipeline split: share of users held out as new users (default the split's 0.10); "
                             "a larger slice to judge the cold-user comparisons by")
    parser.add_argument("--cold-user-validation-targets", type=_targets, default=1,
                        help="validation targets per new user in the held-out slices' cases (--split-mode pipeline): "
                             "1, their second-to-last interaction; n, up to the n latest before the test target; "
                             "'all', every one after the shown; averaged per user")
    parser.add_argument("--seed", type=int, default=0,
                        help="the split's seed (which users and items are held out) and the synthetic source's")
    parser.add_argument("--models", default="popularity,ease,lightgcn,content_knn")
    parser.add_argument("--models-config", default="{}", help='JSON per-family overrides, e.g. \'{"lightgcn": {"max_epochs": 60}}\'')
    parser.add_argument("--ensemble", action="store_true", help="blend the trained families (weights on validation)")
    parser.add_argument("--new-item-offsets", default=None,
                        help="JSON list of new_item_offset values to choose from on the held-out slices' validation "
                             "cases (GraphSAGE, GNN-TV; --split-mode pipeline), e.g. '[0, -1, -2, -4, -1000]'")
    parser.add_argument("--short-history-popularity", default=None,
                        help="JSON list of short_history_popularity weights to choose from the same way, every "
                             "combination with --new-item-offsets (GraphSAGE, GNN-TV), e.g. '[0, 0.5, 1, 2]'")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER, help="sentence-transformers name or local path")
    parser.add_argument("--text-cache-dir", default=str(DEFAULT_TEXT_CACHE))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and num_threads of the families that have it)")
    add_output_arguments(parser)
    parser.add_argument("--reference", default=None,
                        help="a family of --models to compare every other with, per slice (paired bootstrap)")
    parser.add_argument("--tag", default="plugin", help="results file prefix: <tag>-<name>-<split>-<device>.json")
    args = parser.parse_args(argv)
    if args.source == "movielens" and not args.path:
        parser.error("--path is required for --source movielens")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = run(args)
    result["command"] = shlex.join(["python", "benchmarks/plugin_families.py", *(sys.argv[1:] if argv is None else argv)])
    out, md_out = output_dirs(args)
    stem = f"{args.tag}-{args.name}-{args.split_mode}-{result['hardware']['device'].split(':')[0]}"
    previous = json.loads((out / f"{stem}.json").read_text()) if (out / f"{stem}.json").exists() else None
    result = with_history(result, previous, time.perf_counter() - started)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (md_out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
