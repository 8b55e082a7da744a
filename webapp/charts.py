"""The page's Altair charts: emotions over time, each face's share of time per emotion, training history,
confusion."""

from __future__ import annotations

import altair as alt
import pandas as pd

from fer_realtime import EMOTIONS
from fer_realtime.evaluation.charts import MODEL_COLORS, stage_starts
from fer_realtime.faces.drawing import EMOTION_COLORS


def _hex(bgr: tuple[int, int, int]) -> str:
    b, g, r = bgr
    return f"#{r:02x}{g:02x}{b:02x}"


def _emotion_colors(classes: list[str]) -> alt.Scale:
    return alt.Scale(domain=classes, range=[_hex(EMOTION_COLORS.get(c, (255, 255, 0))) for c in classes])


def emotion_timeline_chart(shares, y_title: str = "mean probability over the faces"):
    classes = [str(c) for c in shares.columns]
    data = shares.reset_index().melt("time_s", var_name="emotion", value_name="probability")
    return (
        alt.Chart(data)
        .mark_line(point=len(shares) <= 60)
        .encode(
            x=alt.X("time_s:Q", title="time (s)"),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"),
                    title=y_title),
            color=alt.Color("emotion:N", scale=_emotion_colors(classes),
                            legend=alt.Legend(orient="bottom", direction="horizontal", title=None)),
            tooltip=[alt.Tooltip("time_s:Q", format=".2f", title="time (s)"), "emotion",
                     alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(title="Emotions over time", height=320)
    )


def label_share_chart(shares: dict[int, dict[str, float]]):
    """Each face's share of time per emotion: one stacked bar per face (track)."""
    data = pd.DataFrame([{"face": f"face {track}", "emotion": label, "share": share}
                         for track, labels in shares.items() for label, share in labels.items()])
    classes = [c for c in [*EMOTIONS, "uncertain"] if c in set(data["emotion"])]
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("share:Q", stack="normalize", axis=alt.Axis(format="%"), title="share of the face's time"),
            y=alt.Y("face:N", title=None, sort=[f"face {t}" for t in shares]),
            color=alt.Color("emotion:N", scale=_emotion_colors(classes), sort=classes,
                            legend=alt.Legend(orient="bottom", direction="horizontal", title=None)),
            order=alt.Order("emotion_order:Q"),
            tooltip=["face", "emotion", alt.Tooltip("share:Q", format=".0%")],
        )
        .transform_calculate(emotion_order=f"indexof({classes!r}, datum.emotion)")
        .properties(title="Share of time per emotion", height=alt.Step(26))
    )


def history_charts(rows: list[dict]):
    """Two charts, accuracy and loss per epoch: training (dashed) and held-out (solid), one colour per model."""
    long = []
    for row in rows:
        for metric in ("accuracy", "loss"):
            for split, key in (("training", f"train_{metric}"), ("held-out", f"heldout_{metric}")):
                if isinstance(row.get(key), (int, float)):
                    long.append({"model": row["model"], "epoch": row["epoch"], "metric": metric, "split": split,
                                 "value": row[key]})
    data = pd.DataFrame(long)
    models = list(dict.fromkeys(r["model"] for r in rows))
    color = alt.Color("model:N", scale=alt.Scale(domain=models,
                                                 range=[MODEL_COLORS.get(m, "#7f7f7f") for m in models]))
    base = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1), title="epoch"),
        color=color,
        strokeDash=alt.StrokeDash("split:N", scale=alt.Scale(domain=["held-out", "training"], range=[[1, 0], [5, 3]]),
                                  legend=None),  # said in the titles: a dashed-line legend draws no symbol
        tooltip=["model", "split", "epoch", alt.Tooltip("value:Q", format=".3f")],
    )
    subtitle = "solid: held-out · dashed: training"
    accuracy = base.transform_filter(alt.datum.metric == "accuracy").encode(
        y=alt.Y("value:Q", title="accuracy", scale=alt.Scale(domain=[0, 1]))
    )
    starts = stage_starts(rows)
    if starts:  # transfer learning: a dotted rule where each stage begins, named by what it unfreezes
        boundaries = pd.DataFrame([{**s, "at": s["epoch"] - 0.5, "label": s["stage"].replace("head + ", "+ ")}
                                   for s in starts])
        rules = alt.Chart(boundaries).mark_rule(strokeDash=[2, 3]).encode(
            x="at:Q", color=color, tooltip=["model", alt.Tooltip("stage:N", title="stage begins"), "epoch"])
        labels = alt.Chart(boundaries).mark_text(angle=270, align="left", dx=-4, dy=-4, fontSize=10).encode(
            x="at:Q", y=alt.value(300), text="label:N", color=color)
        accuracy = alt.layer(accuracy, rules, labels)
        subtitle += " · dotted: a transfer stage begins"
    accuracy = accuracy.properties(title=alt.Title("Accuracy", subtitle=subtitle))
    loss = base.transform_filter(alt.datum.metric == "loss").encode(
        y=alt.Y("value:Q", title="loss")
    ).properties(title=alt.Title("Loss", subtitle=subtitle))
    return [chart.configure_legend(orient="bottom", direction="horizontal") for chart in (accuracy, loss)]


def confusion_chart(result: dict, arch: str):
    classes = result.get("classes") or []
    matrix = result.get("confusion") or []
    data = pd.DataFrame([
        {"true": classes[i], "predicted": classes[j], "images": int(n),
         "share": n / max(1, sum(matrix[i]))}
        for i, row in enumerate(matrix) for j, n in enumerate(row)
    ])
    base = alt.Chart(data).encode(
        x=alt.X("predicted:N", sort=classes, title="predicted"),
        y=alt.Y("true:N", sort=classes, title="true"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), legend=None),
        tooltip=["true", "predicted", "images", alt.Tooltip("share:Q", format=".0%")],
    )
    text = base.mark_text(fontSize=11).encode(
        text="images:Q", color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")))
    return (cells + text).properties(title=f"{arch}: confusion (rows: true class)", height=alt.Step(26),
                                     width=alt.Step(40))
