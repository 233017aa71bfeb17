"""A real ``mlflow server`` and a real headless Chromium, for the UI test and the screenshots.

No browser driver and no extra Python package: Chromium is driven through the DevTools
protocol over ``--remote-debugging-pipe`` (JSON messages ending in NUL on file descriptors
3 and 4 of the browser), which needs nothing but the standard library.

Used by ``tests/test_ui.py`` and ``scripts/screenshots.py``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

# Debian's package; other distributions name the binary differently.
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# The flags the issue asks for, plus what keeps a headless run quiet and self-contained.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
    # Anything not on the loopback goes to a closed port: the page can reach the local
    # server only (Chromium bypasses the proxy for the hosts listed here).
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1;localhost",
]

# A user's environment may carry a proxy: the local server must be reached directly.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def find_chromium() -> Optional[str]:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------
# mlflow server
# ---------------------------------------------------------------------------


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 (a free port) over an existing backend store.

    Runs logged to a SQLite store with a local artifact root record absolute ``file://``
    artifact URIs; the server reads those directly for ``/artifacts/list`` and
    ``/get-artifact``, so no ``--default-artifact-root`` is needed to serve them.
    """

    def __init__(self, backend_uri: str, workdir: Path, env: Optional[dict] = None,
                 port: Optional[int] = None, startup_timeout: float = 90):
        self.backend_uri = backend_uri
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env if env is not None else os.environ)
        self.env.update({
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "PYTHONUNBUFFERED": "1",
        })
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.startup_timeout = startup_timeout
        self.log_path = self.workdir / f"mlflow-server-{self.port}.log"
        self.proc: Optional[subprocess.Popen] = None
        self.startup_seconds: Optional[float] = None

    def start(self) -> "MlflowServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
        ]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = t0 + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with _DIRECT.open(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"mlflow server not healthy after {self.startup_timeout:.0f}s:\n"
                    f"{self.log_tail()}")
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- REST ---------------------------------------------------------------

    def get_raw(self, endpoint: str, /, **params: Any) -> bytes:
        url = self.url + endpoint
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with _DIRECT.open(url, timeout=30) as r:
            return r.read()

    def get(self, endpoint: str, /, **params: Any) -> dict:
        return json.loads(self.get_raw(endpoint, **params))

    def post(self, endpoint: str, body: dict) -> dict:
        req = urllib.request.Request(
            self.url + endpoint, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with _DIRECT.open(req, timeout=30) as r:
            return json.loads(r.read())


# ---------------------------------------------------------------------------
# Chromium over the DevTools protocol (pipe transport)
# ---------------------------------------------------------------------------

# Puts the two pipe ends on the descriptors 3 and 4 that --remote-debugging-pipe uses, then
# becomes the browser. (Done in a helper process rather than a preexec_fn: safe with threads.)
_LAUNCHER = (
    "import fcntl, os, sys\n"
    "r = fcntl.fcntl(int(sys.argv[1]), fcntl.F_DUPFD, 10)\n"
    "w = fcntl.fcntl(int(sys.argv[2]), fcntl.F_DUPFD, 10)\n"
    "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


class CDPError(RuntimeError):
    pass


class Chromium:
    """A headless Chromium with one page, driven through the DevTools protocol."""

    def __init__(self, executable: Optional[str] = None, width: int = 1400, height: int = 900,
                 extra_flags: Optional[List[str]] = None, env: Optional[dict] = None):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise FileNotFoundError("no Chromium binary found (Debian: apt-get install chromium)")
        self.width, self.height = width, height
        self.extra_flags = list(extra_flags or [])
        self.env = dict(env if env is not None else os.environ)
        self.proc: Optional[subprocess.Popen] = None
        self.profile: Optional[str] = None
        self._next_id = 0
        self._buf = b""
        self.events: List[dict] = []
        self.session: Optional[str] = None
        self.stderr_path: Optional[str] = None

    # -- life cycle ---------------------------------------------------------

    def start(self) -> "Chromium":
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_r, to_w = os.pipe()      # we write commands, the browser reads (its fd 3)
        from_r, from_w = os.pipe()  # the browser writes replies (its fd 4), we read
        self.stderr_path = os.path.join(self.profile, "stderr.log")
        args = [
            self.executable, *CHROMIUM_FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={self.width},{self.height}",
            "--remote-debugging-pipe",
            *self.extra_flags,
            "about:blank",
        ]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(to_r), str(from_w), *args],
                pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                env=self.env, start_new_session=True,
            )
        os.close(to_r)
        os.close(from_w)
        self._w, self._r = to_w, from_r
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"}, timeout=60)
            attached = self.call("Target.attachToTarget",
                                 {"targetId": target["targetId"], "flatten": True})
            self.session = attached["sessionId"]
            self.page("Page.enable")
            self.page("Runtime.enable")
            self.page("Emulation.setDeviceMetricsOverride", {
                "width": self.width, "height": self.height,
                "deviceScaleFactor": 1, "mobile": False})
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            try:
                if self.proc.poll() is None:
                    self.call("Browser.close", timeout=5)
                    self.proc.wait(timeout=10)
            except Exception:
                pass
            _kill_group(self.proc, timeout=5)
            for fd in (getattr(self, "_w", None), getattr(self, "_r", None)):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._w = self._r = None
            self.proc = None
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def stderr_tail(self, n: int = 3000) -> str:
        try:
            return Path(self.stderr_path).read_text(errors="replace")[-n:]
        except (OSError, TypeError):
            return ""

    def __enter__(self) -> "Chromium":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- protocol -----------------------------------------------------------

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no DevTools message in time")
            ready, _, _ = select.select([self._r], [], [], min(left, 1.0))
            if not ready:
                if self.proc is not None and self.proc.poll() is not None:
                    raise CDPError(f"Chromium exited ({self.proc.returncode}):\n"
                                   f"{self.stderr_tail()}")
                continue
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise CDPError(f"Chromium closed the DevTools pipe:\n{self.stderr_tail()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
             timeout: float = 30) -> dict:
        self._next_id += 1
        msg: Dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._w, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)
                del self.events[:-500]

    def page(self, method: str, params: Optional[dict] = None, timeout: float = 30) -> dict:
        """A command to the page's session."""
        return self.call(method, params, session=self.session, timeout=timeout)

    # -- page helpers ---------------------------------------------------------

    def navigate(self, url: str) -> None:
        result = self.page("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {result['errorText']}")

    def goto(self, url: str) -> None:
        """Load ``url`` as a new document.

        A single-page app routed by the URL fragment (MLflow's ``/#/...``) does not always
        follow a fragment-only change; going through about:blank makes every visit a fresh
        load, as when a user opens a link.
        """
        self.navigate("about:blank")
        self.navigate(url)

    def add_init_script(self, source: str) -> None:
        """JavaScript that runs in every new document before the page's own scripts."""
        self.page("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def images(self) -> List[dict]:
        """The page's ``<img>`` elements that are laid out, with their decoded sizes."""
        return self.evaluate("""Array.from(document.images).map(i => {
            const r = i.getBoundingClientRect();
            return {src: i.currentSrc || i.src, complete: i.complete,
                    naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                    shownWidth: r.width, shownHeight: r.height};
        })""") or []

    def wait_for_image(self, min_size: int = 100, timeout: float = 30) -> dict:
        """Wait for a shown ``<img>`` decoded to at least ``min_size`` pixels each way."""
        deadline = time.monotonic() + timeout
        imgs: List[dict] = []
        while time.monotonic() < deadline:
            imgs = self.images()
            for img in imgs:
                if "/static-files/" in (img["src"] or ""):
                    continue  # the app's own icons
                if (img["complete"] and img["naturalWidth"] >= min_size
                        and img["naturalHeight"] >= min_size and img["shownWidth"] > 0):
                    return img
            time.sleep(0.3)
        raise TimeoutError(f"no image of {min_size}px or more shown in {timeout:.0f}s: {imgs}")

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        result = self.page("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout)
        if "exceptionDetails" in result:
            raise CDPError(f"JS error in {expression!r}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60,
                 interval: float = 0.5, settle: float = 0.0) -> str:
        """Poll the rendered text (``document.body.innerText``) until ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if predicate(text):
                if settle:
                    time.sleep(settle)
                    text = self.text()
                return text
            time.sleep(interval)
        raise TimeoutError(f"page text never matched in {timeout:.0f}s; last text:\n{text[:3000]}")

    def wait_for_texts(self, needles: List[str], timeout: float = 60, settle: float = 0.0) -> str:
        return self.wait_for(lambda t: all(n in t for n in needles), timeout=timeout,
                             settle=settle)

    def click_text(self, text: str, selector: str = "*", exact: bool = True) -> bool:
        """Click the innermost visible element matching ``selector`` whose text is ``text``."""
        js = """
        (() => {
          const want = %s, exact = %s;
          const els = Array.from(document.querySelectorAll(%s)).filter(e => {
            const t = (e.innerText || e.textContent || '').trim();
            const r = e.getBoundingClientRect();
            return r.width > 0 && r.height > 0 && (exact ? t === want : t.includes(want));
          });
          // innermost: no other match inside it
          const inner = els.filter(e => !els.some(o => o !== e && e.contains(o)));
          if (!inner.length) return false;
          inner[0].scrollIntoView({block: 'center'});
          inner[0].click();
          return true;
        })()
        """ % (json.dumps(text), "true" if exact else "false", json.dumps(selector))
        return bool(self.evaluate(js))

    def screenshot(self, path: Optional[Path] = None, full_page: bool = False) -> bytes:
        params: Dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        data = base64.b64decode(self.page("Page.captureScreenshot", params, timeout=60)["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data


# ---------------------------------------------------------------------------
# The MLflow UI
# ---------------------------------------------------------------------------

# What a first visit would otherwise bring up in MLflow 3.17's UI, set in the browser's
# localStorage before the app starts: the "MLflow Assistant" side panel opens by itself on
# the first load (it takes a third of a 1400 px window), and an experiment opens in the
# "GenAI" view unless "Model training" was chosen once.
MLFLOW_UI_PREFERENCES = {
    "mlflow.assistant.panelOpen_v1": "false",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    "mlflow.workflowType_v1": '"machine_learning"',
}


def prepare_mlflow_ui(browser: Chromium) -> None:
    sets = "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});"
                   for k, v in MLFLOW_UI_PREFERENCES.items())
    browser.add_init_script(f"try {{ {sets} }} catch (e) {{}}")


def run_page_url(server_url: str, experiment_id: str, run_id: str, sub: str = "") -> str:
    """The UI's address of a run (``sub``: e.g. ``artifacts/plots/x.png``)."""
    url = f"{server_url}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{url}/{sub}" if sub else url


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC, data[:16]
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
