"""What data a run reads and how it is split: one frozen dataclass, passed whole.

The workflows take it as one input (``pyflyte run workflows/full.py full_pipeline --data
'{"source": "movielens", "path": "../shared/data/ml-100k", "split_mode": "standard"}'``), the
Flyte tasks and the in-process runner read it, and ``check`` checks every field against the lists
the modules that use them own, before any data moves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


class OptionsError(ValueError):
    """A data option that cannot work: names the option, the value and what it may be."""


@dataclass(frozen=True)
class DataOptions:
    source: str = "synthetic"  # one of data_contracts.sources.SOURCE_KINDS
    path: str = ""  # a release folder, a download cache folder or a generic folder; "" for synthetic
    ratings_path: str = ""  # overrides a MovieLens folder's ratings file (gzip is fine)
    item_text_path: str = ""  # MovieLens: plots/overviews; synthetic: TVmaze show dumps
    synthetic_users: int = 1000  # size of the embedded synthetic catalogue
    data_seed: int = 0  # seed of the synthetic data
    quarantine: bool = False  # set rows that break a contract aside instead of failing
    min_history_length: int = 1  # contract: users with fewer interactions fail (or are quarantined)
    split_mode: str = "pipeline"  # one of models.split.MODES
    split_seed: int = 0  # seed of the split's cold-user and cold-item holdouts

    def check(self) -> "DataOptions":
        """Raise ``OptionsError`` naming the first option that cannot work; return ``self``."""
        from data_contracts.sources import SOURCE_KINDS
        from models.split import MODES

        for f in fields(self):
            value = getattr(self, f.name)
            wanted = {"str": str, "int": int, "bool": bool}[f.type]
            if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
                raise OptionsError(f"data option {f.name} must be {f.type}, got {value!r}")
        if self.source not in SOURCE_KINDS:
            raise OptionsError(f"unknown source {self.source!r}; known: {', '.join(SOURCE_KINDS)}")
        if self.split_mode not in MODES:
            raise OptionsError(f"unknown split mode {self.split_mode!r}; known: {', '.join(MODES)}")
        if self.source == "synthetic" and self.path:
            raise OptionsError(f"source synthetic reads no path, got path {self.path!r}")
        if self.source != "synthetic" and not self.path:
            raise OptionsError(f"source {self.source} needs a path (the folder to read)")
        if self.synthetic_users < 1:
            raise OptionsError(f"synthetic_users must be >= 1, got {self.synthetic_users}")
        if self.min_history_length < 1:
            raise OptionsError(f"min_history_length must be >= 1, got {self.min_history_length}")
        return self
