"""The main job, headless: boots a real ComfyUI with this pack, runs the shipped demo workflow
on the embedded assets and writes the results under output/.

    make demo            (or: .venv/bin/python scripts/demo.py [--workflow workflows/X.json])
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from comfy_server import ROOT, ComfyServer, execution_error  # noqa: E402
from workflow_api import workflow_to_prompt  # noqa: E402

DEFAULT_WORKFLOW = ROOT / "workflows" / "dreamactor_guidance_from_video.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflow", type=pathlib.Path, default=DEFAULT_WORKFLOW)
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "output")
    args = parser.parse_args()
    workflow = json.loads(args.workflow.read_text())
    args.output.mkdir(parents=True, exist_ok=True)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="dreamactor-demo-"))
    server = ComfyServer(workdir, output_dir=args.output)
    for asset in (ROOT / "assets").iterdir():
        server.copy_input(asset)
    started = time.time()
    print(f"demo: starting ComfyUI (log: {server.log_path})", flush=True)
    with server:
        prompt = workflow_to_prompt(workflow, server.object_info())
        print(f"demo: running {args.workflow.relative_to(ROOT)} ({len(prompt)} nodes)", flush=True)
        entry = server.run(prompt, workflow=workflow, timeout=1800)
    error = execution_error(entry)
    if error is not None:
        print(f"demo: FAILED in node {error.get('node_type')}: {error.get('exception_message')}", file=sys.stderr)
        print(f"demo: ComfyUI log kept at {server.log_path}", file=sys.stderr)
        return 1
    files = []
    for node_out in entry["outputs"].values():
        for items in node_out.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item:
                    files.append(args.output / item.get("subfolder", "") / item["filename"])
    print(f"demo: done in {time.time() - started:.1f} s; results:")
    for f in files:
        print(f"  {f}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
