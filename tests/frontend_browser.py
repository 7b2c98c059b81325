"""The real ComfyUI web frontend in headless Chromium, driven by selenium, for the opt-in
browser tests (test_comfyui_frontend.py) and the thumbnail script.

Needs Debian's `chromium` and `chromium-driver` (CHROMIUM / CHROMEDRIVER name other
binaries) and PyPI `selenium`; nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import shutil
import time

CHROMIUM = shutil.which(os.environ.get("CHROMIUM", "chromium"))
CHROMEDRIVER = shutil.which(os.environ.get("CHROMEDRIVER", "chromedriver"))


def missing():
    """Why the browser cannot be driven here (a sentence naming the fix), or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements-dev.txt)"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium or chromedriver not found (apt-get install chromium chromium-driver)"
    return None


def open_frontend(url, size=(1600, 1000), timeout=120):
    """A headless Chromium showing the frontend at `url`, once it knows this pack's node types,
    with the first-run dialog closed and the minimap hidden."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_script_timeout(timeout)
        driver.get(url)
        deadline = time.time() + timeout
        # node types fill in after the frontend has read /object_info
        while not driver.execute_script("return !!(window.app && app.graph && window.LiteGraph"
                                        " && LiteGraph.registered_node_types.SAM2LongLoadShot)"):
            if time.time() > deadline:
                raise TimeoutError(f"the frontend at {url} did not list the SAM2Long nodes in {timeout} s")
            time.sleep(0.5)
        close_dialogs(driver)
        run_js(driver, "await app.extensionManager.setting.set('Comfy.Minimap.Visible', false);")
    except BaseException:
        driver.quit()
        raise
    return driver


def run_js(driver, body, *args):
    """Runs the async JavaScript `body` (its arguments are `args`); returns what it returns.
    A thrown error comes back as a Python RuntimeError."""
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "(async (args) => {\n" + body + "\n})(Array.from(arguments).slice(0, -1))"
        ".then(v => done({ok: v === undefined ? null : v}), e => done({error: String(e && e.stack || e)}));",
        *args)
    if "error" in result:
        raise RuntimeError("in the browser: " + result["error"])
    return result["ok"]


LOAD = """
const [workflow, name] = args;
await app.loadGraphData(workflow, true, true, name);  // what the user's "Open" does
const nodes = app.graph._nodes.map(n => ({
  id: n.id, type: n.type, registered: n.type in LiteGraph.registered_node_types,
  widgets: (n.widgets || []).filter(w => w.options?.serialize !== false)
                             .map(w => ({name: w.name, value: w.value})),
  linked_inputs: (n.inputs || []).filter(i => i.link != null).map(i => i.name),
}));
const prompt = await app.graphToPrompt();  // what the Run button queues
const saved = Object.fromEntries(app.graph.serialize().nodes.map(n => [n.id, n.widgets_values ?? []]));
return {nodes, output: prompt.output, saved};
"""


def load_workflow(driver, workflow, name):
    """Opens the UI-format `workflow` with the frontend's own loader (after closing any dialog
    left open). Returns {nodes: [{id, type, registered, widgets: [{name, value}], linked_inputs}],
    output: graphToPrompt().output, saved: {node id: widgets_values as the frontend would save them}}."""
    close_dialogs(driver)
    return run_js(driver, LOAD, workflow, name)


def close_dialogs(driver, timeout=10):
    """Closes open dialogs (the first-run templates, a refused prompt's errors) with Escape."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    deadline = time.time() + timeout
    while driver.find_elements(By.CSS_SELECTOR, "[role=dialog]"):
        if time.time() > deadline:
            raise TimeoutError("a dialog does not close: " + error_dialog_text(driver))
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        time.sleep(0.3)


def node_rects(driver):
    """{node id: [x, y, width, height]} in graph units, title bar included, once drawn."""
    return run_js(driver, """
app.canvas.draw(true, true);
return Object.fromEntries(app.graph._nodes.map(n => [n.id, Array.from(n.getBounding())]));""")


def set_widgets(driver, values):
    """Sets widgets as a user would pick them: {node id: {widget name: value}}."""
    run_js(driver, """
const [values] = args;
for (const [id, widgets] of Object.entries(values)) {
  const node = app.graph.getNodeById(Number(id));
  for (const [name, value] of Object.entries(widgets)) {
    const w = node.widgets.find(w => w.name === name);
    if (!w) throw new Error(`node ${id} has no widget ${name}`);
    w.value = value;
    w.callback?.(value);
  }
}""", values)


def click_run(driver):
    """Clicks the frontend's Run button."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Run']").click()


def error_dialog_text(driver):
    """The text of an open dialog (the frontend shows a refused prompt in one), or ""."""
    return driver.execute_script(
        "return [...document.querySelectorAll('[role=dialog]')].map(e => e.innerText).join('\\n')")


def focus_mode(driver):
    """Hides the frontend's menus and side bars (its focus mode), the canvas menu and info corner."""
    run_js(driver, """
app.canvas.show_info = false;
await app.extensionManager.setting.set('Comfy.Graph.CanvasMenu', false);
await app.extensionManager.command.execute('Workspace.ToggleFocusMode');
await new Promise(r => setTimeout(r, 500));""")


def graph_screenshot(driver, path, margin=24):
    """A PNG of the whole graph drawn at zoom 1 (below about 0.6 the canvas leaves out all text):
    the page is resized to the nodes plus `margin` pixels and the view moved onto them."""
    x, y, w, h = run_js(driver, """
let b = [Infinity, Infinity, -Infinity, -Infinity];
for (const n of app.graph._nodes) {
  const [x, y, w, h] = n.getBounding();
  b = [Math.min(b[0], x), Math.min(b[1], y), Math.max(b[2], x + w), Math.max(b[3], y + h)];
}
return [b[0], b[1], b[2] - b[0], b[3] - b[1]];""")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": round(w) + 2 * margin, "height": round(h) + 2 * margin, "deviceScaleFactor": 1, "mobile": False})
    run_js(driver, """
const [x, y, margin] = args;
await new Promise(r => setTimeout(r, 500));  // the canvas follows the page size
const ds = app.canvas.ds, box = app.canvas.canvas.getBoundingClientRect();
ds.scale = 1;
ds.offset = [margin - box.left - x, margin - box.top - y];
app.canvas.setDirty(true, true);
app.canvas.draw(true, true);
await new Promise(r => setTimeout(r, 1000));  // DOM widgets (text boxes, video previews) follow""", x, y, margin)
    driver.save_screenshot(path)
