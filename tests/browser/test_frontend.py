"""The pack in ComfyUI's real frontend, in Debian's Chromium driven by playwright."""

import json
import pathlib
import shutil

import pytest

from workflow_api import workflow_to_prompt

pytestmark = pytest.mark.browser
ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PACK_NODES = ["DreamActorReferenceLoader", "DreamActorSkeletonExtractor", "DreamActorHeadSphereRenderer",
              "DreamActorFaceCrop", "DreamActorPseudoReferencePicker", "DreamActorModelLoader",
              "DreamActorFaceMotionEncoder", "DreamActorAudioToMotion", "DreamActorSampler",
              "DreamActorSegmentStitcher", "DreamActorSmplxPose"]


@pytest.fixture(scope="module")
def page(comfy, tmp_path_factory):
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup_browser.sh` (make test does)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    errors = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 2400, "height": 1300})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(comfy.url, wait_until="domcontentloaded", timeout=60_000)
            page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=60_000)
            page.errors = errors
            yield page
        finally:
            context.close()


def test_pack_node_types_are_registered_in_the_page(page):
    registered = page.evaluate("(ids) => ids.filter(id => !!LiteGraph.registered_node_types[id])", PACK_NODES)
    assert registered == PACK_NODES
    # The pack's own frontend extension was served and loaded.
    assert page.evaluate("app.extensions.some(e => e.name === 'DreamActor.Appearance')")


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.json")), ids=lambda p: p.name)
def test_shipped_workflow_loads_without_missing_nodes(page, comfy, path):
    workflow = json.loads(path.read_text())
    page.errors.clear()
    result = page.evaluate("""async (wf) => {
        await app.loadGraphData(wf);
        const nodes = app.graph._nodes;
        return {
          count: nodes.length,
          missing: nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type),
          colours: nodes.filter(n => n.type.startsWith('DreamActor')).map(n => n.color),
        };
    }""", workflow)
    assert result["count"] == len(workflow["nodes"])
    assert result["missing"] == []
    assert result["colours"] and set(result["colours"]) == {"#2f3f56"}
    # The page's own UI -> API conversion agrees with ours (used by the demo and the tests).
    output = page.evaluate("async () => (await app.graphToPrompt()).output")
    info = comfy.object_info()
    ours = workflow_to_prompt(workflow, info)

    def declared(prompt):  # the frontend adds UI-only inputs (e.g. LoadAudio's audioUI) the server ignores
        out = {}
        for key, node in prompt.items():
            spec = info[node["class_type"]]["input"]
            names = set(spec.get("required", {})) | set(spec.get("optional", {}))
            out[key] = {"class_type": node["class_type"],
                        "inputs": {k: v for k, v in node["inputs"].items() if k in names}}
        return out

    assert declared(output) == declared(ours)
    page.evaluate("() => app.extensionManager?.command?.execute?.('Comfy.Canvas.FitView')")
    page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / f"workflow-{path.stem}.png"))
    assert (ARTIFACTS / f"workflow-{path.stem}.png").stat().st_size > 10_000
    assert page.errors == []
