"""Are the T5 hybrid's explanations faithful to its score? (issue 13)

    python benchmarks/explanations.py                       # the synthetic default
    python benchmarks/explanations.py --encoder <local t5 folder> --name synthetic-default-t5-small
    python benchmarks/explanations.py --source movielens --path ../shared/data/ml-1m --name ml-1m-u2999 \
        --ratings-path ../shared/data/ml-1m/ratings.PARTIAL-users-1-2999.dat.gz \
        --item-text-path ../shared/data/melu-ml1m-movie-extrainfos/movies_extrainfos.dat.gz

The bar: removing the history item an explanation names lowers the recommended item's score in at
least 90% of sampled cases. ``t5_hybrid.explain`` names the item whose removal lowers the score
most, computed exactly, so the interesting numbers are beside it: how often two explanations a
simpler system would give are faithful to the same score —

- ``latest``: "because you just watched X" (the latest history item);
- ``most similar text``: the history item whose item-text embedding (all-MiniLM-L6-v2) is most
  cosine-similar to the recommended item's.

Each case: a test history of the pipeline split (``pipeline.steps``, as the model is fitted), its
top-1 recommendation (history excluded), the named item removed (every occurrence), re-scored.

No pretrained T5 can be installed offline: without ``--encoder`` the model is trained on the
encodings of a *randomly initialised* T5 encoder (t5-small's layout at d_model 64, saved under
``CINESYNC_HOME``). That measures the explanation mechanism, which does not depend on what the
encoder knows; it is not a content model and is reported as such.

Writes ``explanations-<name>-<device>.json`` to the results folder outside the checkout
(``benchmarks.results_dir()``) and a Markdown table to ``benchmarks/results/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere
import benchmarks as bench  # noqa: E402

bench.single_threaded()  # before torch loads

import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from models.content.item_text import DEFAULT_ENCODER, item_text  # noqa: E402
from models.content.t5_hybrid import _batch  # noqa: E402
from models.data import PAD  # noqa: E402
from models.device import pick_device  # noqa: E402
from pipeline import steps  # noqa: E402
from pipeline.paths import cinesync_home  # noqa: E402

RANDOM_T5_DIM = 64


def random_t5(folder: Path, texts: list[str]) -> str:
    """A randomly initialised T5 encoder (t5-small's layout, d_model 64, 2 blocks) with a
    word-level tokenizer over ``texts``, saved to ``folder`` once."""
    if (folder / "config.json").is_file():
        return str(folder)
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    specials = ["<pad>", "</s>", "<unk>"]
    splitter = pre_tokenizers.Whitespace()
    words = {w for text in [*texts, "genre themes mood :"] for w, _ in splitter.pre_tokenize_str(text)}
    vocab = {token: i for i, token in enumerate(specials + sorted(words - set(specials)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = splitter
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(vocab), d_model=RANDOM_T5_DIM, d_ff=4 * RANDOM_T5_DIM, num_layers=2, num_heads=4,
                      d_kv=RANDOM_T5_DIM // 4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)  # fmt: skip
    T5EncoderModel(config).save_pretrained(folder)
    return str(folder)


@torch.no_grad()
def faithful_shares(model, cases, text: torch.Tensor, n_samples: int, seed: int = 0) -> dict:
    """For sampled test histories: the top-1 recommendation, then for each way of naming a history
    item, whether removing it lowers that item's score. -> shares and counts."""
    histories = [[int(h) for h in seq if h != PAD] for seq in cases["history"]]
    histories = [h for h in histories if h]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(histories), size=min(n_samples, len(histories)), replace=False)
    unit = F.normalize(text.float(), dim=1)
    hits = {"explain()": 0, "latest": 0, "most similar text": 0}
    raising = []
    for history in (histories[i] for i in chosen):
        window = history[-model.history_length :] if model.history_length else history
        scores = model.score(_batch([history]))[0]
        scores[[PAD, *history]] = -math.inf
        item = int(scores.argmax())
        named = {
            "explain()": (model.explain(history, item, top=1)["history"] or [{"item": None}])[0]["item"],
            "latest": history[-1],
            "most similar text": window[int((unit[window] @ unit[item]).argmax())],
        }
        for how, pick in named.items():
            if pick is not None:
                without = [h for h in history if h != pick]
                hits[how] += bool(model.score(_batch([without or [PAD]]))[0, item] < scores[item])
        drops = model.explain(history, item, top=len(window))["history"]
        raising.append(len(drops) / len(set(window)))
    n = len(chosen)
    return {"n_cases": n, "faithful_share": {k: v / n for k, v in hits.items()},
            "mean_share_of_history_items_that_raise_the_score": float(np.mean(raising))}  # fmt: skip


def run(args) -> dict:
    device, options = pick_device(args.device), bench.data_options(args, "pipeline")
    tables, split = bench.prepare(options, args.name)
    encoder = args.encoder or random_t5(cinesync_home() / "random-t5" / tables.checksum[:16], item_text(split.data.items))
    overrides = {"encoder": encoder, **json.loads(args.models_config), "num_threads": args.threads}
    if not args.encoder:
        overrides.setdefault("text_dim", RANDOM_T5_DIM)
    row, model = bench.train_and_test("t5_hybrid", overrides, split, {}, device, {"dataset_sha256": tables.checksum, "data": asdict(options)})
    text = steps.build_side_inputs(["item_text_embeddings"], split.data.training_data(), text_encoder=args.text_encoder,
                                   cache_dir=Path(args.text_cache_dir))["item_text_embeddings"]  # fmt: skip
    started = time.perf_counter()
    measured = faithful_shares(model.cpu().eval(), split.test_cases, torch.as_tensor(text.matrix), args.samples)
    return {
        "dataset": args.name,
        "dataset_sha256": tables.checksum,
        "encoder": args.encoder or f"randomly initialised T5 encoder (d_model {RANDOM_T5_DIM}, 2 blocks): not a content model",
        "hardware": bench.hardware(device),
        "t5_hybrid": {k: v for k, v in row.items() if k not in ("test_ranks_by_user", "test_slices_by_user")},
        **measured,
        "measure_seconds": round(time.perf_counter() - started, 1),
    }


def markdown(result: dict) -> str:
    t = result["t5_hybrid"]
    lines = [f"**Explanation faithfulness on {result['dataset']}** (pipeline split, seed 0, sha256 "
             f"`{result['dataset_sha256'][:16]}…`; t5_hybrid with {result['encoder']}; {result['n_cases']} sampled test "
             "histories, each with its top-1 recommendation)", ""]
    lines += bench.table(["the history item named", "removing it lowers the score in"],
                         [[how, f"{share:.1%}"] for how, share in result["faithful_share"].items()])
    lines += [
        "",
        f"- bar: explain() ≥ 90%; on average {result['mean_share_of_history_items_that_raise_the_score']:.1%} of a "
        "history's distinct items raise the recommended item's score at all",
        f"- the model: test NDCG@10 {t['test']['all']['ndcg@10']:.4f} (cold items {t['test'].get('cold_item', {}).get('ndcg@10', float('nan')):.4f}), "
        f"best validation NDCG@10 {t['best_valid_ndcg@10']:.4f} at epoch {t['best_epoch']}, {t['train_seconds']} s",
        f"- command: `{result['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = bench.parser(__doc__, name="synthetic-default")
    parser.add_argument("--encoder", default=None, help="a local T5 folder (default: a random T5, see above)")
    parser.add_argument("--text-encoder", default=DEFAULT_ENCODER, help="the sentence encoder of 'most similar text'")
    parser.add_argument("--text-cache-dir", default=bench.SIDE_INPUT_CACHE)
    parser.add_argument("--models-config", default='{"dim": 32, "max_text_tokens": 96, "batch_size": 256, "max_epochs": 20, "patience": 3, "lr": 0.002}')
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args)
    result["command"] = bench.command_line("explanations.py", argv)
    stem = f"explanations-{args.name}-{result['hardware']['device'].split(':')[0]}"
    bench.write_report(args, stem, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
