"""A run that writes its metrics as TensorBoard scalars (trainui example, see README.md).

Softmax regression with random Fourier features on a 2-D CSV (header ``x1,x2,label``), trained
with full-batch gradient descent in numpy; every few steps it writes ``loss`` and ``accuracy``
with tensorboardX (or, without it, ``torch.utils.tensorboard``) into ``$LOG_DIR/tb/train`` and
``$LOG_DIR/tb/val``, the learning rate into ``$LOG_DIR/tb``.

    DATA_DIR=examples/demo/data LOG_DIR=/tmp/logs python3 examples/tensorboard/model/train.py
    tensorboard --logdir /tmp/logs/tb      # the same curves, in a browser
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np


def summary_writer(folder: str):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            sys.exit("error: this example writes with tensorboardX: pip install tensorboardX")
    return SummaryWriter(folder, flush_secs=1)


def load(path: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f)][1:]
    table = np.array([row for row in rows if row], dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def features(x: np.ndarray, projection: np.ndarray) -> np.ndarray:
    z = x @ projection
    return np.concatenate([np.sin(z), np.cos(z), np.ones((len(x), 1))], axis=1)


def loss_accuracy(w: np.ndarray, f: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    logits = f @ w
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
    return loss, float(np.mean(p.argmax(axis=1) == y)), p


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=os.path.join(os.environ.get("DATA_DIR", "."), "spirals.csv")
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=5, help="steps between two points")
    parser.add_argument("--learning-rate", type=float, default=0.3)
    parser.add_argument("--delay", type=float, default=0.01, help="seconds after each point")
    args = parser.parse_args()

    x, y = load(args.data)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    val, train = order[: len(x) // 5], order[len(x) // 5 :]
    x = (x - x[train].mean(axis=0)) / x[train].std(axis=0)
    projection = rng.normal(0.0, 2.0, (x.shape[1], 128))
    f_train, f_val = features(x[train], projection), features(x[val], projection)
    classes = int(y.max()) + 1
    w = np.zeros((f_train.shape[1], classes))

    tb = os.path.join(os.environ.get("LOG_DIR", "logs"), "tb")
    writers = {name: summary_writer(os.path.join(tb, name)) for name in ("train", "val")}
    top = summary_writer(tb)
    for step in range(1, args.steps + 1):
        lr = args.learning_rate * (0.99 ** (step // 10))
        loss, accuracy, p = loss_accuracy(w, f_train, y[train])
        p[np.arange(len(train)), y[train]] -= 1.0
        w -= lr * f_train.T @ p / len(train)
        if step % args.every == 0 or step == args.steps:
            val_loss, val_accuracy, _ = loss_accuracy(w, f_val, y[val])
            for name, values in (("train", (loss, accuracy)), ("val", (val_loss, val_accuracy))):
                writers[name].add_scalar("loss", values[0], step)
                writers[name].add_scalar("accuracy", values[1], step)
            top.add_scalar("learning_rate", lr, step)
            print(
                f"step {step} loss {loss:.4f} val_loss {val_loss:.4f}"
                f" val_accuracy {val_accuracy:.3f}",
                flush=True,
            )
            time.sleep(args.delay)
    for writer in (*writers.values(), top):
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
