"""Training windows for every sequential family: each user's events, cropped afresh every epoch.

The training table is already ordered by user then time, so the windows are cut once over *row
ids* (1-based positions in the user-grouped table; 0 is padding) and any per-event column is
looked up through them: SASRec takes items, TAT-TV items and timestamps, BERT4Rec items, ratings
and the user. One cropping, one random stream, whatever the family reads.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

PAD = 0


class SequenceWindows:
    """Each user's training events as row ids, cut per epoch to a window of at most ``width``.

    Long sequences get a fresh random crop every epoch, so over the epochs every transition is
    trained on; short ones are used whole; users with a single event are left out (one event has
    no next one). Windows are left-padded with ``PAD``.
    """

    def __init__(self, train: pd.DataFrame, width: int):
        users = train["user_idx"].to_numpy(np.int64)
        self._order = np.argsort(users, kind="stable")  # train is user-ordered; stable keeps time order
        self._train = train
        _, lengths = np.unique(users[self._order], return_counts=True)
        keep = np.repeat(lengths >= 2, lengths)
        self.width = width
        self.flat = torch.as_tensor(np.arange(1, len(users) + 1, dtype=np.int64)[keep])
        self.lengths = torch.as_tensor(lengths[lengths >= 2], dtype=torch.long)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths

    def column(self, name: str) -> torch.Tensor:
        """``train[name]`` indexed by row id: Tensor[n_rows + 1], entry 0 (what PAD reads) is 0."""
        values = self._train[name].to_numpy()[self._order]
        return torch.as_tensor(np.r_[np.zeros(1, values.dtype), values])

    def epoch_batches(self, batch_size: int, generator: torch.Generator, bucket: int = 16) -> Iterator[torch.Tensor]:
        """Yield LongTensor[b, w] row-id windows for one epoch, w <= width.

        Users are shuffled, then sorted by window length within groups of ``bucket`` batches,
        and the batches are shuffled again: each batch holds windows of similar length, so the
        columns that are padding in every row are cut off (attention cost grows with w²).
        """
        n = len(self.lengths)
        if n == 0:
            return
        kept = self.lengths.clamp(max=self.width)
        slack = self.lengths - kept
        start = (torch.rand(n, generator=generator) * (slack + 1)).long().clamp(max=slack)
        end = self.offsets + start + kept  # one past the window's last event, in flat
        order = torch.randperm(n, generator=generator)
        batches = [
            rows
            for group in order.split(batch_size * bucket)
            for rows in group[kept[group].argsort(stable=True)].split(batch_size)
        ]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            rows = batches[b]
            w = int(kept[rows].max())
            column = torch.arange(w)
            index = end[rows].unsqueeze(1) - w + column  # [b, w] flat positions
            real = column >= (w - kept[rows]).unsqueeze(1)
            yield torch.where(real, self.flat[index.clamp(min=0)], PAD)
