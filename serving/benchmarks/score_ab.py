"""Is one family's one-request ``score`` faster than at an earlier commit? Same inputs, same process.

    python serving/benchmarks/score_ab.py --family temporal_attention --before 8695dce --name ml-1m-u2999 \
        --path ../shared/data/ml-1m --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz

On a shared 2-vCPU VM the same code runs 1.2–1.6x slower from one serving run to the next
(``serving/SERVING.md``, run F), so two runs of ``serving/benchmarks/latency.py`` cannot show a 10% change of one
model. This script compares the two versions inside one process instead: the family's module as
it is at ``--before`` (read with ``git show``; the rest of ``models`` is the working tree's) and
as it is now, the same weights in both (the current model's ``state_dict``), each traced as the
pyfunc traces it (``serving.inference.single_row_scorer``), timed on the same real test histories
(the standard split's test cases in a fixed random order, at most ``history_length`` items, with
their timestamps), in alternating blocks of 50 requests. It also reports the largest score
difference between the two on those histories: a speed change must not be a scoring change.

Writes ``score-ab-<family>-<name>.json`` (every run appended) to the results folder outside the
checkout (``benchmarks.results_dir()``) and a Markdown table of every run to
``serving/benchmarks/results/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a file from anywhere

from serving.benchmarks import single_threaded  # noqa: E402

single_threaded()  # before torch loads

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.registry import build_model  # noqa: E402
from serving.benchmarks import add_output_arguments, command_line, output_dirs  # noqa: E402
from serving.benchmarks.latency import load_split, percentiles  # noqa: E402
from serving.inference import single_row_scorer  # noqa: E402


def model_at(revision: str, current: torch.nn.Module) -> torch.nn.Module:
    """``current``'s class as its module is at git ``revision``, with ``current``'s config and weights."""
    path = Path(inspect.getfile(type(current))).resolve().relative_to(ROOT)
    source = subprocess.run(["git", "show", f"{revision}:{path.as_posix()}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(f"before_{revision}", handle.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    os.unlink(handle.name)
    config_cls = getattr(module, type(current.config).__name__)
    before = getattr(module, type(current).__name__)(config_cls(**vars(current.config)))
    before.load_state_dict(current.state_dict())
    return before.eval()


def compare(scorers: dict, inputs: list, warmup: int, block: int = 50) -> dict[str, np.ndarray]:
    """Milliseconds per request of each scorer, taking turns in blocks (the first after the warm-up)."""
    ms = {name: np.zeros(len(inputs)) for name in scorers}
    with torch.inference_mode():
        for scorer in scorers.values():
            for x in inputs[:warmup]:
                scorer(*x)
        names = list(scorers)
        for number, start in enumerate(range(warmup, len(inputs), block)):
            for name in names[number % 2 :] + names[: number % 2]:
                for i in range(start, min(start + block, len(inputs))):
                    tick = time.perf_counter()
                    scorers[name](*inputs[i])
                    ms[name][i] = (time.perf_counter() - tick) * 1e3
    return {name: values[warmup:] for name, values in ms.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True)
    parser.add_argument("--before", required=True, help="the git revision to compare with")
    parser.add_argument("--path", required=True, help="MovieLens folder")
    parser.add_argument("--ratings-path", default=None)
    parser.add_argument("--name", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    _, data = load_split(args.path, args.ratings_path, args.name)
    now = build_model(args.family, data.n_items).eval()
    scorers = {"before": single_row_scorer(model_at(args.before, now), data.n_items),
               "now": single_row_scorer(now, data.n_items)}  # fmt: skip
    if any(s is None for s in scorers.values()):
        raise SystemExit(f"{args.family}: no traced single-row scorer to compare (serving.inference)")
    width = now.history_length or None
    cases = data.stage("test").sample(frac=1.0, random_state=0).head(args.warmup + args.requests)
    cases = cases[cases["history"].map(len) > 0]
    inputs = [(torch.tensor([h[-width:] if width else h]), torch.tensor([t[-width:] if width else t]))
              for h, t in zip(cases["history"], cases["history_timestamps"])]  # fmt: skip
    with torch.inference_mode():
        difference = max(float((scorers["before"](*x) - scorers["now"](*x)).abs().max()) for x in inputs)
    ms = compare(scorers, inputs, args.warmup)
    lengths = np.array([x[0].shape[1] for x in inputs[args.warmup :]])
    longest = lengths == lengths.max()
    run = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "family": args.family, "before": args.before,
        "now": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "dirty": bool(subprocess.run(["git", "status", "--porcelain", "models"], cwd=ROOT, capture_output=True, text=True).stdout.strip()),
        "dataset": args.name, "requests": len(lengths), "longest": int(lengths.max()), "n_longest": int(longest.sum()),
        "max_abs_score_difference": difference, "load_average": list(os.getloadavg()),
        "ms": {name: {"all": percentiles(list(v)), "longest": percentiles(list(v[longest]))} for name, v in ms.items()},
        "command": command_line("score_ab.py", argv),
    }  # fmt: skip
    out, md_out = output_dirs(args)
    stem = f"score-ab-{args.family}-{args.name}"
    runs = json.loads((out / f"{stem}.json").read_text())["runs"] if (out / f"{stem}.json").exists() else []
    (out / f"{stem}.json").write_text(json.dumps({"runs": [*runs, run]}, indent=1) + "\n")
    (md_out / f"{stem}.md").write_text(markdown([*runs, run]))
    print(markdown([*runs, run]))
    return run


def markdown(runs: list[dict]) -> str:
    lines = [f"**{runs[-1]['family']}: one-request `score`, traced, before and now, in one process** "
             "(p50 / p90 / p99 ms; the same real test histories, alternating blocks of 50)", "",
             "| run | before | now | all: before | all: now | longest histories: before | now | max score difference | load |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for run in runs:
        cell = lambda p: f"{p['p50_ms']:.2f} / {p['p90_ms']:.2f} / {p['p99_ms']:.2f}"  # noqa: E731
        b, n = run["ms"]["before"], run["ms"]["now"]
        lines.append(f"| {run['started_at']} | {run['before']} | {run['now']}{' (+ changes)' if run['dirty'] else ''} | "
                     f"{cell(b['all'])} | {cell(n['all'])} | {cell(b['longest'])} ({run['n_longest']} of {run['longest']} items) | "
                     f"{cell(n['longest'])} | {run['max_abs_score_difference']:.1e} | {run['load_average'][0]:.2f} |")  # fmt: skip
    lines += ["", f"- command: `{runs[-1]['command']}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
