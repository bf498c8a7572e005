"""Graph family at scale (issue 12): graph construction and one epoch of each graph model on a
real dataset, and mini-batch LightGCN on a graph ten times larger, with peak memory.

    python benchmarks/graph_scale.py epochs --path ../shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz \
        --item-text-path ../shared/data/melu-ml1m-movie-extrainfos/movies_extrainfos.dat.gz
    python benchmarks/graph_scale.py large --scale 10 --steps 200

``epochs``: the data read by path, checked and split by ``pipeline.steps`` (pipeline mode); the
interaction graph and the heterogeneous metadata graph built and timed; then each of LightGCN
(full-graph propagation), LightGCN (neighbour sampling), GraphSAGE and GNN-TV fitted by
``steps.fit_family`` for exactly one epoch (its validation pass included), each in its own process
so that its peak RSS is its own. Side inputs come from the cache the other benchmarks fill.

``large``: a seeded synthetic interaction table ``--scale`` times the size of ml-1m-u2999
(2,999 users x 3,706 items, 487,650 interactions: users, items and interactions all multiplied;
popularity Zipf-like), LightGCN trained with neighbour sampling for ``--steps`` batches, and for
comparison the memory full-graph training would need for one step (measured for ``--full-step``).
Each in its own process; peak RSS from ``getrusage``.

Writes ``graph-scale-<name>-cpu.json`` to the results folder outside the checkout
(``benchmarks.results_dir()``; a re-run reads it back and updates it) and ``.md`` to ``benchmarks/results/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402

bench.single_threaded()  # before torch loads

import argparse  # noqa: E402
import os  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

ML1M_U2999 = {"users": 2_999, "items": 3_706, "interactions": 487_650}
# one epoch each: real sizes, the batch sizes the graph benchmark uses
EPOCH_MODELS = {
    "lightgcn (full graph)": ("lightgcn", {"max_epochs": 1, "batch_size": 2048, "num_threads": 1}),
    "lightgcn (sampling 10-5-5)": ("lightgcn", {"max_epochs": 1, "batch_size": 2048, "sampling": True, "num_threads": 1}),
    "graphsage": ("graphsage", {"max_epochs": 1, "batch_size": 8192, "num_threads": 1}),
    "hetero_gnn": ("hetero_gnn", {"max_epochs": 1, "batch_size": 8192, "num_threads": 1}),
}


# ----- one epoch per model (child processes) ----------------------------------------------------


def one_epoch(args) -> dict:
    """Child: fit ``args.model`` for one epoch on the split; its times and peak RSS."""
    from pipeline.steps import fit_family

    family, overrides = EPOCH_MODELS[args.model]
    split = bench.prepare(bench.data_options(args, "pipeline"), args.name)[1]
    side = bench.side_inputs_for([family], split, args.encoder, args.text_cache_dir)
    fitted = fit_family(family, split.data.training_data(), overrides, side, device=torch.device("cpu"))
    epoch = fitted.report.epochs[0]
    return {
        "model": args.model,
        "family": family,
        "overrides": overrides,
        "epoch_seconds": round(epoch.seconds, 2),  # training batches + the validation pass
        "fit_seconds": round(fitted.seconds, 2),  # + graph attach, side-input checks
        "train_loss": epoch.train_loss,
        "valid_ndcg@10_after_one_epoch": epoch.valid.get("ndcg@10"),
        "peak_rss_mib": round(bench.peak_rss_mib(), 1),
    }


def construction(args) -> dict:
    """Child: time both graph builders on the split's training part."""
    from models.graph.interaction_graph import build_hetero_graph, build_interaction_graph

    data = bench.prepare(bench.data_options(args, "pipeline"), args.name)[1].data
    started = time.perf_counter()
    import torch_geometric.data  # noqa: F401  (seconds on its own: timed apart from the build)

    pyg_import = time.perf_counter() - started
    started = time.perf_counter()
    graph = build_interaction_graph(data.train, data.n_users, data.n_items)
    interaction = time.perf_counter() - started
    started = time.perf_counter()
    hetero = build_hetero_graph(data.train, data.items, data.n_users, data.n_items)
    hetero_seconds = time.perf_counter() - started
    return {
        "train_rows": len(data.train),
        "pyg_import_seconds": round(pyg_import, 3),
        "interaction_graph": {"seconds": round(interaction, 3), "pairs": graph.n_pairs, "nodes": graph.num_nodes},
        "hetero_graph": {
            "seconds": round(hetero_seconds, 3),
            "nodes": {t: int(hetero[t].num_nodes) for t in hetero.node_types},
            "edges": {"__".join(e): int(hetero[e].edge_index.shape[1]) for e in hetero.edge_types},
        },
        "peak_rss_mib": round(bench.peak_rss_mib(), 1),
    }


# ----- a graph ten times larger (child processes) ------------------------------------------------


def synthetic_interactions(scale: int, seed: int = 0) -> tuple[pd.DataFrame, int, int]:
    """``scale`` x ml-1m-u2999 in users, items and interactions; Zipf-like item popularity."""
    rng = np.random.default_rng(seed)
    n_users, n_items = ML1M_U2999["users"] * scale, ML1M_U2999["items"] * scale
    n = ML1M_U2999["interactions"] * scale
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=n, p=popularity / popularity.sum()) + 1
    users = rng.integers(1, n_users + 1, size=n)
    return pd.DataFrame({"user_idx": users, "item_idx": items}), n_users, n_items


def large(args) -> dict:
    """Child: LightGCN on the large graph, sampled mini-batches or (``--full``) full-graph steps."""
    from models.graph.interaction_graph import build_interaction_graph
    from models.graph.lightgcn import BPRPairs, LightGCN, LightGCNConfig, NeighbourSampler

    train, n_users, n_items = synthetic_interactions(args.scale)
    started = time.perf_counter()
    graph = build_interaction_graph(train, n_users, n_items)
    build_seconds = time.perf_counter() - started
    del train
    config = LightGCNConfig(n_items, n_users, batch_size=args.batch_size, lr=args.lr, sampling=not args.full)
    model = LightGCN(config)
    model.attach_graph(graph)
    model.sampler = NeighbourSampler(graph) if not args.full else None
    pairs = BPRPairs(graph, config.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(0)
    model.train()
    losses, started, steps = [], time.perf_counter(), 0
    for users, positives, negatives in pairs.epoch_batches(generator):
        seed = torch.randint(0, 2**62, (1,), generator=generator)
        loss = model.loss(users, positives, negatives, seed if not args.full else None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        steps += 1
        if steps >= args.steps:
            break
    seconds = time.perf_counter() - started
    return {
        "mode": "full graph" if args.full else f"sampling {config.fanouts}",
        "scale": args.scale,
        "users": n_users,
        "items": n_items,
        "pairs": graph.n_pairs,
        "graph_build_seconds": round(build_seconds, 2),
        "batch_size": config.batch_size,
        "lr": config.lr,
        "steps": steps,
        "seconds_per_step": round(seconds / max(steps, 1), 3),
        "loss_first_10": round(float(np.mean(losses[:10])), 4),
        "loss_last_10": round(float(np.mean(losses[-10:])), 4),
        "peak_rss_mib": round(bench.peak_rss_mib(), 1),
    }


# ----- the parent: one child per measurement -----------------------------------------------------


def child(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv, "--child"], capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-3000:])
        raise subprocess.CalledProcessError(out.returncode, out.args)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    lines = [f"**Graph family at scale** ({result['when']}, {result['cpus']} CPUs, 1 torch thread per process)", ""]
    if "construction" in result:
        c = result["construction"]
        lines += [
            f"{result['name']} (pipeline split, {c['train_rows']:,} training rows): interaction graph "
            f"{c['interaction_graph']['pairs']:,} pairs in **{c['interaction_graph']['seconds']} s**; "
            f"metadata graph ({', '.join(f'{k} {v:,}' for k, v in c['hetero_graph']['nodes'].items())}) in "
            f"**{c['hetero_graph']['seconds']} s**.",
            "",
        ]
        lines += bench.table(["model", "one epoch (train + validation) s", "fit s", "valid NDCG@10 after it", "peak RSS MiB"], [
            [r["model"], r["epoch_seconds"], r["fit_seconds"], f"{(r['valid_ndcg@10_after_one_epoch'] or 0):.4f}", r["peak_rss_mib"]]
            for r in result["epochs"]])  # fmt: skip
    if "large" in result:
        lines += ["", *bench.table(["LightGCN on a synthetic graph", "users", "items", "pairs", "build s", "batch", "steps", "s/step",
                                    "loss first/last 10", "peak RSS MiB"], [
            [f"{r['mode']}, {r['scale']}x ml-1m-u2999", *([f"failed (exit {r['failed']})", *[""] * 8] if "failed" in r else [
             f"{r['users']:,}", f"{r['items']:,}", f"{r['pairs']:,}", r["graph_build_seconds"], r["batch_size"], r["steps"],
             r["seconds_per_step"], f"{r['loss_first_10']} / {r['loss_last_10']}", r["peak_rss_mib"]])] for r in result["large"]])]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = bench.parser(__doc__, name="ml-1m-u2999", device=None, text=True, path="../shared/data/ml-1m",
                          ratings_path="../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz",
                          item_text_path="../shared/data/melu-ml1m-movie-extrainfos/movies_extrainfos.dat.gz")  # fmt: skip
    parser.add_argument("what", choices=("epochs", "large"))
    parser.add_argument("--models", default=",".join(EPOCH_MODELS))
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=5e-3, help="large: LightGCN's learning rate (5e-3: chosen on ml-100k)")
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)  # a child's mode
    parser.add_argument("--sampling-only", action="store_true", help="large: skip the full-graph comparison")
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.source == "synthetic":  # the defaults name ml-1m's files
        args.path = args.ratings_path = args.item_text_path = ""

    if args.child:
        work = {"epoch": one_epoch, "construction": construction, "large": large}[args.part]
        print(json.dumps(work(args)))
        return

    passthrough = sys.argv[1:]  # a child parses the same options, plus its part
    stem = f"graph-scale-{args.name}-cpu"
    result = bench.previous_result(args, stem)
    result.update(name=args.name, cpus=os.cpu_count(), when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    commands = bench.with_commands(result, bench.command_line("graph_scale.py"))
    if args.what == "epochs":
        result["construction"] = child([*passthrough, "--part", "construction"])
        print(json.dumps(result["construction"]), flush=True)
        result["epochs"] = []
        for model in args.models.split(","):
            row = child([*passthrough, "--part", "epoch", "--model", model])
            print(json.dumps(row), flush=True)
            result["epochs"].append(row)
    else:
        kept = [r for r in result.get("large", []) if r.get("mode") == "full graph" and r.get("scale") == args.scale]
        result["large"] = []
        for full in (False,) if args.sampling_only else (False, True):
            try:
                row = child([*passthrough, "--part", "large"] + (["--full"] if full else []))
            except subprocess.CalledProcessError as error:  # e.g. killed for memory
                row = {"mode": "full graph" if full else "sampling", "scale": args.scale, "failed": error.returncode}
            print(json.dumps(row), flush=True)
            result["large"].append(row)
        if args.sampling_only:
            result["large"] += kept  # the full-graph row measured before, if any
    bench.write_report(args, stem, result, markdown(result) + bench.commands_note(commands))


if __name__ == "__main__":
    main()
