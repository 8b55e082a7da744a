"""Remake the screenshots the docs use (docs/images/*.png) from the running app, in headless Chromium.

    .venv/bin/python scripts/screenshots.py [--only live,photos,training] [--out docs/images]

Starts `streamlit run streamlit_app.py` on a free port (its models, runs and uploads folders in a temporary folder,
so nothing is written into the repository), gives Chromium a fake camera that plays scikit-image's astronaut
portrait, and opens the tabs:
- live.png: the Live tab streaming the portrait, once the face comes back with its box, emotion and confidence;
- photos.png: the Photos tab with one photo of the astronaut and FER2013 `val/` faces (the astronaut alone when
  ../shared/datasets/fer2013 is absent);
- training.png: the Training tab's accuracy-per-epoch chart after a short run (a CNN from scratch, and transfer
  learning from the page's default base, ImageNet EfficientNet-Lite0, its stages marked) on a small sample of
  FER2013 (or generated faces without it).
Each PNG is optimised (and reduced to 256 colours if still over 300 KB). Needs the dev requirements (playwright)
and Debian's chromium. Takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser_support import (
    FAKE_CAMERA_ARGS,
    StreamlitServer,
    app_page,
    choose_option,
    chromium_browser,
    faces_figure,
    grab_received_frame,
    main_area,
    overlay_evidence,
    portrait_face_box,
    portrait_frame,
    press_stream_button,
    show_tab,
    sidebar,
    wait_until_idle,
    webrtc_frame,
    write_y4m,
)

FER2013 = ROOT.parent / "shared" / "datasets" / "fer2013"
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
VIEWPORT = {"width": 1280, "height": 800}
MAX_BYTES = 300_000


def save_png(png: bytes, path: Path) -> None:
    """Write a screenshot optimised; reduced to a 256-colour palette when it is still large."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.save(path, optimize=True)
    for method in (Image.Quantize.MEDIANCUT, Image.Quantize.FASTOCTREE):
        if path.stat().st_size <= MAX_BYTES:
            break
        image.quantize(colors=256, method=method, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({path.stat().st_size / 1024:.0f} KB)")


# ------------------------------------------------------------------------------------------------------------------
# What the page is given
# ------------------------------------------------------------------------------------------------------------------


def group_photo() -> np.ndarray:
    """The astronaut beside a grid of FER2013 `val/` faces, one per emotion, each with grey room around it (the
    detectors look for a head, not a tight crop). Per emotion, faces are tried in file order: the first one the
    shipped model reads as that emotion, alone and then in the whole photo as the Photos tab searches it (every
    scale), is kept; the astronaut alone without FER2013."""
    from helpers import astronaut_bgr

    astronaut = cv2.resize(astronaut_bgr(), (560, 560), interpolation=cv2.INTER_AREA)
    if not (FER2013 / "val").is_dir():
        return astronaut
    import streamlit_webrtc  # noqa: F401  (before TensorFlow: see webapp.resources.ml_runtime)

    from fer_realtime import EmotionRecognizer
    from fer_realtime.faces.detectors import still_image_options

    recognizer = EmotionRecognizer(detector=still_image_options("mediapipe"))
    emotions = ("happy", "surprise", "angry", "sad", "neutral", "fear")

    def tiles_of(emotion):
        for path in sorted((FER2013 / "val" / emotion).glob("*.jpg"))[:60]:
            tile = np.full((280, 280, 3), 150, np.uint8)
            tile[50:230, 50:230] = cv2.resize(cv2.imread(str(path)), (180, 180), interpolation=cv2.INTER_CUBIC)
            faces = recognizer.analyze(tile)
            if len(faces) == 1 and faces[0].label == emotion and faces[0].confidence >= 0.6:
                yield tile

    def compose(tiles):
        blank = np.full((280, 280, 3), 150, np.uint8)
        grid = np.vstack([np.hstack([tiles[i] if i < len(tiles) else blank for i in range(r, r + 3)])
                          for r in range(0, len(tiles), 3)])
        canvas = np.full((max(560, grid.shape[0]), 560 + grid.shape[1], 3), 150, np.uint8)
        canvas[:560, :560] = astronaut
        canvas[: grid.shape[0], 560:] = grid
        return canvas

    sources = {e: tiles_of(e) for e in emotions}
    chosen = {e: next(sources[e], None) for e in emotions}
    for _ in range(6):  # a face found alone may be missed, or read otherwise, among the others: try the next one
        shown = [e for e in emotions if chosen[e] is not None]
        found = {}
        for face in recognizer.analyze(compose([chosen[e] for e in shown])):
            x, y, w, h = face.box
            cx, cy = x + w / 2 - 560, y + h / 2
            if cx >= 0:
                found[int(cy // 280) * 3 + int(cx // 280)] = face.label
        wrong = [e for i, e in enumerate(shown) if found.get(i) != e]
        if not wrong:
            break
        for e in wrong:
            chosen[e] = next(sources[e], None)
    return compose([chosen[e] for e in emotions if chosen[e] is not None])


def training_sample(folder: Path, train_per_class: int = 250, val_per_class: int = 50) -> Path:
    """A small class-folder dataset: FER2013 `train/` and `val/` faces picked at random (fixed seed), or generated
    faces without FER2013."""
    if not (FER2013 / "train").is_dir():
        from helpers import write_train_val

        return write_train_val(folder, train_per_class=20)
    rng = random.Random(0)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for emotion in EMOTIONS:
            files = sorted((FER2013 / split / emotion).glob("*.jpg"))
            (folder / split / emotion).mkdir(parents=True, exist_ok=True)
            for path in rng.sample(files, min(count, len(files))):
                shutil.copy(path, folder / split / emotion / path.name)
    return folder


# ------------------------------------------------------------------------------------------------------------------
# The tabs
# ------------------------------------------------------------------------------------------------------------------


def live_shot(browser, url: str, out: Path) -> None:
    camera = portrait_frame()
    with app_page(browser, url, **VIEWPORT) as page:
        press_stream_button(page, "START")
        video = webrtc_frame(page).locator("video")
        video.wait_for(state="attached", timeout=60_000)
        deadline, labelled = time.monotonic() + 120, 0
        while time.monotonic() < deadline and labelled < 6:  # a few frames in a row: the figures are drawn too
            received = grab_received_frame(video)
            evidence = overlay_evidence(received, camera, portrait_face_box(), _colors()) if received is not None else None
            ok = (evidence is not None and (faces_figure(page) or 0) >= 1
                  and evidence["best_color_pixels"] >= 250 * evidence["size"][0] * evidence["size"][1] / (640 * 480))
            labelled = labelled + 1 if ok else 0
            time.sleep(0.5)
        if labelled < 6:
            raise SystemExit("the live stream never showed a labelled face")
        page.locator('[data-testid="stTable"]').filter(has_text="track id").first.wait_for(timeout=30_000)
        time.sleep(2)
        save_png(page.screenshot(), out / "live.png")
        press_stream_button(page, "STOP")


def _colors() -> dict:
    from fer_realtime.faces.drawing import EMOTION_COLORS

    return EMOTION_COLORS


def photos_shot(browser, url: str, out: Path) -> None:
    ok, png = cv2.imencode(".png", group_photo())
    assert ok
    with app_page(browser, url, **VIEWPORT) as page:
        uploader = sidebar(page).locator('[data-testid="stFileUploader"]').filter(has_text="Photos")
        wait_until_idle(page)
        uploader.locator('input[type="file"]').set_input_files(
            [{"name": "faces.png", "mimeType": "image/png", "buffer": png.tobytes()}])
        show_tab(page, "Photos")
        main = main_area(page)
        main.locator('[data-testid="stImage"] img').first.wait_for(timeout=180_000)
        main.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
        wait_until_idle(page)
        time.sleep(2)
        save_png(page.screenshot(), out / "photos.png")


def _fill(page, label: str, value: str) -> None:
    box = main_area(page).get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_until_idle(page)


def training_shot(browser, url: str, out: Path, dataset: Path, epochs: int, archs: tuple[str, ...]) -> None:
    with app_page(browser, url, **VIEWPORT) as page:
        show_tab(page, "Training")
        main = main_area(page)
        _fill(page, "Dataset path", str(dataset))
        main.get_by_role("button", name="Load", exact=True).click()
        wait_until_idle(page)
        main.locator('[data-testid="stTable"]').filter(has_text="total").first.wait_for(timeout=120_000)
        wait_until_idle(page)
        models = main.locator('[data-testid="stMultiSelect"]').filter(has_text="Models")
        models.wait_for()
        for _ in range(4):  # the wanted models only (a rerun landing while the list is open closes it: look again)
            tags = {t.get_attribute("aria-label").split(" —")[0]: t for t in models.locator("[data-tag]").all()}
            extra = [a for a in tags if a not in archs]
            missing = [a for a in archs if a not in tags]
            if extra:
                models.get_by_role("button", name=f"Remove {tags[extra[0]].get_attribute('aria-label')}").click()
            elif missing:
                models.get_by_role("combobox").click()
                try:
                    page.get_by_role("option").filter(has_text=f"{missing[0]} —").click(timeout=10_000)
                except Exception:
                    pass
                page.keyboard.press("Escape")
            else:
                break
            wait_until_idle(page)
        _fill(page, "Epochs", str(epochs))
        choose_option(page, "Batch size", "32")
        augmentation = main.locator(".st-key-train_augment")
        if augmentation.locator("input").is_checked():  # off: a short run on a small sample learns more without it
            augmentation.locator("label").first.click()
            wait_until_idle(page)
        _fill(page, "Run name", f"{' vs '.join(archs)}, {epochs} epochs on a FER2013 sample")
        main.get_by_role("button", name="Start training").click()
        chart = main.locator('img[alt="Comparison chart: accuracy per epoch of every model"]')
        main.get_by_text("Finished in").wait_for(timeout=900_000)
        chart.wait_for(timeout=60_000)
        wait_until_idle(page)
        chart.scroll_into_view_if_needed()
        page.mouse.wheel(0, 200)  # the chart's title and the results table's top in view
        time.sleep(2)
        save_png(page.screenshot(), out / "training.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="live,photos,training", help="comma-separated: live, photos, training")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--epochs", type=int, default=10, help="of the training run shown (default 10)")
    parser.add_argument("--archs", default="cnn,transfer", help="the models of the training run shown (default "
                        "cnn,transfer: from scratch, and from ImageNet EfficientNet-Lite0)")
    args = parser.parse_args(argv)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fer-screenshots-") as tmp:
        tmp = Path(tmp)
        env = {"FER_REALTIME_RUNS_DIR": str(tmp / "runs" / "training"), "FER_REALTIME_MODELS_DIR": str(tmp / "models"),
               "FER_REALTIME_UPLOADS_DIR": str(tmp / "runs" / "uploads")}
        camera = write_y4m(tmp / "portrait.y4m", portrait_frame(), frames=30)
        dataset = training_sample(tmp / "fer2013_sample") if "training" in wanted else None
        server = StreamlitServer(tmp / "streamlit.log", env=env)
        try:
            server.wait_until_serving(timeout=120)
            with chromium_browser(*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera}") as browser:
                if "live" in wanted:
                    live_shot(browser, server.url, args.out)
                if "photos" in wanted:
                    photos_shot(browser, server.url, args.out)
                if "training" in wanted:
                    training_shot(browser, server.url, args.out, dataset, args.epochs, tuple(args.archs.split(",")))
        except BaseException:
            print(server.log(), file=sys.stderr)
            raise
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
