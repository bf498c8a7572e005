"""The traced single-row scorer (serving.inference): the scores of ``score`` for one unpadded
history, and None where a family does not opt in or its trace would score differently."""

import pytest
import torch
from torch import nn

from models.data import HistoryBatch
from models.registry import FAMILIES, build_model, trainable_families
from serving.inference import example_history, single_row_scorer
from tests.conftest import tiny_config

N_ITEMS = 40
# every family of the registry that opts in to a trace, at its test size with two layers
TINY = {
    family: tiny_config(family, side_input_width=8, dim=8, n_layers=2, max_len=50)
    for family in trainable_families()
    if getattr(FAMILIES[family].module, "single_row_trace", False)
}


def _score(model, items, timestamps):
    with torch.inference_mode():
        return model.score(HistoryBatch(items, timestamps, torch.zeros(1, dtype=torch.long)))


@pytest.mark.parametrize("family", TINY)
def test_the_trace_scores_histories_of_any_length_as_score_does(family):
    torch.manual_seed(0)
    model = build_model(family, N_ITEMS, TINY[family]).eval()
    scorer = single_row_scorer(model, N_ITEMS)
    assert scorer is not None
    for length in (3, 9, 33, 50, 80):  # none of them the lengths it was traced or checked on
        items, timestamps = example_history(length, N_ITEMS, seed=7)
        window = model.history_length or length
        items, timestamps = items[:, -window:], timestamps[:, -window:]
        with torch.inference_mode():
            torch.testing.assert_close(scorer(items, timestamps), _score(model, items, timestamps), rtol=1e-5, atol=1e-5)


def test_a_family_that_does_not_opt_in_gets_none():
    assert single_row_scorer(build_model("popularity", N_ITEMS, {}).eval(), N_ITEMS) is None


class Branchy(nn.Module):
    """Opts in, but its score branches on the data: a trace would fix one branch."""

    single_row_trace = True
    history_length = None

    def score(self, batch):
        scores = torch.zeros(len(batch.items), N_ITEMS + 1)
        return scores + 1.0 if int(batch.items.shape[1]) > 10 else scores


def test_a_trace_that_scores_differently_is_refused_with_a_warning():
    with pytest.warns(UserWarning, match="no traced single-row scorer.*serving uses score"):
        assert single_row_scorer(Branchy().eval(), N_ITEMS) is None


def test_an_ensemble_blends_its_members_traced_scores_as_score_does():
    from models.ensemble import Ensemble

    torch.manual_seed(0)
    members = {"sasrec": build_model("sasrec", N_ITEMS, TINY["sasrec"]).eval(), "popularity": build_model("popularity", N_ITEMS, {}).eval()}
    with torch.no_grad():
        members["popularity"].counts.copy_(torch.arange(N_ITEMS + 1, dtype=members["popularity"].counts.dtype))
    ensemble = Ensemble.from_members(members, {"sasrec": 0.7, "popularity": 0.3}).eval()
    scorer = single_row_scorer(ensemble, N_ITEMS)
    assert scorer is not None
    for length in (4, 70):  # the second longer than SASRec's window: the member gets it cut
        items, timestamps = example_history(length, N_ITEMS, seed=3)
        with torch.inference_mode():
            torch.testing.assert_close(scorer(items, timestamps), _score(ensemble, items, timestamps), rtol=1e-5, atol=1e-5)
    assert single_row_scorer(Ensemble.from_members({"popularity": members["popularity"]}, {"popularity": 1.0}), N_ITEMS) is None
