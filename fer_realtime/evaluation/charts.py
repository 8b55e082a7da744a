"""The comparison chart: accuracy per epoch of every model, training and held-out, in one figure."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

MODEL_COLORS = {"cnn": "#1f77b4", "rnn": "#d62728", "transfer": "#2ca02c"}


def stage_starts(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where a staged model (transfer learning) enters each stage after its first: {"model", "epoch" (the first epoch
    of the stage), "stage"} per boundary, for marking the charts."""
    starts = []
    for model in dict.fromkeys(r["model"] for r in rows):
        previous = None
        for row in sorted((r for r in rows if r["model"] == model), key=lambda r: r["epoch"]):
            stage = row.get("stage") or ""
            if stage and previous is not None and stage != previous:
                starts.append({"model": model, "epoch": row["epoch"], "stage": stage})
            previous = stage
    return starts


def comparison_figure(rows: Sequence[dict[str, Any]], title: str = "Accuracy per epoch"):
    """A matplotlib Figure from history rows (model, epoch, train_accuracy, heldout_accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.add_subplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    for i, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        epochs = [r["epoch"] for r in mine]
        color = MODEL_COLORS.get(model, f"C{i}")
        ax.plot(epochs, [r["heldout_accuracy"] for r in mine], "-o", color=color, ms=3, label=f"{model} held-out")
        ax.plot(epochs, [r["train_accuracy"] for r in mine], "--x", color=color, ms=4, alpha=0.7,
                label=f"{model} training")
    for start in stage_starts(rows):  # a dotted line where a stage begins, labelled with what it unfreezes
        color = MODEL_COLORS.get(start["model"], "0.4")
        ax.axvline(start["epoch"] - 0.5, color=color, ls=":", lw=1)
        ax.text(start["epoch"] - 0.45, 0.98, start["stage"].replace("head + ", "+ "), rotation=90, fontsize=7,
                color=color, va="top")
    all_epochs = sorted({r["epoch"] for r in rows})
    if 0 < len(all_epochs) <= 20:
        ax.set_xticks(all_epochs)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if models:
        ax.legend(loc="lower right", fontsize=8, ncols=max(1, len(models)))
    fig.tight_layout()
    return fig


def comparison_png(rows: Sequence[dict[str, Any]], title: str = "Accuracy per epoch") -> bytes:
    buffer = io.BytesIO()
    comparison_figure(rows, title).savefig(buffer, format="png")
    return buffer.getvalue()


def history_csv(rows: Sequence[dict[str, Any]]) -> str:
    import csv

    buffer = io.StringIO()
    columns = ["model", "epoch", "stage", "train_accuracy", "heldout_accuracy", "train_loss", "heldout_loss"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
