"""Runs one RecBole model (SASRec, BERT4Rec, LightGCN, NGCF) inside RecBole's own virtual
environment (``.venv-recbole``); started by ``benchmarks/peer_recbole.py``. From this project it
imports only the evaluator, ``models.metrics`` (numpy, pandas, pyarrow and torch: the venv has them).

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 .venv-recbole/bin/python benchmarks/recbole_worker.py spec.json

Reads ``<data_path>/<dataset>/<dataset>.inter`` (every user's sequence in OUR order, so RecBole's
leave-one-out cuts it where ours does) and ``sequences.json`` (``{raw user id: [raw item ids]}``:
to verify RecBole's targets and inputs, and the histories OUR protocol excludes). Trains with
RecBole's defaults plus the spec's overrides, records each epoch (RecBole's validation metrics,
ours, wall clock without our extra scoring), runs RecBole's own test (which reloads its pickled
checkpoint: hence the env var), then ranks every test user's target under OUR protocol (every
catalogue item but the input history is a candidate, the target always; rank = 1 + other
candidates scoring >= the target). After every epoch the whole training state goes to
``last.pth``; with ``spec["resume"]`` a restarted worker continues from it exactly.

Writes to ``spec["out_dir"]``: ``result.json`` (config, epochs, timings, checks, RecBole's
metrics), ``predictions.json`` (per test user: raw ids, rank, top-100) and ``test_scores.npz`` (the
score matrix, for an independent re-ranking by the project's evaluator).
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from logging import getLogger
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: our evaluator
try:
    from benchmarks import peak_rss_mib
    from models.metrics import exclusion_mask, metrics_from_ranks, target_ranks, top_k_items
except ImportError as error:  # a venv made before the worker used models.metrics has no pyarrow
    raise SystemExit(f"{error}: run `python benchmarks/peer_recbole.py setup` again") from error

# RecBole itself is imported inside build_config/main, so that ProtocolScorer (OUR ranking of a
# RecBole dataloader) can be unit-tested in the project's environment, where RecBole is not installed.

TOP_N = 100
GENERAL_MODELS = ("LightGCN", "NGCF")  # user-item models: no input sequence to check
# A file of this name in the out dir asks a running worker to stop after the current epoch's
# validation and test its best epoch so far (e.g. before a machine is taken away).
STOP_FILE = "STOP"


class StopRequested(Exception):
    def __init__(self, epoch: int):
        super().__init__(f"stop requested after epoch {epoch}")
        self.epoch = epoch


class ProtocolScorer:
    """Scores a RecBole full-sort dataloader under OUR protocol and checks targets and inputs."""

    def __init__(self, dataset, config, sequences: dict[str, list[str]]):
        self.uid_field = config["USER_ID_FIELD"]
        self.iid_field = config["ITEM_ID_FIELD"]
        self.seq_field = self.iid_field + config["LIST_SUFFIX"]
        self.len_field = config["ITEM_LIST_LENGTH_FIELD"]
        self.max_len = config["MAX_ITEM_LIST_LENGTH"]
        self.user_tokens = np.asarray(dataset.field2id_token[self.uid_field])
        self.item_tokens = np.asarray(dataset.field2id_token[self.iid_field])
        item_id = dataset.field2token_id[self.iid_field]
        # Internal item ids of each user's full sequence in OUR order.
        self.sequences = {str(u): [item_id[str(i)] for i in seq] for u, seq in sequences.items()}
        self.n_columns = dataset.item_num

    @torch.no_grad()
    def run(self, model, loader, stage: str, device) -> dict:
        """stage "valid": target = second-to-last item; "test": the last item."""
        cut = 2 if stage == "valid" else 1
        model.eval()
        users, targets_out, ranks_out, tops, score_rows = [], [], [], [], []
        target_mismatch = input_mismatch = 0
        for interaction, _, positive_u, positive_i in loader:
            scores = model.full_sort_predict(interaction.to(device)).view(-1, self.n_columns)
            scores = scores.float().cpu()
            user_tokens = self.user_tokens[interaction[self.uid_field].cpu().numpy()]
            # one target per row (leave-one-out); general models' loaders give rows per user
            # with positive_u saying which row each positive belongs to
            targets = torch.zeros(len(user_tokens), dtype=torch.long)
            targets[positive_u.cpu().long()] = positive_i.cpu().long()
            sequential = self.seq_field in interaction.columns  # general models read no sequence
            if sequential:
                seq_in = interaction[self.seq_field].cpu().numpy()
                seq_len = interaction[self.len_field].cpu().numpy()
            histories = []
            for row, user in enumerate(user_tokens):
                full = self.sequences[user]
                ours_target = full[-cut]
                history = full[:-cut]
                if int(targets[row]) != ours_target:
                    target_mismatch += 1
                if sequential and list(seq_in[row, : seq_len[row]]) != history[-self.max_len :]:
                    input_mismatch += 1
                histories.append(history)
            # OUR protocol (models.metrics): every column but 0 and the history, the target always;
            # rank = 1 + other candidates scoring >= the target; top lists with ties against the target
            exclude = exclusion_mask(histories, self.n_columns - 1)
            ranks = target_ranks(scores, targets, exclude)
            top = top_k_items(scores, exclude, targets, TOP_N, ranks=ranks)
            users.append(user_tokens)
            targets_out.append(targets.numpy())
            ranks_out.append(ranks.numpy())
            tops.append(top.numpy())
            score_rows.append(scores.numpy())
        ranks_np = np.concatenate(ranks_out) if ranks_out else np.zeros(0, dtype=np.int64)
        return {
            "users": np.concatenate(users) if users else np.zeros(0, dtype=object),
            "targets": np.concatenate(targets_out) if targets_out else np.zeros(0, dtype=np.int64),
            "ranks": ranks_np,
            "top": np.concatenate(tops) if tops else np.zeros((0, TOP_N), dtype=np.int64),
            "scores": np.concatenate(score_rows) if score_rows else None,
            "target_mismatch": target_mismatch,
            "input_mismatch": input_mismatch,
        }


def build_config(spec: dict):
    from recbole.config import Config

    config_dict = {
        "data_path": spec["data_path"],
        "checkpoint_dir": str(Path(spec["out_dir"]) / "saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        # RecBole's defaults for sequential models, written out so nothing depends on the name.
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "train_neg_sample_args": None,
        "MAX_ITEM_LIST_LENGTH": 50,
        "valid_metric": "NDCG@10",
        "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
        "topk": [10, 20],
        "eval_step": 1,
        "stopping_step": 10,
        "seed": spec["seed"],
        "reproducibility": True,
        "use_gpu": spec.get("device", "cpu") != "cpu",
        "gpu_id": "0" if spec.get("device", "cpu") != "cpu" else "",
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
    }
    if spec["model"] == "SASRec":
        config_dict["loss_type"] = "CE"
    if spec["model"] in GENERAL_MODELS:
        # graph models train on (user, item) pairs with RecBole's default negative sampling
        # (one uniform negative per pair); the same leave-one-out cuts the same .inter file
        del config_dict["train_neg_sample_args"]
    if spec.get("max_epochs"):
        config_dict["epochs"] = int(spec["max_epochs"])
    config_dict.update(spec.get("overrides", {}))
    return Config(model=spec["model"], dataset=spec["dataset"], config_dict=config_dict)


def main(spec_path: str) -> None:
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    spec = json.loads(Path(spec_path).read_text())
    out_dir = Path(spec["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    sequences = json.loads(Path(spec["sequences_path"]).read_text())
    started = time.time()

    config = build_config(spec)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    device = config["device"]
    model = get_model(config["model"])(config, train_data._dataset).to(device)
    logger.info(model)
    scorer = ProtocolScorer(dataset, config, sequences)
    prep_seconds = time.time() - started

    epochs: list[dict] = []
    resumes: list[dict] = []
    clock = {"fit_start": None, "overhead": 0.0, "offset": 0.0, "epoch": -1, "train_seconds": 0.0}
    base = get_trainer(config["MODEL_TYPE"], config["model"])
    # Which validation number RecBole's early stopping and best-epoch choice read: its own
    # (default, what a RecBole user gets) or our protocol's (history excluded), for a like-for-like run.
    select_key = "valid_ndcg@10" if spec.get("select_on", "recbole") == "ours" else "valid_ndcg@10_recbole"

    class RecordingTrainer(base):
        """RecBole's trainer, unchanged, plus a per-epoch record (our scoring is off the clock)."""

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            if clock["fit_start"] is None:
                clock["fit_start"] = time.time()
            t0 = time.time()
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
            clock["epoch"] = epoch_idx
            clock["train_seconds"] = time.time() - t0
            clock["loss"] = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            t0 = time.time()
            valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
            valid_end = time.time()
            ours = scorer.run(self.model, valid_data, "valid", self.device)
            ours_valid = metrics_from_ranks(ours["ranks"], ours["top"], scorer.n_columns - 1, ks=(10,))
            ndcg, hr = ours_valid["ndcg@10"], ours_valid["hr@10"]
            record = {
                "epoch": clock["epoch"],
                "train_loss": clock["loss"],
                "train_seconds": round(clock["train_seconds"], 2),
                "valid_seconds": round(valid_end - t0, 2),
                "elapsed_seconds": round(clock["offset"] + valid_end - clock["fit_start"] - clock["overhead"], 2),
                "wall_clock": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(valid_end)),
                "valid_ndcg@10_recbole": float(valid_score),
                "valid_result_recbole": {k: float(v) for k, v in valid_result.items()},
                "valid_ndcg@10": ndcg,
                "valid_hr@10": hr,
                "valid_target_mismatches": ours["target_mismatch"],
                "valid_input_mismatches": ours["input_mismatch"],
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "load_avg_1m": round(os.getloadavg()[0], 2),  # the machine may be shared
            }
            epochs.append(record)
            clock["overhead"] += time.time() - valid_end
            logger.info(
                f"[cinesync] epoch {record['epoch']}: train {record['train_seconds']}s, "
                f"RecBole valid NDCG@10 {valid_score:.4f}, our-protocol valid NDCG@10 {ndcg:.4f}, "
                f"elapsed {record['elapsed_seconds']}s"
            )
            (out_dir / "epochs.json").write_text(json.dumps(epochs, indent=1))
            return record[select_key], valid_result

    trainer = RecordingTrainer(config, model)
    last_path = out_dir / "last.pth"
    identity = {k: spec.get(k) for k in ("model", "dataset", "seed", "device", "max_epochs", "overrides")}
    if spec.get("select_on", "recbole") != "recbole":
        identity["select_on"] = spec["select_on"]

    def save_last(epoch_idx, valid_score):
        """After each validation (RecBole's callback): everything needed to continue exactly."""
        t0 = time.time()
        state = {
            "identity": identity,
            "epoch": epoch_idx,
            "finished": trainer.cur_step > trainer.stopping_step or epoch_idx + 1 >= trainer.epochs,
            "state_dict": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "cur_step": trainer.cur_step,
            "best_valid_score": trainer.best_valid_score,
            "best_valid_result": trainer.best_valid_result,
            "saved_model_file": trainer.saved_model_file,
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "train_loader": train_data.generator.get_state(),
            },
            "epochs": epochs,
            "resumes": resumes,
        }
        torch.save(state, last_path.with_suffix(".tmp"))
        os.replace(last_path.with_suffix(".tmp"), last_path)  # a kill never leaves half a file
        clock["overhead"] += time.time() - t0

    stop_path = out_dir / STOP_FILE

    def save_last_or_stop(epoch_idx, valid_score):
        save_last(epoch_idx, valid_score)
        if stop_path.exists():  # asked to stop: last.pth is saved, so a later run continues from here
            raise StopRequested(epoch_idx)

    finished = False
    stopped_after = None
    if spec.get("resume") and last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        if state["identity"] != identity:
            raise SystemExit(f"{last_path} belongs to another run ({state['identity']}); start fresh")
        trainer.model.load_state_dict(state["state_dict"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.start_epoch = state["epoch"] + 1
        trainer.cur_step = state["cur_step"]
        trainer.best_valid_score = state["best_valid_score"]
        trainer.best_valid_result = state["best_valid_result"]
        trainer.saved_model_file = state["saved_model_file"]
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        train_data.generator.set_state(state["rng"]["train_loader"])
        epochs.extend(state["epochs"])
        resumes.extend(state["resumes"])
        resumes.append({"after_epoch": state["epoch"], "wall_clock": time.strftime("%Y-%m-%dT%H:%M:%S")})
        clock["offset"] = epochs[-1]["elapsed_seconds"] if epochs else 0.0
        finished = state["finished"]
        logger.info(f"[cinesync] resumed after epoch {state['epoch']} (finished: {finished})")

    if finished:
        best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
    else:
        try:
            best_valid_score, best_valid_result = trainer.fit(
                train_data, valid_data, saved=True, show_progress=False, callback_fn=save_last_or_stop
            )
        except StopRequested as stop:
            # Test the best epoch so far; the result says the run was cut short, and the same
            # command later resumes training from last.pth (finished is still False there).
            stopped_after = stop.epoch
            stop_path.unlink(missing_ok=True)
            best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
            logger.info(f"[cinesync] stopped on request after epoch {stop.epoch}; testing the best epoch so far")
    fit_seconds = epochs[-1]["elapsed_seconds"] if epochs else 0.0
    # RecBole's own test step: reloads the best checkpoint (torch.load of a pickled Config).
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    logger.info(f"[cinesync] RecBole test result: {dict(test_result)}")

    ours = scorer.run(trainer.model, test_data, "test", device)
    item_tokens = scorer.item_tokens
    predictions = [
        {
            "user_id": int(user),
            "target_item_id": int(item_tokens[target]),
            "rank": int(rank),
            "top_item_ids": [int(item_tokens[i]) for i in top if i > 0],
        }
        for user, target, rank, top in zip(ours["users"], ours["targets"], ours["ranks"], ours["top"])
    ]
    (out_dir / "predictions.json").write_text(json.dumps(predictions))
    column_ids = np.array([0] + [int(t) for t in item_tokens[1:]], dtype=np.int64)
    np.savez_compressed(
        out_dir / "test_scores.npz",
        scores=ours["scores"].astype(np.float32),
        column_item_ids=column_ids,  # raw item id of each score column (0 = RecBole's padding)
        user_ids=np.array([int(u) for u in ours["users"]], dtype=np.int64),
    )

    # RecBole keeps the LAST epoch reaching the best score (its early stopping compares with >=).
    best = None
    if epochs:
        top_score = max(e[select_key] for e in epochs)
        best = [e for e in epochs if e[select_key] >= top_score][-1]
    n_test = len(ours["ranks"])
    n_expected = len(sequences)
    result = {
        "model": spec["model"],
        "recbole_config": {
            key: (value if isinstance(value, (int, float, str, bool, type(None), list, dict)) else str(value))
            for key, value in config.final_config_dict.items()
            if key in (
                "epochs", "train_batch_size", "learning_rate", "learner", "MAX_ITEM_LIST_LENGTH",
                "n_layers", "n_heads", "hidden_size", "inner_size", "hidden_dropout_prob",
                "attn_dropout_prob", "loss_type", "mask_ratio", "ft_ratio", "eval_step",
                "stopping_step", "valid_metric", "seed", "train_neg_sample_args", "eval_args",
                "weight_decay", "eval_batch_size", "device",
            )
        },
        "n_items_recbole": int(dataset.item_num - 1),
        "n_users_recbole": int(dataset.user_num - 1),
        "train_pairs": int(len(train_data._dataset)),
        "valid_cases": int(len(valid_data._dataset)),
        "test_cases": n_test,
        "expected_test_cases": n_expected,
        "test_target_mismatches": int(ours["target_mismatch"] + abs(n_expected - n_test)),
        "test_input_mismatches": int(ours["input_mismatch"]),
        "epochs": epochs,
        "epochs_run": len(epochs),
        "best_epoch": best["epoch"] if best else None,
        "selected_on": "our protocol" if select_key == "valid_ndcg@10" else "RecBole's metric",
        "best_valid_ndcg@10_recbole": best["valid_ndcg@10_recbole"] if best else float(best_valid_score),
        "best_valid_result_recbole": {k: float(v) for k, v in (best_valid_result or {}).items()},
        "best_valid_ndcg@10": best["valid_ndcg@10"] if best else None,
        "seconds_to_best_valid": best["elapsed_seconds"] if best else None,
        "seconds_per_epoch": round(float(np.mean([e["train_seconds"] + e["valid_seconds"] for e in epochs])), 2) if epochs else None,
        "train_seconds_per_epoch": round(float(np.mean([e["train_seconds"] for e in epochs])), 2) if epochs else None,
        "fit_seconds": round(fit_seconds, 1),
        "resumes": resumes,  # restarts after the process was killed; time lost to kills is excluded
        # Not None: training was cut short by a STOP file after this epoch (not RecBole's early
        # stopping), so the best epoch is the best so far, not RecBole's converged choice.
        "stopped_on_request_after_epoch": stopped_after,
        "prep_seconds": round(prep_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "test_result_recbole": {k: float(v) for k, v in test_result.items()},
        "environment": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "recbole": __import__("recbole").__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "device": str(device),
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"),
        },
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    if result["test_target_mismatches"]:
        raise SystemExit(
            f"RecBole's test targets differ from ours for {result['test_target_mismatches']} users "
            f"(see {out_dir / 'result.json'})"
        )
    logger.info(f"[cinesync] done: {out_dir / 'result.json'}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: recbole_worker.py SPEC.json | --check")
    if sys.argv[1] == "--check":  # `peer_recbole.py setup`: the imports above work in the venv
        print(f"recbole_worker: models.metrics from {sys.modules['models.metrics'].__file__}")
    else:
        main(sys.argv[1])
