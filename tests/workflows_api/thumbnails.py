"""Takes the workflow thumbnails (workflows/<name>.jpg) in the real ComfyUI frontend: a
ComfyUI server with this pack (tests/real_comfyui.py) and the demo clip as input/bedroom.mp4,
each workflow opened in headless Chromium (tests/frontend_browser.py), its graph fitted to
the view, screenshotted and cropped to the nodes.

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/comfy/venv/bin/python \
        python tests/workflows_api/thumbnails.py [/path/to/bedroom.mp4]
"""

import glob
import json
import os
import pathlib
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/

import frontend_browser  # noqa: E402
import real_comfyui  # noqa: E402
from PIL import Image  # noqa: E402

MAX_SIZE = (960, 540)  # the thumbnail fits in this, aspect kept


def main(clip):
    if not real_comfyui.COMFYUI_DIR:
        sys.exit("set COMFYUI_DIR to a ComfyUI checkout (and COMFYUI_PYTHON to its Python)")
    if frontend_browser.missing():
        sys.exit(frontend_browser.missing())
    if not os.path.isfile(clip):
        sys.exit(f"the demo clip {clip} does not exist; pass its path")
    workflows = sorted(glob.glob(os.path.join(real_comfyui.REPO, "workflows", "*.json")))
    with tempfile.TemporaryDirectory() as tmp:
        server = real_comfyui.start_server(pathlib.Path(tmp), {}, {}, clip=lambda p: shutil.copy(clip, p))
        try:
            url = next(server).url
            driver = frontend_browser.open_frontend(url)
            try:
                frontend_browser.focus_mode(driver)
                for path in workflows:
                    name = os.path.basename(path)[:-5]
                    with open(path) as f:
                        frontend_browser.load_workflow(driver, json.load(f), name)
                    png = os.path.join(tmp, name + ".png")
                    frontend_browser.graph_screenshot(driver, png)
                    with Image.open(png) as im:
                        im = im.convert("RGB")
                        im.thumbnail(MAX_SIZE, Image.LANCZOS)
                        im.save(path[:-5] + ".jpg", quality=85)
                    print(path[:-5] + ".jpg", im.size)
            finally:
                driver.quit()
        finally:
            server.close()  # stops the server


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else real_comfyui.DEMO)
