"""A real ``mlflow server`` and a real headless Chromium, for the UI test and the screenshots.

The browser is Debian's ``chromium``, driven by Playwright (the ``playwright`` wheel ships
its own driver; no browser is downloaded: ``executable_path`` points at the system one).

Used by ``tests/test_ui.py`` and ``scripts/screenshots.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Debian's package; other distributions name the binary differently.
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

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
                 port: Optional[int] = None, startup_timeout: float = 90,
                 args: Sequence[str] = (), workers: int = 1):
        self.backend_uri = backend_uri
        self.args = list(args)  # more `mlflow server` options (tests/integration/servers.py)
        self.workers = workers
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
            "--workers", str(self.workers),
            *self.args,
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
# Chromium through Playwright
# ---------------------------------------------------------------------------

# Debian's browser is launched (Playwright's own browser downloads are never used); the
# flags keep a headless run quiet and self-contained.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Anything not on the loopback goes to a closed port: the page can reach the local server
# only.
OFFLINE_PROXY = {"server": "http://127.0.0.1:9", "bypass": "127.0.0.1,localhost"}

# The page's rendered text contains every needle (and, if asked, ``near[1]`` within
# ``near[2]`` characters after ``near[0]``).
_TEXT_MATCHES = """([needles, near]) => {
    const t = document.body ? document.body.innerText : '';
    if (!needles.every(n => t.includes(n))) return false;
    if (!near) return true;
    const i = t.indexOf(near[0]);
    return i >= 0 && t.slice(i, i + near[2]).includes(near[1]);
}"""

# The first shown ``<img>`` (not one of the app's own icons) decoded to at least
# ``minSize`` pixels each way, with its decoded and shown sizes.
_IMAGE_SHOWN = """minSize => {
    for (const i of document.images) {
        const src = i.currentSrc || i.src || '';
        if (src.includes('/static-files/')) continue;
        const r = i.getBoundingClientRect();
        if (i.complete && i.naturalWidth >= minSize && i.naturalHeight >= minSize
                && r.width > 0)
            return {src, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                    shownWidth: r.width, shownHeight: r.height};
    }
    return null;
}"""


@contextlib.contextmanager
def mlflow_page(executable: Optional[str] = None, width: int = 1400, height: int = 900,
                env: Optional[dict] = None,
                preferences: Optional[dict] = None) -> Iterator["Page"]:
    """A Playwright page in a headless Chromium, set up for MLflow's UI: ``preferences``
    (default :data:`MLFLOW_UI_PREFERENCES`) in its localStorage before the app starts."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if not executable:
        raise FileNotFoundError("no Chromium binary found (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=CHROMIUM_ARGS, proxy=OFFLINE_PROXY, env=env)
        try:
            context = browser.new_context(viewport={"width": width, "height": height},
                                          device_scale_factor=1)
            context.add_init_script(_mlflow_ui_preferences_script(preferences))
            yield context.new_page()
        finally:
            browser.close()


def goto(page: "Page", url: str) -> None:
    """Load ``url`` as a new document.

    A single-page app routed by the URL fragment (MLflow's ``/#/...``) does not always
    follow a fragment-only change; going through about:blank makes every visit a fresh
    load, as when a user opens a link.
    """
    page.goto("about:blank")
    page.goto(url)


def page_text(page: "Page") -> str:
    return page.evaluate("document.body ? document.body.innerText : ''") or ""


def wait_for_texts(page: "Page", needles: List[str], timeout: float = 60,
                   near: Optional[Tuple[str, str, int]] = None, settle: float = 0.0) -> str:
    """Wait until the rendered text (``innerText``) shows every needle; return it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(_TEXT_MATCHES, arg=[list(needles), near],
                               timeout=timeout * 1000, polling=250)
    except PlaywrightTimeout:
        missing = [n for n in needles if n not in page_text(page)]
        raise TimeoutError(f"page text never matched in {timeout:.0f}s (missing {missing}, "
                           f"near {near}); last text:\n{page_text(page)[:3000]}") from None
    if settle:
        page.wait_for_timeout(settle * 1000)
    return page_text(page)


def wait_for_image(page: "Page", min_size: int = 100, timeout: float = 30) -> dict:
    """Wait for a shown ``<img>`` decoded to at least ``min_size`` pixels each way."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(_IMAGE_SHOWN, arg=min_size, timeout=timeout * 1000,
                                        polling=250)
    except PlaywrightTimeout:
        srcs = page.evaluate("Array.from(document.images).map(i => [i.currentSrc || i.src, "
                             "i.naturalWidth, i.naturalHeight])")
        raise TimeoutError(f"no image of {min_size}px or more shown in {timeout:.0f}s: "
                           f"{srcs}") from None
    return handle.json_value()


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


def _mlflow_ui_preferences_script(preferences: Optional[dict] = None) -> str:
    preferences = MLFLOW_UI_PREFERENCES if preferences is None else preferences
    sets = "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});"
                   for k, v in preferences.items())
    return f"try {{ {sets} }} catch (e) {{}}"


def run_page_url(server_url: str, experiment_id: str, run_id: str, sub: str = "") -> str:
    """The UI's address of a run (``sub``: e.g. ``artifacts/plots/x.png``), in the "Model
    training" view, as ``mnist-exp`` prints it."""
    url = f"{server_url}/#/experiments/{experiment_id}/runs/{run_id}"
    return (f"{url}/{sub}" if sub else url) + "?workflowType=machine_learning"


def runs_page_url(server_url: str, experiment_id: str, charts: bool = False) -> str:
    """The experiment's runs page in the "Model training" view (``charts``: its charts
    view). Without ``workflowType`` MLflow 3.17 opens an experiment on its GenAI page."""
    url = f"{server_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    return url + "&compareRunsMode=CHART" if charts else url


def expand_run(page: "Page", run_name: str, child_name: str) -> None:
    """Unfold a parent run's children in the runs list (the "+" left of its name), unless
    its child ``child_name`` is shown already: the UI remembers unfolded runs."""
    if not page.locator(".ag-row", has_text=child_name).count():
        page.locator(".ag-row", has_text=run_name).locator("button").first.click()
    page.locator(".ag-row", has_text=child_name).first.wait_for(timeout=30_000)


def group_runs_by(page: "Page", key: str) -> None:
    """Choose "Group by" ``key`` (a tag, param or attribute) in the runs list's toolbar."""
    page.get_by_text("Group by", exact=True).click()
    page.get_by_placeholder("Search", exact=True).fill(key)
    page.get_by_role("menuitemcheckbox", name=key, exact=True).click()
    page.keyboard.press("Escape")


def filter_charts(page: "Page", text: str) -> None:
    """Show only the charts whose metric name contains ``text`` (the charts view)."""
    page.get_by_placeholder("Search metric charts").fill(text)


# The series each chart draws: its trace names and (x, y) points, from Plotly's own data.
_CHART_SERIES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
    p => (p.data || []).filter(d => (d.x || []).length).map(
        d => ({name: d.name, x: Array.from(d.x), y: Array.from(d.y)})))"""


def chart_series(page: "Page") -> List[List[dict]]:
    """Per shown chart, its series: ``{"name", "x", "y"}``."""
    return page.evaluate(_CHART_SERIES)


def wait_for_chart_series(page: "Page", names: List[str], timeout: float = 60) -> List[dict]:
    """Wait until the page shows one chart only (filter them first), with a series for
    every run in ``names``; return its series."""
    deadline = time.monotonic() + timeout
    seen: List[List[dict]] = []
    while time.monotonic() < deadline:
        seen = chart_series(page)
        if len(seen) == 1 and set(names) <= {s["name"] for s in seen[0]}:
            return seen[0]
        page.wait_for_timeout(250)
    raise TimeoutError(f"no single chart drew all of {names} in {timeout:.0f}s; the "
                       f"charts drew {[[s['name'] for s in c] for c in seen]}")


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC, data[:16]
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
