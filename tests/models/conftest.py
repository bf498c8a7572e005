"""Fixtures for the model-family tests: a tiny planted-sequence dataset built by hand.

60 users walk along one of three fixed chains of 20 items each (chain c is items
20c+1 .. 20c+20, in order, wrapping around), each starting somewhere on the chain and taking
12 to 18 steps, so no user repeats an item. The next
item is therefore a function of the current one, which a sequential model can learn and a
popularity count cannot: every item is about as popular as every other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.data import SplitData

N_CHAINS, CHAIN_LEN, N_USERS = 3, 20, 60


def split_from_sequences(sequences: dict[int, list[int]], n_items: int) -> SplitData:
    """Leave-one-out split of per-user chronological item lists (DESIGN.md protocol)."""
    train_rows, cases = [], []
    for user, seq in sequences.items():
        ts = list(range(1_000, 1_000 + len(seq)))
        cut = len(seq) - 2 if len(seq) >= 3 else len(seq)
        train_rows += [(user, item, 4.0, t) for item, t in zip(seq[:cut], ts[:cut])]
        if len(seq) < 3:
            continue
        for stage, target in (("valid", cut), ("test", cut + 1)):
            cases.append({
                "case_id": 2 * user + (stage == "test"), "stage": stage, "user_idx": user,
                "target_item": seq[target], "target_timestamp": ts[target],
                "history": list(seq[:target]), "history_timestamps": ts[:target],
                "slice": "warm", "activity_bucket": "11-50",
            })  # fmt: skip
    train = pd.DataFrame(train_rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    return SplitData(
        n_users=max(sequences),
        n_items=n_items,
        train=train,
        cases=pd.DataFrame(cases),
        items=pd.DataFrame({"item_idx": np.arange(1, n_items + 1), "item_id": np.arange(n_items)}),
        users=pd.DataFrame({"user_idx": list(sequences), "user_id": list(sequences)}),
    )


def planted_sequences() -> dict[int, list[int]]:
    sequences = {}
    for user in range(1, N_USERS + 1):
        chain, start = (user - 1) % N_CHAINS, (user - 1) // N_CHAINS % CHAIN_LEN
        length = 12 + user % 7
        sequences[user] = [chain * CHAIN_LEN + (start + t) % CHAIN_LEN + 1 for t in range(length)]
    return sequences


@pytest.fixture(scope="session")
def planted_split() -> SplitData:
    return split_from_sequences(planted_sequences(), N_CHAINS * CHAIN_LEN)


@pytest.fixture(scope="session")
def make_split():
    """split_from_sequences, for tests that hand-build their own sequences."""
    return split_from_sequences
