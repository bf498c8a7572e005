"""The epoch loop every neural sequence family shares (SASRec, BERT4Rec, TAT-TV, ...).

A family supplies three things: its config (read for the fields below), a function that yields
one epoch of CPU batches from a seeded generator, and a function that turns a batch into a loss.
The loop owns the rest: AdamW, optional bf16 autocast on CUDA and ``torch.compile``, validation
NDCG@10 through the shared evaluator, early stopping, keeping the best weights, atomic
checkpoints with every random state (so a resumed run is bit-identical to an uninterrupted one),
progress bars and the per-epoch callback.

Config fields read: n_items, lr, weight_decay, batch_size, max_epochs, patience, eval_every, seed,
num_threads, eval_batch_size, max_len, and optionally mixed_precision ("bf16" | "none") and
compile (bool).

The popularity floor: patience does not end a run whose best validation NDCG@10 is still below
popularity's on the same validation cases (training counts, the history excluded; computed once
here), the baseline every model is reported against. Such a run goes on until it passes the floor
and then runs out of patience, or until ``max_epochs``. Patience values that suit the synthetic
default (a model passes popularity within a few epochs there) stop slow starters on real data
otherwise: on ml-latest-small BERT4Rec stopped at epoch 19 of a possible 200, below popularity.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from models.data import TrainingData
from models.interface import EpochLog, FitReport

CHECKPOINT_NAME = "checkpoint.pt"
Batch = Any  # a tensor or a tuple of tensors, on the CPU


def train_loop(
    model: nn.Module,
    data: TrainingData,
    device: torch.device | str,
    *,
    name: str,
    epoch_batches: Callable[[torch.Generator], Iterable[Batch]],
    batch_loss: Callable[[Batch], torch.Tensor],
    progress: bool = True,
    on_epoch: Callable[[EpochLog], None] | None = None,
    checkpoint_dir: Path | None = None,
) -> FitReport:
    """Train ``model`` until validation NDCG@10 stops improving; leave the best weights loaded.

    ``epoch_batches(generator)`` yields one epoch of batches (shuffled with ``generator``, which
    the loop seeds and checkpoints); ``batch_loss(batch_on_device)`` returns a scalar loss.
    ``patience`` counts evaluations without a strictly better validation NDCG@10. Validation
    ranks by ``model.validation_score`` where the model has one, else by ``model.score``.
    """
    from models.metrics import evaluate

    cfg = model.config
    device = torch.device(device)
    start = time.perf_counter()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    loss_fn = training_loss(cfg, batch_loss)
    bf16 = getattr(cfg, "mixed_precision", "none") == "bf16" and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext
    valid_cases = data.valid_cases
    validation_score = getattr(model, "validation_score", model.score)
    floor = popularity_floor(data, cfg.n_items) if len(valid_cases) else -math.inf

    state = {"epoch": 0, "best_epoch": -1, "best_metric": -math.inf, "best_state": None,
             "bad_evals": 0, "stopped_early": False, "history": []}  # fmt: skip
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["shuffle_rng"])
        torch.set_rng_state(saved["torch_rng"])
        if device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        state = saved["fit"]

    bar = tqdm(range(state["epoch"], cfg.max_epochs), initial=state["epoch"], total=cfg.max_epochs,
               desc=name, disable=not progress)  # fmt: skip
    for epoch in bar:
        if state["stopped_early"]:
            break
        tick = time.perf_counter()
        model.train()
        total, n_batches = 0.0, 0
        for batch in epoch_batches(generator):
            batch = _to(batch, device)
            with autocast():
                loss = loss_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().float()
            n_batches += 1
        train_loss = float(total / max(n_batches, 1))

        valid: dict[str, float] = {}
        last = epoch + 1 == cfg.max_epochs
        if len(valid_cases) and ((epoch + 1) % cfg.eval_every == 0 or last):
            model.eval()
            # fp32 scoring (no autocast): bf16 rounding would create ties, which rank against the target
            result = evaluate(validation_score, valid_cases, cfg.n_items, device=device,
                              batch_size=cfg.eval_batch_size, max_len=model.history_length)  # fmt: skip
            valid = {k: float(v) for k, v in result.metrics["all"].items()}
            if valid["ndcg@10"] > state["best_metric"]:
                state.update(best_metric=valid["ndcg@10"], best_epoch=epoch, bad_evals=0)
                state["best_state"] = _cpu_copy(model.state_dict())
            else:
                state["bad_evals"] += 1
                out_of_patience = state["bad_evals"] >= cfg.patience
                state["stopped_early"] = out_of_patience and state["best_metric"] >= floor
                if out_of_patience and not state["stopped_early"] and not state.get("below_floor_said"):
                    state["below_floor_said"] = True
                    print(f"{name}: out of patience at epoch {epoch} but validation NDCG@10 {state['best_metric']:.4f} is below "
                          f"popularity's {floor:.4f}: training goes on (up to max_epochs {cfg.max_epochs})", flush=True)  # fmt: skip
        elif not len(valid_cases):  # nothing to choose on: the latest epoch is the best
            state.update(best_epoch=epoch, best_state=_cpu_copy(model.state_dict()))

        log = EpochLog(epoch, train_loss, valid, time.perf_counter() - tick)
        state["history"].append({"epoch": log.epoch, "train_loss": log.train_loss,
                                 "valid": dict(log.valid), "seconds": log.seconds})  # fmt: skip
        state["epoch"] = epoch + 1
        bar.set_postfix(loss=f"{train_loss:.4f}", ndcg10=f"{state['best_metric']:.4f}")
        if on_epoch is not None:
            on_epoch(log)
        if checkpoint is not None:
            cuda = device.type == "cuda"
            _save_atomically(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "shuffle_rng": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if cuda else None,
                    "fit": state,
                },
                checkpoint,
            )
    bar.close()

    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    epochs = [EpochLog(**h) for h in state["history"]]
    best = next((e for e in epochs if e.epoch == state["best_epoch"]), None)
    return FitReport(
        epochs=epochs,
        best_epoch=max(state["best_epoch"], 0),
        best_valid=dict(best.valid) if best else {},
        wall_seconds=time.perf_counter() - start,
        stopped_early=state["stopped_early"],
        popularity_floor=None if math.isinf(floor) else floor,
    )


def popularity_floor(data: TrainingData, n_items: int) -> float:
    """Validation NDCG@10 of the popularity family fitted on ``data`` (training counts; each
    case's history excluded): the floor early stopping does not stop below."""
    from models.general.popularity import Popularity, PopularityConfig

    report = Popularity(PopularityConfig(n_items)).fit(data, "cpu", progress=False)
    return float(report.best_valid["ndcg@10"])


def training_loss(cfg: Any, batch_loss: Callable[[Batch], torch.Tensor]) -> Callable[[Batch], torch.Tensor]:
    """The loss the loop trains on: ``batch_loss`` itself, or ``torch.compile(batch_loss)`` when
    the config asks for ``compile``."""
    return torch.compile(batch_loss) if getattr(cfg, "compile", False) else batch_loss


def _to(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return type(batch)(_to(part, device) for part in batch)


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _save_atomically(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
