"""The live page with FER_REALTIME_SERVE_URL pointing at a model server that is not there: the stream goes on with
the local model, and the page says so (the model server's own tests are in test_serving.py)."""

from __future__ import annotations

import pytest

from browser_support import (
    FAKE_CAMERA_ARGS,
    app_page,
    assert_no_traceback,
    chromium_browser,
    main_area,
    needs_browser,
    portrait_frame,
    press_stream_button,
    running_server,
    wait_for_live,
    write_y4m,
)
from serve_support import free_port


@pytest.fixture(scope="module")
def server_without_model_server(tmp_path_factory):
    env = {"FER_REALTIME_SERVE_URL": f"http://127.0.0.1:{free_port()}"}
    with running_server(tmp_path_factory.mktemp("server") / "streamlit.log", env=env, timeout=60) as server:
        yield server


@needs_browser
def test_the_live_page_falls_back_to_the_local_model_and_says_so(server_without_model_server, tmp_path):
    camera = write_y4m(tmp_path / "portrait.y4m", portrait_frame(), frames=30)
    with chromium_browser(*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera}") as browser, \
            app_page(browser, server_without_model_server.url) as page:
        press_stream_button(page, "START")
        status = wait_for_live(page, lambda s: (s["faces"] or 0) >= 1 and s["frames"] >= 30,
                               what="faces classified by the local model")
        assert "local fallback" in status["device"], status
        main = main_area(page)
        main.get_by_text("the local model classifies meanwhile").first.wait_for(timeout=10_000)
        assert main.locator('[data-testid="stMetric"]').filter(has_text="Dropped").count() == 1
        assert_no_traceback(page, "live page with an unreachable model server")
        press_stream_button(page, "STOP")
