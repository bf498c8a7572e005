"""Where benchmark results go: raw JSON outside the checkout, Markdown summaries (each naming the
command that regenerates it) beside the code, and nothing else in ``benchmarks/results/``."""

from pathlib import Path

import benchmarks
from benchmarks import results_dir

# the folder in the checkout, not the one the package's conftest points the scripts at
CHECKED_IN = Path(benchmarks.__file__).resolve().parent / "results"


def test_the_results_folder_is_outside_the_checkout_unless_moved(monkeypatch, tmp_path):
    monkeypatch.delenv("CINESYNC_RESULTS", raising=False)
    assert results_dir() == Path.home() / ".cache" / "cinesync" / "results"
    monkeypatch.setenv("CINESYNC_RESULTS", str(tmp_path / "r"))
    assert results_dir() == tmp_path / "r"


def test_the_checkout_keeps_only_summaries_and_figures_under_two_megabytes():
    files = [p for p in CHECKED_IN.iterdir() if p.is_file() and p.suffix != ".log"]  # *.log: ignored by git
    assert files and {p.suffix for p in files} <= {".md", ".png"}, sorted(p.name for p in files if p.suffix not in (".md", ".png"))
    assert sum(p.stat().st_size for p in files) < 2 * 2**20


def test_every_summary_names_the_command_that_regenerates_it():
    missing = [p.name for p in sorted(CHECKED_IN.glob("*.md")) if "python benchmarks/" not in p.read_text()]
    assert not missing, missing
