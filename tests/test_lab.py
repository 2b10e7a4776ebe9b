"""JupyterLab as a learner uses it: a headless server on 127.0.0.1, a notebook run from the keyboard in Chromium,
`helpers` imported in its kernel and an ipywidgets slider drawn on the page."""
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import helpers
from chromium import Chromium, find_chromium, stop_process

REPOSITORY = Path(__file__).resolve().parents[1]
SCREENSHOT = REPOSITORY / "build" / "test-artifacts" / "lab" / "widget-slider.png"

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="Chromium not found; install Debian's chromium package (make test does)")

SLIDER_CELL = """import helpers
import ipywidgets

print("helpers", helpers.__version__, "from", helpers.__file__)
ipywidgets.IntSlider(value=3, min=1, max=10, description="epochs")"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_slider_notebook(path: Path):
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "slider", "metadata": {}, "outputs": [],
                   "source": SLIDER_CELL}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook))


class JupyterLab:
    "A JupyterLab server on 127.0.0.1 with a random port and token, and its settings in temporary folders."

    def __init__(self, root: Path, state: Path):
        self.root, self.state = root, state
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "JupyterLab":
        folders = {name: self.state / name for name in ("config", "data", "runtime", "ipython", "settings", "workspaces")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            # The kernel is the server's own Python ("python3"), so it imports the `helpers` installed there.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "JUPYTER_CONFIG_DIR": str(folders["config"]), "JUPYTER_DATA_DIR": str(folders["data"]),
            "JUPYTER_RUNTIME_DIR": str(folders["runtime"]), "IPYTHONDIR": str(folders["ipython"]),
        }
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                   "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={folders['settings']}",
                   f"--LabApp.workspaces_dir={folders['workspaces']}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI containers run as root, and JupyterLab refuses root without it
        self.log_path = self.state / "jupyterlab.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + 120
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                pytest.fail(f"JupyterLab did not start; its log:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as answer:
                return answer.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def kernel_states(self) -> list[str]:
        "Return the execution state of each running session's kernel, as the server reports it."
        with urllib.request.urlopen(f"{self.url}/api/sessions?token={self.token}", timeout=10) as answer:
            return [session["kernel"]["execution_state"] for session in json.load(answer)]

    def __exit__(self, *exception):
        if not self.process or self.process.poll() is not None:
            return
        request = urllib.request.Request(f"{self.url}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {self.token}"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
            self.process.wait(timeout=30)
        except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
            stop_process(self.process, timeout=15)


def test_lab_runs_widget_from_keyboard(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    write_slider_notebook(root / "slider.ipynb")

    with JupyterLab(root, tmp_path / "jupyter") as lab, Chromium(width=1280, height=900) as browser:
        page = browser.open(f"{lab.url}/lab/tree/slider.ipynb?token={lab.token}", timeout=120)
        with page:
            editor = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputArea-editor"
            page.wait_for(f"document.querySelector('{editor}') !== null", timeout=120)
            page.wait_for(f"document.querySelector('{editor}').innerText.includes('IntSlider')", timeout=60)
            # Keys pressed while the page is still connecting to the kernel are lost, so wait until the
            # server reports an idle kernel and the notebook's toolbar shows it.
            deadline = time.monotonic() + 120
            while lab.kernel_states() != ["idle"]:
                assert time.monotonic() < deadline, f"the kernel did not start: {lab.kernel_states()}"
                page.pump(0.5)
            page.wait_for("document.querySelector('.jp-Notebook-ExecutionIndicator[data-status=\"idle\"]') !== null", timeout=60)
            box = page.evaluate(f"JSON.parse(JSON.stringify(document.querySelector('{editor}').getBoundingClientRect()))")
            page.click(box["left"] + 40, box["top"] + box["height"] / 2)
            page.press("Enter", "Enter", 13, modifiers=8)  # Shift+Enter: run the cell

            try:
                page.wait_for("document.querySelector('.jp-OutputArea .widget-slider') !== null", timeout=180)
            except TimeoutError:
                page.screenshot(SCREENSHOT.with_name("widget-slider-timeout.png"))
                raise
            page.pump(1)
            output = page.evaluate("document.querySelector('.jp-OutputArea').innerText")
            screenshot = page.screenshot(SCREENSHOT)

            assert f"helpers {helpers.__version__} from {helpers.__file__}" in output, output
            assert page.evaluate("document.querySelector('.jp-OutputArea .widget-slider .widget-readout').innerText.trim()") == "3"
            assert page.evaluate("document.querySelector('.jp-OutputArea .widget-label').innerText.trim()") == "epochs"
            remote = [url for url in page.requests.values()
                      if not url.startswith((lab.url, "data:", "blob:", f"ws://127.0.0.1:{lab.port}"))]
            assert remote == [], f"JupyterLab requested addresses off this machine: {remote}"
            assert page.exceptions == [], page.exceptions
            assert screenshot.stat().st_size > 10_000
