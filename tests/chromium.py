"""Headless Chromium driven over the DevTools protocol, for tests that look at a page as a person would.

`Chromium` starts Debian's `chromium` (or the browser named by the `CHROMIUM` environment variable) with a fresh
profile and no background networking. `Chromium.open(url)` returns a `Page`, which records every request, failed
load, JavaScript exception and console error while the test drives it. The protocol messages travel over the
`websocket-client` package. No browser is ever downloaded: without Chromium on the machine,
`find_chromium()` returns None and the tests that need it skip.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

# The flags a person would want for a clean, private, offline-friendly run; --remote-debugging-port=0 picks a
# free port, which Chromium writes to DevToolsActivePort in the profile folder.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    "Return the Chromium executable: $CHROMIUM, else `chromium` or `chromium-browser` on PATH, else None."
    named = os.environ.get("CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    "Terminate `process`, and kill it when it has not exited within `timeout` seconds."
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Chromium:
    "A headless Chromium with a temporary profile; use it as a context manager."

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 800, start_timeout: float = 60):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise FileNotFoundError("Chromium not found: install Debian's `chromium` package or set CHROMIUM.")
        self.width, self.height, self.start_timeout = width, height, start_timeout
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def __enter__(self) -> "Chromium":
        command = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                   f"--window-size={self.width},{self.height}", "about:blank"]
        self.log_path = self.profile.parent / f"{self.profile.name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None:
                raise RuntimeError(f"Chromium exited with status {self.process.returncode} at start; "
                                   f"its output is in {self.log_path}")
            if time.monotonic() > deadline:
                self.__exit__()
                raise TimeoutError(f"Chromium did not open its DevTools port within {self.start_timeout} s")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        return self

    def __exit__(self, *exception):
        if self.process and self.process.poll() is None:
            stop_process(self.process, timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, url: str, timeout: float = 60) -> "Page":
        "Open a new tab, load `url` in it, wait for its load event, and return the page."
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as answer:
            target = json.load(answer)
        page = Page(target["webSocketDebuggerUrl"], self.width, self.height)
        page.navigate(url, timeout)
        return page


class Page:
    "One browser tab: sends DevTools commands and keeps the events that tests check."

    def __init__(self, websocket_url: str, width: int, height: int):
        self._socket = websocket.create_connection(websocket_url, timeout=30, suppress_origin=True)
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        self.requests: dict[str, str] = {}  # request id -> URL
        self.failed: list[tuple[str, str]] = []  # (URL, reason) of loads that failed or returned status 4xx/5xx
        self.exceptions: list[str] = []  # uncaught JavaScript exceptions
        self.console_errors: list[str] = []
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def close(self):
        self._socket.close()

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exception):
        self.close()

    def _record(self, event: dict):
        self.events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.failed.append((self.requests.get(params["requestId"], "?"), params.get("errorText", "")))
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            self.failed.append((params["response"]["url"], f"HTTP {params['response']['status']}"))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.exceptions.append(details.get("exception", {}).get("description") or details.get("text", "?"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.console_errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.console_errors.append(params["entry"].get("text", ""))

    def _receive(self, timeout: float) -> dict | None:
        self._socket.settimeout(timeout)
        try:
            message = json.loads(self._socket.recv())
        except websocket.WebSocketTimeoutException:
            return None
        if "method" in message:
            self._record(message)
        return message

    def send(self, method: str, timeout: float = 60, **params) -> dict:
        "Send one DevTools command and return its result, recording the events that arrive meanwhile."
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._receive(max(0.1, deadline - time.monotonic()))
            if message and message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools command {method} failed: {message['error']}")
                return message.get("result", {})
        raise TimeoutError(f"DevTools command {method} got no answer within {timeout} s")

    def pump(self, seconds: float):
        "Record the events that arrive during `seconds`."
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._receive(max(0.05, deadline - time.monotonic()))

    def navigate(self, url: str, timeout: float = 60):
        "Load `url` and wait for its load event."
        seen = len(self.events)
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not any(event["method"] == "Page.loadEventFired" for event in self.events[seen:]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading within {timeout} s")
            self._receive(0.5)

    def evaluate(self, expression: str):
        "Evaluate a JavaScript expression in the page, await it when it is a promise, and return its value."
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.25):
        "Evaluate `expression` until it returns a true value, and return that value."
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"Waited {timeout} s for the page to satisfy: {expression}")
            self.pump(interval)

    def press(self, key: str, code: str, key_code: int, modifiers: int = 0):
        "Press and release one key; `modifiers` is the DevTools bit mask (1 Alt, 2 Ctrl, 4 Meta, 8 Shift)."
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=code, modifiers=modifiers,
                      windowsVirtualKeyCode=key_code, nativeVirtualKeyCode=key_code)

    def click(self, x: float, y: float):
        "Click the left mouse button at (x, y) in CSS pixels."
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        "Save a PNG of the visible part of the page at `path` and return the path."
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
