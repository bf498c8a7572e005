"""No benchmark test reads or writes a developer's results: the JSON results folder
(``$CINESYNC_RESULTS``, default ``~/.cache/cinesync/results``) and the Markdown summaries'
folder (``benchmarks/results/``) both point under the tests' temporary folder. Each test builds
its own inputs there or passes ``--out``/``--md-out`` of its own."""

import pytest

import benchmarks


@pytest.fixture(scope="package", autouse=True)
def results_outside_the_checkout(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark-results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CINESYNC_RESULTS", str(root / "results"))
        patch.setattr(benchmarks, "SUMMARIES", root / "summaries")
        yield root
