"""How a model's test NDCG@10 grows with the number of users it is trained on.

Issue 11's 0.18 bar comes from papers that train on the whole MovieLens-1M (6,040 users); our
ml-1m-u2999 is its first 2,999 users only. This measures how much that costs: the same
configuration trained on the first N users for several N, each scored on the test cases of the
*same* users (the first N_min), so every point answers the same questions.

    # 1. the subsets (written outside the checkout; the ratings are not ours to copy)
    python benchmarks/data_scaling.py subset --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz \
        --max-user-id 1500 --out ~/.cache/cinesync/data/ml-1m-ratings-users-1-1500.dat
    # 2. the same trial on each (benchmarks/sweep.py; checkpoints resume)
    python benchmarks/sweep.py --path ../shared/data/ml-1m --name ml-1m-u1500 \
        --ratings-path ~/.cache/cinesync/data/ml-1m-ratings-users-1-1500.dat --family sasrec \
        --grid '[{"dim": 128, "dropout": 0.2, "max_epochs": 400, "patience": 30, "num_threads": 1}]'
    # 3. the comparison on the shared test users
    python benchmarks/data_scaling.py compare --family sasrec --datasets ml-1m-u750,ml-1m-u1500,ml-1m-u2999 \
        --trial '{"dim": 128, "dropout": 0.2, "max_epochs": 400, "patience": 30, "num_threads": 1}'

Leave-one-out makes a user's test case independent of the other users: user 7's history and
target are the same in every subset. What differs is only the training data (and the catalogue,
which a smaller subset can only shrink: a smaller catalogue is easier to rank, so the measured
gain from more users is, if anything, an underestimate).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402
from models.metrics import ndcg_gains  # noqa: E402


def subset(ratings_path: str, max_user_id: int, out: str) -> int:
    """Write the rows of users 1..max_user_id of a MovieLens ``::`` ratings file (gzip ok) to
    ``out``, uncompressed -> rows written. Lines are copied byte for byte, so the same input gives
    the same bytes (and the same dataset checksum, which benchmark checkpoints are keyed by)."""
    if max_user_id < 1:
        raise SystemExit(f"--max-user-id must be >= 1, got {max_user_id}")
    opener = gzip.open if ratings_path.endswith(".gz") else open
    written = 0
    Path(out).expanduser().parent.mkdir(parents=True, exist_ok=True)
    with opener(ratings_path, "rb") as src, open(Path(out).expanduser(), "wb") as dst:
        for n, line in enumerate(src, start=1):
            user = line.split(b"::", 1)[0]
            if not user.strip().isdigit():
                raise SystemExit(f"{ratings_path}, line {n}: expected 'UserID::MovieID::Rating::Timestamp', got {line[:60]!r}")
            if int(user) <= max_user_id:
                dst.write(line)
                written += 1
    return written


def compare(family: str, datasets: list[str], trial: dict, results: Path) -> dict:
    """Each dataset's trial ``trial`` (a sweep's changed config), scored on the test users that
    all of them share; each smaller one paired against the largest."""
    points = []
    for name in datasets:
        path = results / f"sweep-{family}-{name}-cpu.json"
        if not path.exists():
            raise SystemExit(f"{path} not found: run benchmarks/sweep.py --name {name} --family {family} first")
        sweep = json.loads(path.read_text())
        matching = [t for t in sweep["trials"] if t["changed"] == trial]
        if not matching:
            raise SystemExit(f"{path}: no trial with changed config {json.dumps(trial)}")
        t = matching[0]
        points.append({
            "dataset": name,
            "dataset_sha256": sweep["dataset_sha256"],
            "train_users": sweep["split"]["n_users"],
            "train_rows": sweep["split"]["train_rows"],
            "n_items": sweep["split"]["n_items"],
            "ranks": t["test_ranks_by_user"],
            "own_test_ndcg@10": t["ndcg@10"],
            "best_valid_ndcg@10": t["best_valid_ndcg@10"],
            "epochs_run": t["epochs_run"],
            "best_epoch": t["best_epoch"],
            "seconds_per_epoch": t["seconds_per_epoch"],
        })
    points.sort(key=lambda p: p["train_users"])
    shared = sorted(set.intersection(*(set(p["ranks"]) for p in points)), key=int)
    largest = points[-1]
    for p in points:
        p["shared_test_ndcg@10"] = float(ndcg_gains([p["ranks"][u] for u in shared]).mean())
        if p is not largest:
            both = bench.paired_bootstrap({u: largest["ranks"][u] for u in shared}, {u: p["ranks"][u] for u in shared})
            p["largest_minus_this_ci95"] = both["ndcg@10_diff_ci95"]
    for p in points:
        del p["ranks"]
    users = np.log2([p["train_users"] for p in points])
    ndcg = [p["shared_test_ndcg@10"] for p in points]
    slope = float(np.polyfit(users, ndcg, 1)[0]) if len(points) > 1 else None
    return {
        "family": family,
        "trial": trial,
        "shared_test_users": len(shared),
        "points": points,
        "ndcg@10_per_doubling_of_users": slope,
    }


def markdown(result: dict) -> str:
    lines = [f"**{result['family']}**, trial `{json.dumps(result['trial'])}`, trained on the first N users; test NDCG@10 on "
             f"the {result['shared_test_users']:,} test users every subset shares (each user's test case is the same in all).", ""]
    largest = result["points"][-1]["shared_test_ndcg@10"]

    def versus(p: dict) -> str:
        ci = p.get("largest_minus_this_ci95")
        return "–" if ci is None else f"{largest - p['shared_test_ndcg@10']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"

    lines += bench.table(["training data", "users", "training rows", "catalogue", "best valid NDCG@10", "own test NDCG@10",
                          "shared-users test NDCG@10", "largest − this [95% paired interval]", "epochs (best)", "s/epoch"], [
        [p["dataset"], f"{p['train_users']:,}", f"{p['train_rows']:,}", f"{p['n_items']:,}", f"{p['best_valid_ndcg@10']:.4f}",
         f"{p['own_test_ndcg@10']:.4f}", f"{p['shared_test_ndcg@10']:.4f}", versus(p), f"{p['epochs_run']} ({p['best_epoch']})",
         p["seconds_per_epoch"]] for p in result["points"]])  # fmt: skip
    if result["ndcg@10_per_doubling_of_users"] is not None:
        lines += ["", f"Least-squares slope: {result['ndcg@10_per_doubling_of_users']:+.4f} NDCG@10 per doubling of the users."]
    return "\n".join(lines) + "\n"


def plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    users = [p["train_users"] for p in result["points"]]
    ax.plot(users, [p["shared_test_ndcg@10"] for p in result["points"]], "o-", label=f"shared {result['shared_test_users']:,} test users")
    ax.plot(users, [p["own_test_ndcg@10"] for p in result["points"]], "s--", alpha=0.6, label="each subset's own test users")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("users trained on (first N of ML-1M)")
    ax.set_ylabel("test NDCG@10")
    ax.set_title(f"{result['family']}: test NDCG@10 against training users")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("subset", help="write the ratings of users 1..N")
    s.add_argument("--ratings-path", required=True)
    s.add_argument("--max-user-id", type=int, required=True)
    s.add_argument("--out", required=True)
    c = sub.add_parser("compare", help="compare one sweep trial across the subsets")
    c.add_argument("--family", required=True)
    c.add_argument("--datasets", required=True, help="comma-separated dataset names of the sweeps")
    c.add_argument("--trial", required=True, help="the trial's changed config, as the sweep records it")
    bench.parser(into=c, data=False, device=None)  # --out: where the sweeps are read and the JSON written; --md-out: the .md and .png
    args = parser.parse_args()
    if args.command == "subset":
        print(f"{subset(args.ratings_path, args.max_user_id, args.out):,} rows written to {args.out}")
        return
    result = compare(args.family, args.datasets.split(","), json.loads(args.trial), bench.output_dirs(args)[0])
    tag = f"scaling-{args.family}-{'-'.join(d.rsplit('-', 1)[-1] for d in args.datasets.split(','))}-cpu"
    result["command"] = bench.command_line("data_scaling.py")
    plot(result, bench.write_report(args, tag, result, markdown(result) + bench.commands_note([result["command"]])) / f"{tag}.png")


if __name__ == "__main__":
    main()
