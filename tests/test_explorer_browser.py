"""End to end: notebook 11's interactive explorer in JupyterLab, driven by headless Chromium through Selenium.

The test starts JupyterLab on a copy of ``notebooks/11_explorer.ipynb`` whose outputs, data set and run cache all
lie under ``tmp_path`` (a cell after the parameters cell sets ``output_dir`` and ``data_root``, as papermill's
injected parameters would), runs all cells through the lab's ``notebook:run-all-cells`` command, then moves the
k slider and the anchor slider with the arrow keys and checks that the widget redraws: new figure pixels and new
printed terms, computed by the kernel for the new values. A screenshot is saved under ``tmp_path``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped without them.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from snlib import settings

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

NOTEBOOK = settings.notebooks_dir() / "11_explorer.ipynb"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                       reason=f"needs {CHROMIUM} and {CHROMEDRIVER}: install them with `{INSTALL}` (as root)"),
]

SERVER_START_S = 90      # JupyterLab up and answering
KERNEL_START_S = 90      # the notebook's kernel idle
RUN_ALL_S = 420          # every cell run: the smoke preset trains two small runs on first use
REDRAW_S = 90            # one widget update (features of the batch, ranked list, one figure)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook_copy(folder: Path, output_dir: Path, data_root: Path) -> Path:
    """``11_explorer.ipynb`` without its outputs, with a cell after the parameters cell sending its figures to
    ``output_dir`` and its data set to ``data_root``."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{NOTEBOOK} should have one cell tagged 'parameters', found {len(params)}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells.insert(params[0] + 1, nbformat.v4.new_code_cell(
        f"output_dir = {str(output_dir)!r}\ndata_root = {str(data_root)!r}",
        metadata={"tags": ["injected-parameters"]}))
    path = folder / NOTEBOOK.name
    nbformat.write(nb, path)
    return path


def _lab_log(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else "(no log)"


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a temporary copy of notebook 11; shut down afterwards.

    Yields ``(base_url, token, output_dir)``."""
    root, out, data, cache = (tmp_path / name for name in ("lab", "out", "data", "cache"))
    root.mkdir()
    _notebook_copy(root, out, data)
    settings_dir = tmp_path / "lab-settings"
    tracker = settings_dir / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))   # every cell in the DOM, none virtualised
    # no autosave: JupyterLab saves after 120 s, and a save in the middle of a widget redraw left the widget's
    # output without its figure (seen when the run-all cell took longer than the autosave interval)
    docmanager = settings_dir / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    docmanager.parent.mkdir(parents=True)
    docmanager.write_text(json.dumps({"autosave": False}))
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", settings.BATCH_ENV)}  # inline figures
    env.update({settings.PRESET_ENV: "smoke", settings.CACHE_ENV: str(cache),
                "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
                "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
                "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces")})
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = tmp_path / "jupyterlab.log"
    base = f"http://127.0.0.1:{port}"
    with open(log, "wb") as fh:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {server.returncode} before answering:\n{_lab_log(log)}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on {base} within {SERVER_START_S} s:\n{_lab_log(log)}")
                time.sleep(0.5)
        yield base, token, out
    finally:
        try:   # the server's own shutdown also stops the kernel it started
            urllib.request.urlopen(urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST"),
                                   timeout=10)
        except OSError:
            pass
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture
def browser():
    """Headless Debian Chromium through the Debian chromedriver (explicit paths: Selenium Manager never runs)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,2400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


_NOTEBOOK_STATE = """
const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
if (!w || !w.content || !w.content.model || !w.sessionContext) return null;
const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
const cells = [];
for (let i = 0; i < w.content.model.cells.length; i++) {
  const c = w.content.model.cells.get(i);
  if (c.type !== 'code') continue;
  const errors = c.outputs.toJSON().filter(o => o.output_type === 'error')
                  .map(o => o.ename + ': ' + o.evalue);
  cells.push({count: c.executionCount, errors: errors, text: c.outputs.toJSON().map(
      o => o.text || (o.data && o.data['text/plain']) || '').join('')});
}
return {path: w.context && w.context.path, kernel: kernel ? kernel.status : 'none', cells: cells};
"""

# What the explorer shows now: its text (an HTML widget's <pre>) and its figure's pixels (the Image widget's PNG,
# drawn into a canvas once loaded; null while it loads).
_WIDGET_OUTPUT = """
const box = document.querySelector('.jp-Notebook .widget-vbox');
if (!box) return null;
const pre = box.querySelector('.widget-html pre');
const img = box.querySelector('img.widget-image');
let pixels = null;
if (img && img.complete && img.naturalWidth > 0) {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  canvas.getContext('2d').drawImage(img, 0, 0);
  pixels = canvas.toDataURL('image/png');
}
return {text: pre ? pre.textContent : '', img: pixels};
"""


def _wait(driver, what: str, timeout: float, probe, shot: Path, seen=None):
    """Poll ``probe()`` until it returns something truthy; on time-out fail with ``what`` and the last value of
    ``seen()`` (default: of ``probe()``)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    driver.save_screenshot(str(shot))
    if seen is not None:
        last = seen()
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last state: {last!r:.2000}; screenshot: {shot}")


def _slider(driver, name: str):
    """The ipywidgets slider whose description is ``name``: (its handle, its readout)."""
    for slider in driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .widget-vbox .widget-slider"):
        if slider.find_element(By.CSS_SELECTOR, ".widget-label").text.strip() == name:
            return (slider.find_element(By.CSS_SELECTOR, ".noUi-handle"),
                    slider.find_element(By.CSS_SELECTOR, ".widget-readout"))
    pytest.fail(f"the explorer widget has no slider labelled {name!r}")


def _terms(text: str) -> str:
    """The printed loss terms (the lines after the settings line ``k=...``)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("k=")), None)
    assert start is not None, f"the explorer printed no settings line 'k=...':\n{text}"
    return "\n".join(lines[start + 2:])


def _move(driver, name: str, before: dict, shot: Path) -> tuple[int, dict]:
    """Press the right arrow on slider ``name``'s handle; wait for the redraw; return (new value, new output)."""
    handle, readout = _slider(driver, name)
    old = int(readout.text)
    handle.send_keys(Keys.ARROW_RIGHT)
    _wait(driver, f"the {name} slider to move from {old}", REDRAW_S, lambda: int(readout.text) != old or None, shot)
    value = int(readout.text)
    assert value == old + 1, f"one right-arrow press moved the {name} slider from {old} to {value}, not {old + 1}"
    marker = f"k={value}" if name == "k" else f"anchor {value} "

    def redrawn():
        now = driver.execute_script(_WIDGET_OUTPUT)
        return now if now and marker in now["text"] and now["img"] and now["img"] != before["img"] else None

    def shown():
        now = driver.execute_script(_WIDGET_OUTPUT)
        return now and {"text": now["text"], "new figure": now["img"] != before["img"]}

    return value, _wait(driver, f"the explorer to redraw for {name}={value} (text with {marker!r}, a new figure)",
                        REDRAW_S, redrawn, shot, seen=shown)


def test_explorer_widget_redraws_in_jupyterlab(lab, browser, tmp_path):
    base, token, out = lab
    shot = tmp_path / "explorer.png"
    browser.set_script_timeout(30)
    browser.get(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")

    def kernel_idle():
        state = browser.execute_script(_NOTEBOOK_STATE)
        return state if state and state["path"] == NOTEBOOK.name and state["kernel"] == "idle" else None

    _wait(browser, f"JupyterLab to open {NOTEBOOK.name} with an idle kernel", KERNEL_START_S, kernel_idle, shot)
    started = time.monotonic()
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells'); return true;")

    def all_run():
        state = browser.execute_script(_NOTEBOOK_STATE)
        errors = [e for c in state["cells"] for e in c["errors"]]
        if errors:
            browser.save_screenshot(str(shot))
            pytest.fail(f"a cell of {NOTEBOOK.name} failed in JupyterLab: {errors}; screenshot: {shot}")
        done = state["kernel"] == "idle" and all(c["count"] is not None for c in state["cells"])
        return state if done else None

    state = _wait(browser, f"all cells of {NOTEBOOK.name} to run", RUN_ALL_S, all_run, shot)
    run_all_s = time.monotonic() - started
    printed = "".join(c["text"] for c in state["cells"])
    assert f"figures and tables go to {out}" in printed, f"the notebook's output_dir is not {out}:\n{printed}"
    assert (out / "explorer_default.png").is_file(), f"the static rendering was not saved under {out}"
    assert "(batch run)" not in printed, "the widget was not built: the kernel saw a batch run"

    first = _wait(browser, "the explorer widget's first drawing (text and figure)", REDRAW_S,
                  lambda: (lambda o: o if o and o["img"] and "k=" in o["text"] else None)(
                      browser.execute_script(_WIDGET_OUTPUT)), shot)
    assert first["text"].startswith("after SN training: anchor 0 "), f"unexpected first drawing:\n{first['text']}"

    k, after_k = _move(browser, "k", first, shot)
    assert _terms(after_k["text"]) != _terms(first["text"]), (
        f"k moved to {k} but the printed terms did not change:\n{after_k['text']}")
    anchor, after_anchor = _move(browser, "anchor", after_k, shot)
    assert f"k={k} " in after_anchor["text"], f"moving the anchor reset k:\n{after_anchor['text']}"
    assert _terms(after_anchor["text"]) != _terms(after_k["text"]), (
        f"the anchor moved to {anchor} but the printed terms did not change:\n{after_anchor['text']}")
    assert len({first["img"], after_k["img"], after_anchor["img"]}) == 3

    browser.execute_script("document.querySelector('.jp-Notebook .widget-vbox').scrollIntoView();")
    browser.save_screenshot(str(shot))
    print(f"run all cells: {run_all_s:.0f} s; screenshot: {shot}")
