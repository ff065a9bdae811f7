"""Demo training run for trainui: a small numpy MLP that learns to tell three spirals apart.

Reads a CSV (header ``x1,x2,label``) from $DATA_DIR, trains a one-hidden-layer network with
mini-batch gradient descent on the CPU, prints one progress line per epoch, and writes the
trained weights to $RESULT_DIR/model.npz and a summary to $RESULT_DIR/metrics.json. Each
epoch's loss and accuracy, on the training and the validation rows, also go to
$LOG_DIR/metrics.jsonl (one JSON object a line), where trainui reads them while the run trains
and draws their curves. If $CHECKPOINT_DIR is set, a checkpoint is written there every few
epochs, and a checkpoint found there at the start (a resumed run, a restarted attempt) is
where training goes on from. Each epoch is followed by a short pause (--epoch-delay, 0.05 s)
so the progress is easy to watch in trainui.

    DATA_DIR=examples/demo/data RESULT_DIR=/tmp/r python3 examples/demo/model/train.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_FILE = "spirals.csv"


class DataError(Exception):
    """The training data is missing or unreadable."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a small numpy MLP on a 2-D CSV dataset.")
    p.add_argument("--data", help=f"CSV file to train on (default: $DATA_DIR/{DEFAULT_FILE})")
    p.add_argument("--epochs", type=int, default=30, help="passes over the data (default: 30)")
    p.add_argument(
        "--learning-rate", type=float, default=0.1, help="initial step size (default: 0.1)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="mini-batch size (default: 8)")
    p.add_argument("--hidden", type=int, default=256, help="hidden units (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--checkpoint-every", type=int, default=5, help="epochs between checkpoints (default: 5)"
    )
    p.add_argument(
        "--epoch-delay",
        type=float,
        default=0.05,
        help="seconds to pause after each epoch, so the run is easy to watch (default: 0.05)",
    )
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "hidden", "checkpoint_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.learning_rate <= 0:
        p.error("--learning-rate must be positive")
    if args.epoch_delay < 0:
        p.error("--epoch-delay must not be negative")
    return args


def data_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    data_dir = os.environ.get("DATA_DIR")
    if not data_dir:
        raise DataError("no training data: pass --data FILE or set DATA_DIR")
    return Path(data_dir) / DEFAULT_FILE


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"training data not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or header[-1].strip() != "label":
                raise DataError(f"{path}: expected a header row ending in 'label'")
            rows = [row for row in reader if row]
        table = np.array(rows, dtype=np.float64)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: cannot read training data ({e})") from e
    if table.ndim != 2 or len(table) < 10:
        raise DataError(f"{path}: need at least 10 rows of numbers")
    x, y = table[:, :-1], table[:, -1]
    if np.any(y != np.round(y)) or y.min() < 0:
        raise DataError(f"{path}: labels must be whole numbers 0, 1, 2, ...")
    return x, y.astype(np.int64)


def describe_device() -> str:
    gpu_count = os.environ.get("GPU_COUNT", "")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible in ("", "-1") or gpu_count == "0":
        where = "training on CPU"
    else:
        where = "GPUs visible, but numpy trains on the CPU"
    return f"GPU_COUNT={gpu_count or '-'} CUDA_VISIBLE_DEVICES={visible or '-'} ({where})"


def init_params(n_in: int, n_hidden: int, n_out: int, rng: np.random.Generator) -> dict:
    return {
        "w1": rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_hidden)),
        "b1": np.zeros(n_hidden),
        "w2": rng.normal(0.0, np.sqrt(1.0 / n_hidden), (n_hidden, n_out)),
        "b2": np.zeros(n_out),
    }


def forward(params: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hidden = np.maximum(x @ params["w1"] + params["b1"], 0.0)
    logits = hidden @ params["w2"] + params["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return hidden, probs


def evaluate(params: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    _, probs = forward(params, x)
    loss = -np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12))
    accuracy = np.mean(probs.argmax(axis=1) == y)
    return float(loss), float(accuracy)


def sgd_step(params: dict, x: np.ndarray, y: np.ndarray, lr: float) -> None:
    hidden, probs = forward(params, x)
    grad = probs
    grad[np.arange(len(y)), y] -= 1.0
    grad /= len(y)
    grad_hidden = (grad @ params["w2"].T) * (hidden > 0)
    params["w2"] -= lr * hidden.T @ grad
    params["b2"] -= lr * grad.sum(axis=0)
    params["w1"] -= lr * x.T @ grad_hidden
    params["b1"] -= lr * grad_hidden.sum(axis=0)


def save_npz(path: Path, params: dict, mean: np.ndarray, std: np.ndarray, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **params, mean=mean, std=std, epoch=np.array(epoch))
    tmp.replace(path)


def load_checkpoint(folder: str | None, params: dict) -> int:
    """The epoch a checkpoint in ``folder`` was written at, its weights put into ``params``;
    0 when there is none (or it does not fit this network)."""
    path = Path(folder) / "checkpoint.npz" if folder else None
    if path is None or not path.is_file():
        return 0
    try:
        with np.load(path) as saved:
            if any(saved[name].shape != value.shape for name, value in params.items()):
                print(f"{path} is of another network: starting from scratch", flush=True)
                return 0
            for name in params:
                params[name] = saved[name].copy()
            return int(saved["epoch"])
    except (OSError, KeyError, ValueError) as e:
        print(f"{path} cannot be read ({e}): starting from scratch", flush=True)
        return 0


def open_points(path: Path):
    """The metrics file trainui follows: one JSON object a line, appended and flushed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8")


def train(args: argparse.Namespace) -> int:
    path = data_path(args.data)
    x, y = load_csv(path)
    n_classes = int(y.max()) + 1
    print(f"trainui demo: {describe_device()}", flush=True)
    print(f"data: {path} ({len(x)} rows, {x.shape[1]} features, {n_classes} classes)", flush=True)

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(x))
    n_val = max(1, len(x) // 5)
    val_idx, train_idx = order[:n_val], order[n_val:]
    mean, std = x[train_idx].mean(axis=0), x[train_idx].std(axis=0) + 1e-8
    x = (x - mean) / std
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]

    params = init_params(x.shape[1], args.hidden, n_classes, rng)
    result_dir = Path(os.environ.get("RESULT_DIR") or "results")
    checkpoint_dir = os.environ.get("CHECKPOINT_DIR")
    done = min(load_checkpoint(checkpoint_dir, params), args.epochs)
    if done:
        print(f"resumed from the checkpoint of epoch {done}", flush=True)
    started = time.monotonic()
    loss, accuracy = evaluate(params, x_train, y_train)
    log_dir = os.environ.get("LOG_DIR")
    points = open_points(Path(log_dir) / "metrics.jsonl") if log_dir else None
    for epoch in range(done + 1, args.epochs + 1):
        lr = args.learning_rate * (1.0 - 0.9 * (epoch - 1) / args.epochs)  # linear decay
        perm = rng.permutation(len(x_train))
        for start in range(0, len(perm), args.batch_size):
            batch = perm[start : start + args.batch_size]
            sgd_step(params, x_train[batch], y_train[batch], lr)
        loss, accuracy = evaluate(params, x_train, y_train)
        if not np.isfinite(loss):
            print(
                f"error: training diverged at epoch {epoch}; lower --learning-rate", file=sys.stderr
            )
            return 1
        val_loss, val_accuracy = evaluate(params, x_val, y_val)
        print(f"epoch {epoch}/{args.epochs} loss {loss:.4f} accuracy {accuracy:.3f}", flush=True)
        if points is not None:
            point = {"step": epoch, "loss": loss, "accuracy": accuracy}
            point.update(val_loss=val_loss, val_accuracy=val_accuracy)
            points.write(json.dumps(point) + "\n")
            points.flush()
        if checkpoint_dir and (epoch % args.checkpoint_every == 0 or epoch == args.epochs):
            save_npz(Path(checkpoint_dir) / "checkpoint.npz", params, mean, std, epoch)
        if args.epoch_delay and epoch < args.epochs:
            time.sleep(args.epoch_delay)

    val_loss, val_accuracy = evaluate(params, x_val, y_val)
    seconds = time.monotonic() - started
    if points is not None:
        points.close()
    print(f"validation loss {val_loss:.4f} accuracy {val_accuracy:.3f}", flush=True)

    save_npz(result_dir / "model.npz", params, mean, std, args.epochs)
    metrics = {
        "epochs": args.epochs,
        "loss": round(loss, 6),
        "accuracy": round(accuracy, 6),
        "val_loss": round(val_loss, 6),
        "val_accuracy": round(val_accuracy, 6),
        "train_rows": len(x_train),
        "val_rows": len(x_val),
        "classes": n_classes,
        "learning_rate": args.learning_rate,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "seconds": round(seconds, 3),
    }
    (result_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"saved {result_dir / 'model.npz'} and {result_dir / 'metrics.json'}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
