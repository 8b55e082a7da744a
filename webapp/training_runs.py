"""Training runs on the page: the active run's live progress and every stored run's results (state in files,
see fer_realtime.training.jobs)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from fer_realtime import FerError
from fer_realtime.core.atomic import write_json_atomic
from fer_realtime.evaluation.charts import comparison_figure, comparison_png, history_csv
from fer_realtime.training.jobs import ACTIVE_STATES, cancel_run, list_runs, run_status

from .charts import confusion_chart, history_charts
from .settings import AppPaths
from .text import clock_time, duration, percent

logger = logging.getLogger(__name__)

SHOW_RUN = "train_show_run"  # session state: the run folder the Results selector should show next


def run_label(status: dict) -> str:
    state = status.get("state", "?")
    state = "in progress" if state in ACTIVE_STATES else state  # the label is not redrawn as the run goes on
    return f"{status.get('name') or status.get('run_id')} · {state} · {clock_time(status.get('created'))}"


def progress_view(status: dict, run_dir: Path) -> None:
    state = status.get("state")
    name, phase = status.get("name") or status.get("run_id"), status.get("phase") or "starting the worker"
    st.markdown(f"**{name}** — {state}: {phase}")
    progress = status.get("progress") or {}
    if progress:
        arch, epoch, epochs = progress.get("arch", "?"), progress.get("epoch", 0), max(1, progress.get("epochs", 1))
        batch, batches = progress.get("batch", 0), max(1, progress.get("batches", 1))
        index, archs = progress.get("arch_index", 0), max(1, progress.get("archs", 1))
        within_epoch = batch / batches if batch else 1.0  # batch 0: the epoch just ended
        done = (index + (epoch - 1 + within_epoch) / epochs) / archs
        stage = f" ({progress['stage']})" if progress.get("stage") else ""
        text = (f"{arch} — epoch {epoch}/{epochs}, batch {batch or batches}/{batches}{stage} · "
                f"model {index + 1} of {archs}")
        st.progress(min(1.0, max(0.0, done)), text=text)
    else:
        st.progress(0.0, text=status.get("phase") or "starting the training process…")
    started = status.get("started") or status.get("created")
    figures = []
    if isinstance(started, (int, float)):
        figures.append(f"running for {duration(time.time() - started)}")
    if status.get("n_train") is not None:
        figures.append(f"{status['n_train']} training images, {status.get('n_heldout', 0)} held out")
    if status.get("pca"):
        figures.append(f"PCA keeps {status['pca'].get('components')} components")
    if figures:
        st.caption(" · ".join(figures))
    # Cancel comes before the charts: this view is redrawn every second, and a redraw interrupts the one before;
    # on a loaded machine the charts could take that second, and a button drawn after them never showed.
    if (run_dir / "cancel").exists():
        st.info("Cancelling: the run stops after the current batch.")
    elif st.button("Cancel", key="train_cancel", help="Stop this run; models finished before now are kept."):
        cancel_run(run_dir)
        st.info("Cancelling: the run stops after the current batch.")
    rows = status.get("history") or []
    if rows:
        for column, chart in zip(st.columns(2), history_charts(rows)):
            column.altair_chart(chart, width="stretch", height=380)
    else:
        st.caption("The loss and accuracy chart fills in as epochs finish.")


@st.fragment(run_every=1.0)
def live_progress(run_dir: str) -> None:
    """Redrawn every second from the run's files, without rerunning the rest of the page."""
    status = run_status(Path(run_dir))
    if status.get("state") not in ACTIVE_STATES:
        # the run ended: rerun the whole page so its results and the new models (sidebar) appear
        st.session_state[SHOW_RUN] = run_dir
        st.rerun(scope="app")
    progress_view(status, Path(run_dir))


def _results_table(status: dict):
    rows = []
    for arch, result in (status.get("results") or {}).items():
        row = {"model": arch, "held-out accuracy": percent(result.get("heldout_accuracy"))}
        for name, figures in (result.get("per_class") or {}).items():
            row[f"recall {name}"] = percent(figures.get("recall"))
        row["training time"] = duration(result.get("seconds"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("model") if rows else None


def _download_data(run_dir: Path, status: dict) -> dict[str, bytes]:
    """The run's exports: the files the worker wrote when it finished, else built from its history so far."""
    rows = status.get("history") or []
    exports = {}
    for name in ("comparison.png", "history.json", "history.csv"):
        try:
            exports[name] = (run_dir / name).read_bytes()
        except OSError:
            if not rows:
                continue
            if name == "comparison.png":
                exports[name] = comparison_png(rows, f"{status.get('name', '')}: accuracy per epoch")
            elif name == "history.csv":
                exports[name] = history_csv(rows).encode()
            else:
                exports[name] = json.dumps({"heldout": status.get("heldout"), "rows": rows}, indent=1).encode()
    return exports


def _use_model(path: str) -> None:
    st.session_state["model"] = path  # the sidebar's Model selector (a callback runs before the widget exists)


def _outcome(status: dict) -> None:
    state = status.get("state")
    if state == "failed":
        st.error(status.get("error") or "The run failed without saying why; see worker.log in its folder.")
    elif state == "cancelled":
        st.warning("This run was cancelled; the models it had finished are listed below.")
    else:
        started, finished = status.get("started"), status.get("finished")
        timed = isinstance(started, (int, float)) and isinstance(finished, (int, float))
        took = f" in {duration(finished - started)}" if timed else ""
        st.success(f"Finished{took}.")
    facts = [f"dataset `{status.get('dataset', '?')}`"]
    if status.get("n_train") is not None:
        facts.append(f"{status['n_train']} training images")
    if status.get("heldout"):
        facts.append(f"held out: {status.get('n_heldout', '?')} images of {status['heldout']}")
    config = status.get("config") or {}
    if config:
        facts.append(f"{config.get('epochs')} epochs, batch {config.get('batch_size')}, "
                     f"augmentation {'on' if config.get('augment') else 'off'}")
    st.caption(" · ".join(facts))
    if status.get("pca"):
        pca = status["pca"]
        st.markdown(f"**PCA:** {pca.get('components')} components kept, retaining "
                    f"{percent(pca.get('variance_retained'))} of the training images' variance.")


def _figures(status: dict, run_dir: Path) -> None:
    rows = status.get("history") or []
    results = status.get("results") or {}
    if rows:
        figure = comparison_figure(rows, f"{status.get('name') or status.get('run_id')}: accuracy per epoch")
        st.pyplot(figure, width=820, alt="Comparison chart: accuracy per epoch of every model")
    table = _results_table(status)
    if table is not None:
        st.markdown("**Final held-out accuracy, per-class recall and training time**")
        st.table(table)
        charts = st.columns(min(3, len(results)))
        for i, (arch, result) in enumerate(results.items()):
            if result.get("confusion"):
                charts[i % len(charts)].altair_chart(confusion_chart(result, arch), width="content")
        notes = [f"{arch}: {note}" for arch, result in results.items() for note in result.get("notes") or []]
        if notes:
            st.markdown("**Notes**\n" + "\n".join(f"- {n}" for n in notes))
    exports = _download_data(run_dir, status)
    if exports:
        cols = st.columns(3)
        mimes = {"comparison.png": "image/png", "history.json": "application/json", "history.csv": "text/csv"}
        labels = {"comparison.png": "Chart (PNG)", "history.json": "History (JSON)", "history.csv": "History (CSV)"}
        for col, name in zip(cols, [n for n in mimes if n in exports]):
            col.download_button(labels[name], exports[name], file_name=f"{status.get('run_id', 'run')}-{name}",
                                mime=mimes[name], key=f"download_{name}", on_click="ignore", icon="⬇️")


def _model_choices(status: dict, paths: AppPaths) -> None:
    results = status.get("results") or {}
    if not results:
        return
    st.markdown("**Use the result**")
    for arch, result in results.items():
        path = result.get("model_path")
        if not path:
            continue
        in_models_dir = Path(path).parent.resolve() == paths.models.resolve()
        listed = f"{paths.models_label}/{Path(path).name}" if in_models_dir else path
        if Path(path).is_file():
            cols = st.columns([4, 1])
            cols[0].markdown(
                f"`{arch}` was saved to `{path}`; it is listed in the sidebar's **Model** selector as "
                f"`{listed}` — the Live tab and the sidebar photos use the model selected there."
            )
            current = st.session_state.get("model") == path
            cols[1].button("In use" if current else f"Use {arch}", key=f"use_{arch}", on_click=_use_model,
                           args=(path,), disabled=current)
        else:
            st.markdown(f"`{arch}` was saved to `{path}`, which no longer exists.")


SCORECARD_FILE = "scorecard.json"


def _scorecard(status: dict, run_dir: Path) -> None:
    """The figures that decide whether a model ships, for this run's models beside the shipped one: measured on
    request (about a minute per model on a CPU) and kept in the run's folder."""
    from fer_realtime.evaluation.scorecard import ScorecardData, score_models, scorecard_table

    models = [r["model_path"] for r in (status.get("results") or {}).values() if Path(r.get("model_path", "")).is_file()]
    if not models:
        return
    st.markdown("**Scorecard against the shipped model**")
    saved = run_dir / SCORECARD_FILE
    card = None
    if saved.is_file():
        try:
            card = json.loads(saved.read_text())
        except (OSError, ValueError):
            card = None
    data = ScorecardData.under()
    if card is None:
        if data.val is None and data.ckplus is None:
            st.caption("The scorecard needs FER2013's val/ and CK+48 in the datasets folder (`FER_REALTIME_DATASETS`, "
                       "default `shared/datasets` beside the repository); neither is there.")
            return
        if not st.button("Measure the scorecard", key=f"scorecard_{run_dir.name}",
                         help="val/ with the original and the FER+ labels, CK+48, cost per face, and McNemar's "
                              "test of each model against the shipped one; about a minute per model."):
            return
        try:
            with st.spinner("Reading every face of the scorecard's sets with each model…"):
                card = score_models(models, data, speed_runs=20).to_dict()
        except FerError as exc:
            st.error(str(exc))
            return
        write_json_atomic(saved, card)
    st.table(pd.DataFrame(scorecard_table(card)).set_index("figure"))
    st.caption(f"CPU: {card.get('cpu', '?')}. Paired: faces only this model reads right / only the shipped model "
               "does, and McNemar's exact p. The same figures as `fer-realtime scorecard MODEL ...`.")


def results_view(status: dict, run_dir: Path, paths: AppPaths) -> None:
    if status.get("state") in ACTIVE_STATES:
        st.info("This run is still training: its progress is shown above, its results appear here when it ends.")
        return
    _outcome(status)
    _figures(status, run_dir)
    _scorecard(status, run_dir)
    _model_choices(status, paths)


def results_section(paths: AppPaths) -> None:
    runs = list_runs(paths.runs)
    if not runs:
        st.caption(f"No training runs yet (they are kept in `{paths.runs}`).")
        return
    by_dir = {r["run_dir"]: r for r in runs}
    wanted = st.session_state.pop(SHOW_RUN, None)
    if wanted in by_dir:
        st.session_state["train_run_choice"] = wanted
    choice = st.selectbox("Run", list(by_dir), format_func=lambda d: run_label(by_dir[d]), key="train_run_choice",
                          help="Every run started here, newest first; pick an earlier one to compare.")
    try:
        results_view(by_dir[choice], Path(choice), paths)
    except Exception as exc:  # a hand-edited or half-written status must not break the page
        logger.exception("showing the run %s failed", choice)
        st.error(f"The results of this run could not be shown ({type(exc).__name__}: {exc}).")
