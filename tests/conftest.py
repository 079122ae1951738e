import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

ARTIFACTS = ROOT / "test-artifacts"
ARTIFACTS.mkdir(exist_ok=True)

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's native INFO lines

import pytest  # noqa: E402

TINY_MODEL = "tiny_random_test.safetensors"  # random weights: wiring tests only (tests/tiny_model.py)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """One real ComfyUI server (CPU) with the pack linked in, shared by the integration and
    browser tests; always stopped at the end, also when tests fail."""
    from comfy_server import ComfyServer

    from tests.tiny_model import write_tiny_model

    server = ComfyServer(tmp_path_factory.mktemp("comfyui"))
    for asset in (ROOT / "assets").iterdir():
        server.copy_input(asset)
    write_tiny_model(server.models_dir / TINY_MODEL)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        (ARTIFACTS / "comfyui.log").write_text(server.log())
