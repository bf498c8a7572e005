"""`pyflyte run ... --help` and a failing input check answer in seconds because heavy libraries are
imported only by the tasks that use them (benchmarks/startup.py measures the seconds)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return [m for m in done.stdout.strip().split(",") if m]


def test_loading_the_workflows_imports_no_heavy_library():
    heavy = ("torch", "mlflow", "great_expectations", "matplotlib", "transformers", "torch_geometric")
    assert _imported_after("import workflows.full", heavy) == []


def test_the_family_specs_import_no_model_code():
    """The first task reads models.registry to check names: no PyTorch until a config is read."""
    heavy = ("torch", "mlflow", "great_expectations", "transformers", "sentence_transformers", "torch_geometric")
    assert _imported_after("import models.registry", heavy) == []
