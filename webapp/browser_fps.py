"""The frames/s the browser actually receives: a small script beside the live figures that counts the frames the
live video element presents (requestVideoFrameCallback, else the decoded-frame counter) in streamlit-webrtc's
iframe, and shows them once a second. It reads the page it sits in (same origin), and sends nothing back."""

from __future__ import annotations

import streamlit as st

RECEIVED_FPS_LABEL = "Browser receives"

_SCRIPT = """
<div id="fps" style="font-family: 'Source Sans Pro', sans-serif; font-size: 14px; color: #31333F;">
  LABEL: waiting for video…</div>
<script>
const out = document.getElementById("fps");
let counted = 0, video = null, since = performance.now(), previous = null;
function findVideo() {
  for (const frame of window.parent.document.querySelectorAll("iframe")) {
    if (!(frame.title || "").includes("webrtc")) continue;
    try { const v = frame.contentDocument.querySelector("video"); if (v) return v; } catch (e) {}
  }
  return null;
}
function onFrame() { counted += 1; video.requestVideoFrameCallback(onFrame); }
setInterval(() => {
  const now = performance.now();
  const found = findVideo();
  if (found !== video) {
    video = found; counted = 0; previous = null; since = now;
    if (video && video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
  }
  if (!video || video.paused || video.readyState < 2) { out.textContent = "LABEL: no video"; return; }
  let frames = counted;
  if (!video.requestVideoFrameCallback && video.getVideoPlaybackQuality) {
    const total = video.getVideoPlaybackQuality().totalVideoFrames;
    frames = previous === null ? 0 : total - previous;
    previous = total;
  }
  const fps = frames / ((now - since) / 1000);
  counted = 0; since = now;
  out.textContent = "LABEL: " + fps.toFixed(1) + " frames/s";
}, 1000);
</script>
""".replace("LABEL", RECEIVED_FPS_LABEL)


def received_fps_meter() -> None:
    """Render the meter (once per script run, outside any placeholder that is redrawn). The HTML is this module's
    own constant, never user input: st.iframe runs it with same-origin access, which the meter needs."""
    st.iframe(_SCRIPT, height=28)
