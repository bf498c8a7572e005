"""Glue behind the reliability promises: user-error conversion, cached-output paths, run keys."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
import pytest
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.type_engine import TypeEngine
from flytekit.models.literals import LiteralMap
from flytekit.types.file import FlyteFile

from data_contracts.sources import SourceError
from models.registry import ConfigError
from tasks.common import Table, TrainedModel
from tasks.errors import UserError, user_errors
from tasks.local_state import _local_paths, checkpoint_dir, quarantine_dir
from tasks.train import run_key


def test_source_and_config_errors_become_user_errors_with_the_same_message():
    for error in (SourceError("ml-100k/u.data:3: malformed line"), ConfigError("unknown config key(s) 'dimm'")):
        with pytest.raises(UserError) as caught, user_errors():
            raise error
        assert isinstance(caught.value, click.ClickException)  # pyflyte prints these without a traceback
        assert str(caught.value) == str(error)


def test_a_bug_keeps_its_own_type_and_traceback():
    with pytest.raises(KeyError), user_errors():
        raise KeyError("a real bug")


def test_cached_outputs_name_every_local_file_they_point_at(tmp_path):
    """A training task's output (a list of dataclasses with files) and a table, as the local cache
    stores them: every file path inside is found, so a deleted one can be noticed."""
    weights, report = tmp_path / "weights.pt", tmp_path / "fit_report.json"
    weights.write_bytes(b"w")
    report.write_text("{}")
    ctx = FlyteContextManager.current_context()
    trained = [TrainedModel("sasrec", FlyteFile(str(weights)), FlyteFile(str(report)), "cpu", 1.0)]
    literals = {
        "trained": TypeEngine.to_literal(ctx, trained, list[TrainedModel], TypeEngine.to_literal_type(list[TrainedModel])),
        "table": TypeEngine.to_literal(ctx, pd.DataFrame({"a": [1]}), Table, TypeEngine.to_literal_type(Table)),
    }
    serialized = LiteralMap(literals).to_flyte_idl().SerializeToString()  # what the cache holds
    paths = set(_local_paths(serialized))  # the copies flytekit made of the files and the table
    assert sorted(p.rsplit("/", 1)[-1] for p in paths if "." in p.rsplit("/", 1)[-1]) == ["fit_report.json", "weights.pt"]
    assert len(paths) == 3 and all(Path(p).exists() for p in paths)  # and the table's parquet folder


def test_run_key_changes_with_config_and_data_but_not_with_dict_order():
    train = pd.DataFrame({"user_idx": [1, 2], "item_idx": [3, 4]})
    key = run_key("sasrec", {"dim": 8, "lr": 0.1}, (train,))
    assert key == run_key("sasrec", {"lr": 0.1, "dim": 8}, (train,))
    assert key != run_key("sasrec", {"dim": 16, "lr": 0.1}, (train,))
    assert key != run_key("bert4rec", {"dim": 8, "lr": 0.1}, (train,))
    assert key != run_key("sasrec", {"dim": 8, "lr": 0.1}, (train.iloc[:1],))


def test_durable_folders_live_under_cinesync_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CINESYNC_HOME", str(tmp_path))
    assert checkpoint_dir("sasrec", "ab" * 32) == tmp_path / "checkpoints" / f"sasrec-{'ab' * 8}"
    assert quarantine_dir("ml-1m[ratings.dat.gz]", "0123456789abcdef").parent == tmp_path / "quarantine"
    assert quarantine_dir("ml-1m[ratings.dat.gz]", "0123456789abcdef").name == "ml-1m_ratings.dat.gz_-0123456789ab"


def test_every_user_error_type_is_found_where_it_is_declared():
    import data_contracts.validate  # noqa: F401 - the heaviest of them, imported for the check
    from tasks.errors import USER_ERROR_TYPES, user_error_types

    assert len(user_error_types()) == len(USER_ERROR_TYPES)
    assert all(issubclass(t, ValueError) for t in user_error_types())
