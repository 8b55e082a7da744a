"""`./run_app.sh --https`: the page over TLS, so that a browser on another machine gets the camera.

The browser test starts the page as run_app.sh does after its setup step (`python -m webapp.https --https …`, with
the self-signed certificate made in tmp_path), checks the certificate is valid for 127.0.0.1, opens
`https://127.0.0.1:PORT` in headless Chromium (ignoring that the certificate is self-signed, as a person clicks
through the warning), streams Chromium's fake camera (the astronaut portrait) and waits for the face to come back
boxed and labelled. The page must be a secure context there and on the machine's network address, which is what
gives it the camera from another machine. The other tests check the certificate and the command line without a
browser.

Needs the `playwright` Python package and Debian's `chromium` (no `playwright install`); skipped otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser_support import (
    FAKE_CAMERA_ARGS,
    REPO_ROOT,
    StreamlitServer,
    assert_no_traceback,
    chromium_browser,
    free_port,
    needs_browser,
    portrait_frame,
    press_stream_button,
    require_model,
    wait_for_labelled_face,
    write_y4m,
)

sys.path.insert(0, str(REPO_ROOT))  # webapp/ sits beside fer_realtime/, not installed
from webapp import https  # noqa: E402

# ------------------------------------------------------------------------------------------------------------------
# The certificate and the command line, no browser
# ------------------------------------------------------------------------------------------------------------------


def test_self_signed_certificate_is_made_once_then_reused(tmp_path, monkeypatch):
    from cryptography import x509

    monkeypatch.setenv("FER_REALTIME_TLS_DIR", str(tmp_path / "tls"))
    cert, key, made = https.self_signed()
    assert made and cert.parent == tmp_path / "tls"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    before = cert.read_bytes()
    assert https.self_signed() == (cert, key, False)  # reused, not made again
    assert cert.read_bytes() == before
    cert.write_text("not a certificate")
    assert https.self_signed()[2]  # a broken one is made again


def test_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FER_REALTIME_TLS_DIR", str(tmp_path / "tls"))
    for name in ("FER_REALTIME_TLS_CERT", "FER_REALTIME_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    plain = https.streamlit_command(["--server.port", "8600"])
    assert plain[-2:] == ["--server.port", "8600"] and not any("ssl" in a for a in plain)

    command = https.streamlit_command(["--https", "--server.port=8600"])
    assert "--https" not in command and "--server.port=8600" in command
    assert command[command.index("--server.sslCertFile") + 1] == str(tmp_path / "tls" / "cert.pem")
    printed = capsys.readouterr().out
    assert ":8600" in printed and "not private" in printed and https.fingerprint(tmp_path / "tls" / "cert.pem") in printed

    cert, key = tmp_path / "real.pem", tmp_path / "real.key"
    cert.write_text("x"), key.write_text("y")
    command = https.streamlit_command(["--https", "--cert", str(cert), f"--key={key}"])
    assert command[-4:] == ["--server.sslCertFile", str(cert), "--server.sslKeyFile", str(key)]
    with pytest.raises(SystemExit, match="both --cert"):
        https.streamlit_command(["--https", "--cert", str(cert)])
    with pytest.raises(SystemExit, match="does not exist"):
        https.streamlit_command(["--cert", str(cert), "--key", str(tmp_path / "missing.key")])


def test_run_app_sh_sends_https_runs_through_the_launcher():
    script = (REPO_ROOT / "run_app.sh").read_text()
    assert "--https|--cert|--cert=*|--key|--key=*) exec .venv/bin/python -m webapp.https" in script


# ------------------------------------------------------------------------------------------------------------------
# In the browser
# ------------------------------------------------------------------------------------------------------------------


class HttpsServer(StreamlitServer):
    """`python -m webapp.https --https …` (what run_app.sh runs after its setup step) on a free port; its log and
    stop are StreamlitServer's."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.tls = folder / "tls"
        self.log_path = folder / "server.log"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FER_REALTIME_TLS_DIR": str(self.tls),
               "FER_REALTIME_MODELS_DIR": str(folder / "models"), "FER_REALTIME_RUNS_DIR": str(folder / "runs"),
               "FER_REALTIME_UPLOADS_DIR": str(folder / "uploads")}
        for name in ("FER_REALTIME_TLS_CERT", "FER_REALTIME_TLS_KEY"):
            env.pop(name, None)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webapp.https", "--https", "--server.headless", "true",
             "--server.port", str(self.port), "--server.fileWatcherType", "none"],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_until_serving(self, timeout: float = 90.0) -> None:
        """Until the health check answers over https, verified against the certificate made for this machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            if (self.tls / "cert.pem").exists():
                context = ssl.create_default_context(cafile=str(self.tls / "cert.pem"))
                try:
                    with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2, context=context) as answer:
                        if answer.status == 200:
                            return
                except ssl.SSLCertVerificationError:
                    raise
                except OSError:
                    pass
            time.sleep(0.3)
        raise RuntimeError(f"no https answer within {timeout:.0f} s:\n{self.log()}")


def _network_address() -> str | None:
    """An address of this machine other than loopback: what another machine would open."""
    _, addresses = https.host_addresses()
    usable = [a for a in addresses if not ipaddress.ip_address(a).is_loopback and ":" not in a]
    return usable[0] if usable else None


@needs_browser
def test_live_stream_over_https_shows_labelled_faces(tmp_path):
    require_model()
    camera_frame = portrait_frame()
    camera = write_y4m(tmp_path / "portrait.y4m", camera_frame, frames=30)
    server = HttpsServer(tmp_path)
    try:
        server.wait_until_serving()
        printed = server.log()
        assert f"https://localhost:{server.port}" in printed and "NET::ERR_CERT_AUTHORITY_INVALID" in printed, printed
        with pytest.raises(OSError):  # plain http is not served on that port
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/_stcore/health", timeout=5)

        with chromium_browser(*FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera}") as browser:
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
            try:
                page = context.new_page()
                page.set_default_timeout(60_000)
                page.goto(server.url)
                page.get_by_role("heading", name="fer-realtime").wait_for()
                assert page.evaluate("() => [location.protocol, window.isSecureContext, !!navigator.mediaDevices]") \
                    == ["https:", True, True]
                started = time.monotonic()
                press_stream_button(page, "START")
                evidence = wait_for_labelled_face(page, camera_frame, timeout=90)
                print(f"\nlabelled face over https after {time.monotonic() - started:.1f} s: {evidence}")
                page.screenshot(path=str(tmp_path / "https_live.png"))
                print(f"screenshot: {tmp_path / 'https_live.png'}")
                assert_no_traceback(page, server.log())

                address = _network_address()
                if address:  # what a laptop on the network opens: a secure context too, so the camera is offered
                    other = context.new_page()
                    other.goto(f"https://{address}:{server.port}")
                    other.get_by_role("heading", name="fer-realtime").wait_for()
                    assert other.evaluate("() => [window.isSecureContext, !!navigator.mediaDevices]") == [True, True]
            finally:
                context.close()
    finally:
        server.stop()
