"""How fast `pyflyte run` answers before any work: `--help`, and a run whose input check fails.

    python benchmarks/startup.py              # 5 repeats of each command
    python benchmarks/startup.py --repeats 10

Each command is run in a fresh process (nothing warm but the OS file cache; one untimed run of each
first) and timed wall-clock; the script writes ``startup-<machine>.json`` to the results folder
outside the checkout (``benchmarks.results_dir()``) and to ``benchmarks/results/`` a Markdown table with the median and the slowest run, and the import time of ``workflows.full``
(``python -X importtime``). The bar (issue 8): both answer in under 6 s on a quiet 2-core machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402

PYFLYTE = str(Path(sys.executable).with_name("pyflyte"))
BAR_SECONDS = 6.0

COMMANDS = {
    "full_pipeline --help": [PYFLYTE, "run", "workflows/full.py", "full_pipeline", "--help"],
    "unknown model (fails in the first task)": [
        PYFLYTE, "run", "workflows/full.py", "full_pipeline", "--models", '["nope"]',
    ],
    "missing MovieLens folder (fails in ingest)": [
        PYFLYTE, "run", "workflows/full.py", "validate_data", "--data", '{"source": "movielens", "path": "/nonexistent"}',
    ],
}  # fmt: skip


def time_command(command: list[str], env: dict) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode


def import_seconds(env: dict) -> float:
    """Cumulative import time of workflows.full, from ``python -X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import workflows.full"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    last = [line for line in done.stderr.splitlines() if line.rstrip().endswith("workflows.full")][-1]
    return int(last.split("|")[1]) / 1e6


def main() -> None:
    parser = bench.parser(__doc__, data=False, device=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "FLYTE_LOCAL_CACHE_ENABLED": "false"}
    rows = []
    for name, command in COMMANDS.items():
        time_command(command, env)  # untimed: fill the OS file cache
        runs = [time_command(command, env) for _ in range(args.repeats)]
        seconds = [s for s, _ in runs]
        rows.append({
            "command": name, "argv": command[1:], "exit_codes": sorted({rc for _, rc in runs}),
            "median_s": round(statistics.median(seconds), 2), "max_s": round(max(seconds), 2),
            "runs_s": [round(s, 2) for s in seconds], "under_bar": max(seconds) < BAR_SECONDS,
        })  # fmt: skip
        print(f"{name}: median {rows[-1]['median_s']} s, max {rows[-1]['max_s']} s")
    result = {
        "import_workflows_full_s": round(import_seconds(env), 2),
        "commands": rows,
        "bar_s": BAR_SECONDS,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    lines = [f"`import workflows.full`: {result['import_workflows_full_s']} s ({os.cpu_count()} CPUs, load average "
             f"{result['machine']['load_average_1m_at_end']} at the end)", ""]
    lines += bench.table(["command", "exit code", "median s", "slowest s", "under 6 s"], [
        [f"`{r['command']}`", ",".join(map(str, r["exit_codes"])), r["median_s"], r["max_s"], "yes" if r["under_bar"] else "no"]
        for r in rows])  # fmt: skip
    lines += ["", f"- command: `python benchmarks/startup.py --repeats {args.repeats}`"]
    bench.write_report(args, f"startup-{os.cpu_count()}cpu", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
