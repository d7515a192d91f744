"""`hfan demo` in a real browser: Debian's headless Chromium driven by Selenium against `hfan demo` in a subprocess.

Skipped with the reason where Chromium, its driver, Selenium or Gradio is missing; under CI=true (where `.ci/run` installs
them) a missing piece fails the test instead."""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from helpers.shared import shared_path, skip_or_fail

TREE = "data/videos/tree.avi"
TREE_FRAMES = 68


def _require(condition: bool, what: str) -> None:
    if not condition:
        skip_or_fail(f"the browser test needs {what}")


def _chromium() -> tuple[str, str]:
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    _require(browser is not None and driver is not None,
             "Chromium and its driver (apt-get install chromium chromium-driver)")
    for module in ("selenium", "gradio"):
        try:
            __import__(module)
        except ImportError:
            _require(False, f"the Python package {module} (pip install -e '.[demo,dev]')")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(condition, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    browser, driver = _chromium()
    workdir = tmp_path_factory.mktemp("demo")
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    log = open(workdir / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "hfan", "demo", "--port", str(port),
                               "--workdir", str(workdir / "jobs")], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"

    def up():
        if server.poll() is not None:
            raise AssertionError(f"hfan demo exited with {server.returncode}: {(workdir / 'server.log').read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        _wait_until(up, 120, f"hfan demo to answer on {url}")
        yield url, browser, driver, workdir
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture()
def page(demo_server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    url, browser, driver, _ = demo_server
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100",
                     "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        chrome.get(url)
        _wait_until(lambda: chrome.find_elements("css selector", "#upload input[type=file]"), 60, "the upload field")
        yield chrome
    finally:
        chrome.quit()


def _upload(chrome, path: Path) -> None:
    chrome.find_element("css selector", "#upload input[type=file]").send_keys(str(path))
    # The upload is done when the component lists the file with the server's link to it.
    _wait_until(lambda: chrome.find_elements("css selector", f'#upload td.filename[aria-label="{path.name}"]')
                and chrome.find_elements("css selector", "#upload a[href*='gradio_api/file=']"), 60, f"{path.name} to upload")


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_an_uploaded_clip_plays_as_an_h264_overlay_with_a_zip_of_one_mask_per_frame(page, tmp_path):
    import av

    chrome = page
    _upload(chrome, shared_path(TREE))
    chrome.find_element("css selector", "#run").click()
    source = _wait_until(
        lambda: chrome.execute_script("const v = document.querySelector('#overlay video'); return v && v.src"),
        300, "the overlay video in the page", poll=1)
    # Playing: autoplay started it and time advances.
    _wait_until(lambda: chrome.execute_script(
        "const v = document.querySelector('#overlay video'); return !v.paused && v.currentTime > 0.2 && !v.error"),
        30, "the overlay video to play")
    size = chrome.execute_script("const v = document.querySelector('#overlay video'); return [v.videoWidth, v.videoHeight]")
    assert size[0] > 0 and size[1] > 0
    chrome.save_screenshot(str(tmp_path / "demo.png"))
    assert (tmp_path / "demo.png").stat().st_size > 10_000

    # The video source the page plays is H.264 and every frame decodes.
    with av.open(io.BytesIO(_fetch(source))) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == TREE_FRAMES

    links = _wait_until(lambda: {a.get_attribute("href").rsplit("/", 1)[-1]: a.get_attribute("href")
                                 for a in chrome.find_elements("css selector", "#downloads a") if a.get_attribute("href")},
                        30, "the download links")
    assert {"masks.zip", "overlay.mp4", "cutout.mp4"} <= set(links), links
    with zipfile.ZipFile(io.BytesIO(_fetch(links["masks.zip"]))) as archive:
        pngs = [n for n in archive.namelist() if n.endswith(".png")]
    assert len(pngs) == TREE_FRAMES
    assert f"{TREE_FRAMES} frames" in chrome.find_element("css selector", "#summary").text


def test_a_file_that_is_not_a_video_is_a_message_in_the_page(page, tmp_path):
    chrome = page
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a video\n")
    _upload(chrome, notes)
    chrome.find_element("css selector", "#run").click()
    text = _wait_until(lambda: "cannot be opened as a video" in chrome.find_element("tag name", "body").text
                       and chrome.find_element("tag name", "body").text, 120, "the error message", poll=1)
    assert "notes.txt: cannot be opened as a video" in text, text
    assert "Traceback" not in text
    assert not chrome.execute_script("const v = document.querySelector('#overlay video'); return v && v.src")
