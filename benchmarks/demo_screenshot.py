"""The README's picture of `hfan demo`: the app with the default model's result on the bundled sample clip.

Starts `hfan demo` on a free localhost port, ticks the sample clip in headless Chromium (Debian's `chromium` and
`chromium-driver`, through Selenium), runs it and saves the page. Needs the `demo` extra and Selenium.

    python benchmarks/demo_screenshot.py --out docs/demo.png
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

WIDTH = 1400  # window width, CSS pixels


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    parser.add_argument("--seek", type=float, default=1.6, help="overlay time shown, seconds (default 1.6)")
    args = parser.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen([sys.executable, "-m", "hfan", "demo", "--port", str(port), "--workdir", workdir],
                                  env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))

        def up():
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return True
            except OSError:
                return False

        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WIDTH},1500",
                         "--autoplay-policy=no-user-gesture-required", "--hide-scrollbars", "--mute-audio"):
            options.add_argument(argument)
        try:
            wait_until(up, 120, url)
            chrome = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            try:
                chrome.get(url)
                wait_until(lambda: chrome.find_elements("css selector", "#sample input[type=checkbox]"), 60, "the page")
                chrome.find_element("css selector", "#sample input[type=checkbox]").click()
                chrome.find_element("css selector", "#run").click()
                wait_until(lambda: chrome.execute_script(
                    "const v = document.querySelector('#overlay video'); return v && v.src && v.readyState >= 2"),
                    600, "the result")
                chrome.execute_script(f"const v = document.querySelector('#overlay video'); v.pause(); "
                                      f"v.currentTime = {args.seek};")
                time.sleep(2)
                page = Image.open(io.BytesIO(chrome.get_screenshot_as_png())).convert("RGB")
                # Down to the end of the downloads box: the footer and the white below it are not the app.
                bottom = chrome.execute_script(
                    "const r = document.querySelector('#downloads').getBoundingClientRect(); return r.bottom")
                page = page.crop((0, 0, page.width, min(page.height, int(bottom * page.width / WIDTH) + 16)))
            finally:
                chrome.quit()
        finally:
            server.terminate()
            server.wait(20)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.tmp.png")
    page.save(temporary, optimize=True)
    temporary.replace(args.out)
    print(f"{args.out}: {page.width}x{page.height}")


if __name__ == "__main__":
    main()
