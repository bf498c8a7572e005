"""No serving test reads or writes a developer's results: the JSON results folder
(``$CINESYNC_RESULTS``) and the serving benchmarks' Markdown summaries' folder
(``serving/benchmarks/results/``) both point under the tests' temporary folder."""

import pytest

import serving.benchmarks


@pytest.fixture(scope="package", autouse=True)
def results_outside_the_checkout(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving-benchmark-results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CINESYNC_RESULTS", str(root / "results"))
        patch.setattr(serving.benchmarks, "SUMMARIES", root / "summaries")
        yield root
