""""Similar items" quality: CL-TV's item embeddings against plain text-embedding neighbours (issue 13).

    python benchmarks/similar_items.py --source synthetic --name synthetic-default --synthetic-users 1000
    python benchmarks/similar_items.py --path ../shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz \
        --item-text-path ../shared/data/melu-ml1m-movie-extrainfos/movies_extrainfos.dat.gz

The measures, fixed before any number was looked at:

- **co-watch NDCG@10**: for every test case of the pipeline split (the held-out interactions),
  the query is the user's latest history item and the answer is the 10 items nearest to it
  (cosine, the query itself excluded, nothing else about the user used); the gain is
  1 / log2(1 + rank) when the held-out item is among them. A paired bootstrap over the test cases
  compares CL-TV with the text neighbours.
- **genre overlap**: mean Jaccard similarity of the genre sets of an item and each of its 10
  neighbours, over every catalogue item that has genres;
- **cast overlap**: share of neighbours sharing at least one cast member with the item, over
  every item that has a cast (only where the item table has a cast: MeLU's plots for ML-1M).

Methods: ``text`` (the item-text-embedding side input, all-MiniLM-L6-v2 unless ``--encoder``),
``contrastive`` (CL-TV trained on the training part, epoch chosen on validation NDCG@10, its
``item_embeddings()``) and, as the floor, ``random`` neighbours (seeded).

Writes ``similar-items-<name>-<device>.json`` to the results folder outside the checkout
(``benchmarks.results_dir()``) and a Markdown table to ``benchmarks/results/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402

bench.single_threaded()  # before torch loads

import json  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from models.device import pick_device  # noqa: E402

K = 10
MISS = K + 1  # the rank recorded when the held-out item is not among the K neighbours


def nearest(embeddings: torch.Tensor, k: int = K, batch: int = 2048) -> torch.Tensor:
    """FloatTensor[n_items + 1, D] (row 0 padding) -> LongTensor[n_items + 1, k]: each item's k
    nearest items by cosine, itself and padding excluded (row 0 of the answer is unused)."""
    unit = F.normalize(embeddings.float(), dim=1)
    n = unit.shape[0]
    out = torch.zeros(n, k, dtype=torch.long)
    for start in range(1, n, batch):
        rows = torch.arange(start, min(start + batch, n))
        sims = unit[rows] @ unit.T
        sims[:, 0] = float("-inf")
        sims[torch.arange(len(rows)), rows] = float("-inf")
        out[rows] = sims.topk(k, dim=1).indices
    return out


def random_neighbours(n_items: int, k: int = K, seed: int = 0) -> torch.Tensor:
    """k distinct random items per item (never itself or padding)."""
    generator = torch.Generator().manual_seed(seed)
    out = torch.zeros(n_items + 1, k, dtype=torch.long)
    for item in range(1, n_items + 1):
        picks = torch.randperm(n_items - 1, generator=generator)[:k] + 1  # 1..n_items - 1
        out[item] = picks + (picks >= item).long()  # skip the item itself
    return out


def cowatch_ranks(neighbours: torch.Tensor, cases: pd.DataFrame) -> dict[str, int]:
    """case_id -> rank (1..K, or K + 1 when missed) of the held-out item among the K neighbours
    of the case's latest history item."""
    table = neighbours.numpy()
    ranks = {}
    for case_id, history, target in zip(cases["case_id"], cases["history"], cases["target_item"]):
        hits = np.flatnonzero(table[int(history[-1])] == int(target)) if len(history) else []
        ranks[str(int(case_id))] = int(hits[0]) + 1 if len(hits) else MISS
    return ranks


def ndcg(ranks: dict[str, int]) -> float:
    r = np.array(list(ranks.values()), dtype=np.float64)
    return float(np.where(r <= K, 1.0 / np.log2(r + 1.0), 0.0).mean()) if len(r) else 0.0


def _sets(items: pd.DataFrame, column: str) -> dict[int, frozenset[str]]:
    if column not in items.columns:
        return {}
    values = items[column].astype("string").fillna("")
    return {int(i): frozenset(p.strip() for p in v.split("|") if p.strip()) for i, v in zip(items["item_idx"], values)}


def attribute_overlap(neighbours: torch.Tensor, items: pd.DataFrame) -> dict[str, float | int | None]:
    """Genre Jaccard and shared-cast share between each item and its neighbours (see the module)."""
    table = neighbours.numpy()
    genres, cast = _sets(items, "genres"), _sets(items, "cast")
    jaccard = [
        np.mean([len(genres[i] & genres.get(int(j), frozenset())) / len(genres[i] | genres.get(int(j), frozenset())) for j in table[i]])
        for i in genres if genres[i]
    ]
    shared = [np.mean([bool(cast[i] & cast.get(int(j), frozenset())) for j in table[i]]) for i in cast if cast[i]]
    return {
        "genre_jaccard": float(np.mean(jaccard)) if jaccard else None,
        "items_with_genres": len(jaccard),
        "cast_shared": float(np.mean(shared)) if shared else None,
        "items_with_cast": len(shared),
    }


def measure(name: str, neighbours: torch.Tensor, cases: pd.DataFrame, items: pd.DataFrame) -> dict:
    ranks = cowatch_ranks(neighbours, cases)
    slices = dict(zip(cases["case_id"].astype(int).astype(str), cases["slice"].astype(str)))
    per_slice = {s: ndcg({c: r for c, r in ranks.items() if slices[c] == s}) for s in sorted(set(slices.values()))}
    return {"method": name, "cowatch_ndcg@10": ndcg(ranks), "cowatch_ndcg@10_per_slice": per_slice,
            **attribute_overlap(neighbours, items), "ranks": ranks}  # fmt: skip


def run(args) -> dict:
    device, options = pick_device(args.device), bench.data_options(args, "pipeline")
    tables, split = bench.prepare(options, args.name)
    data, cases = split.data, split.test_cases
    side_inputs = bench.side_inputs_for(["contrastive"], split, args.encoder, args.text_cache_dir)
    overrides = {"num_threads": args.threads, **json.loads(args.contrastive_config)}
    key = {"dataset_sha256": tables.checksum, "data": asdict(options), "text_encoder": args.encoder}
    row, model = bench.train_and_test("contrastive", overrides, split, side_inputs, device, key)
    text = torch.as_tensor(side_inputs["item_text_embeddings"].matrix)
    with torch.no_grad():
        learned = model.item_embeddings().detach().cpu()
    methods = {
        "random": random_neighbours(data.n_items),
        "text": nearest(text),
        "contrastive": nearest(learned),
    }
    measured = {name: measure(name, neighbours, cases, data.items) for name, neighbours in methods.items()}
    boot = bench.paired_bootstrap(measured["contrastive"]["ranks"], measured["text"]["ranks"])
    return {
        "dataset": args.name,
        "dataset_sha256": tables.checksum,
        "n_test_cases": len(cases),
        "hardware": bench.hardware(device),
        "contrastive": {k: v for k, v in row.items() if k not in ("test_ranks_by_user", "test_slices_by_user")},
        "methods": {name: {k: v for k, v in m.items() if k != "ranks"} for name, m in measured.items()},
        "contrastive_minus_text": {"cowatch_ndcg@10_diff": boot["ndcg@10_diff"], **boot},
    }


def markdown(result: dict) -> str:
    lines = [f"**Similar items on {result['dataset']}** (pipeline split, seed 0, sha256 `{result['dataset_sha256'][:16]}…`, "
             f"{result['n_test_cases']:,} test cases; {result['hardware']['device']}, {result['hardware']['cpu_threads']} thread(s))", ""]

    def overlap(share, items) -> str:
        return "–" if share is None else f"{share:.3f} ({items:,} items)"

    lines += bench.table(["neighbours from", "co-watch NDCG@10", "per slice", "genre Jaccard", "shared cast"], [
        [name, f"{m['cowatch_ndcg@10']:.4f}", ", ".join(f"{s} {v:.4f}" for s, v in m["cowatch_ndcg@10_per_slice"].items()),
         overlap(m["genre_jaccard"], m["items_with_genres"]), overlap(m["cast_shared"], m["items_with_cast"])]
        for name, m in result["methods"].items()])  # fmt: skip
    d = result["contrastive_minus_text"]
    lo, hi = d["ndcg@10_diff_ci95"]
    c = result["contrastive"]
    lines += [
        "",
        f"- CL-TV − text neighbours, co-watch NDCG@10: {d['cowatch_ndcg@10_diff']:+.4f}, 95% paired-bootstrap interval "
        f"[{lo:+.4f}, {hi:+.4f}] over {d['n_cases']:,} test cases ({d['n_resamples']} resamples)",
        f"- CL-TV as a recommender (test NDCG@10, all cases): {c['test']['all']['ndcg@10']:.4f}; best validation "
        f"NDCG@10 {c['best_valid_ndcg@10']:.4f} at epoch {c['best_epoch']} of {c['epochs_run']}, {c['train_seconds']} s",
        "- measures (fixed before looking): the query is each test user's latest history item, the answer its 10 nearest "
        "items (cosine, itself excluded); gain 1/log2(1+rank) when the held-out item is among them. Genre Jaccard and shared "
        "cast: each catalogue item against its 10 neighbours.",
        f"- command: `{result['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = bench.parser(__doc__, text=True)
    parser.add_argument("--contrastive-config", default="{}", help="JSON overrides of the contrastive family's config")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = run(args)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["command"] = bench.command_line("similar_items.py", argv)
    bench.write_report(args, f"similar-items-{args.name}-{result['hardware']['device'].split(':')[0]}", result, markdown(result))
    return result


if __name__ == "__main__":
    main()
