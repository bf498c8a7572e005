"""Serving's room: ``serving/`` is packaged and copied into the image, its benchmarks are not;
``models/`` imports neither it nor MLflow nor Flyte; every summary of a serving benchmark names
the command that regenerates it."""

import re
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_serving_is_packaged_and_its_benchmarks_are_not():
    found = (tomllib.loads((ROOT / "pyproject.toml").read_text()))["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(ROOT), include=found["include"], exclude=found.get("exclude", ()))
    assert "serving" in packages
    assert not [p for p in packages if p.startswith(("serving.benchmarks", "benchmarks", "tests"))]


def test_the_image_gets_serving_without_its_benchmarks():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY serving ./serving" in dockerfile
    assert "serving/benchmarks/" in (ROOT / ".dockerignore").read_text().split()


def test_models_imports_neither_serving_nor_mlflow_nor_flyte():
    pattern = re.compile(r"^\s*(from|import)\s+(serving|mlflow|flytekit|tasks|workflows)\b", re.M)
    offending = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "models").rglob("*.py")) if pattern.search(p.read_text())]
    assert not offending, offending


def test_every_serving_summary_names_the_command_that_regenerates_it():
    summaries = sorted((ROOT / "serving" / "benchmarks" / "results").glob("*.md"))
    assert summaries
    missing = [p.name for p in summaries if "python serving/benchmarks/" not in p.read_text()]
    assert not missing, missing
