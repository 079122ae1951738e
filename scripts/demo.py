"""The main job, headless: boots a real ComfyUI with this pack, runs the shipped animation
workflows (the same reference animated by the driving video, then with the face driven by a
speech track) on the embedded demo model and assets, and writes the results under output/.

    make demo            (or: .venv/bin/python scripts/demo.py [--workflow workflows/X.json ...])
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

DEFAULT_WORKFLOWS = [ROOT / "workflows" / "dreamactor_animate_video_driven.json",
                     ROOT / "workflows" / "dreamactor_animate_audio_driven.json"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflow", type=pathlib.Path, action="append",
                        help="workflow file to run (repeatable); default: both animation workflows")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "output")
    args = parser.parse_args()
    paths = [p.resolve() for p in (args.workflow or DEFAULT_WORKFLOWS)]
    args.output.mkdir(parents=True, exist_ok=True)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="dreamactor-demo-"))
    server = ComfyServer(workdir, output_dir=args.output)
    for asset in (ROOT / "assets").iterdir():
        server.copy_input(asset)
    started = time.time()
    print(f"demo: starting ComfyUI (log: {server.log_path})", flush=True)
    files = []
    with server:
        info = server.object_info()
        for path in paths:
            workflow = json.loads(path.read_text())
            prompt = workflow_to_prompt(workflow, info)
            print(f"demo: running {path.name} ({len(prompt)} nodes)", flush=True)
            run_start = time.time()
            entry = server.run(prompt, workflow=workflow, timeout=1800)
            error = execution_error(entry)
            if error is not None:
                print(f"demo: FAILED in node {error.get('node_type')}: "
                      f"{error.get('exception_message')}", file=sys.stderr)
                print(f"demo: ComfyUI log kept at {server.log_path}", file=sys.stderr)
                return 1
            print(f"demo: {path.name} done in {time.time() - run_start:.1f} s", flush=True)
            for node_out in entry["outputs"].values():
                for items in node_out.values():
                    for item in items if isinstance(items, list) else []:
                        if isinstance(item, dict) and "filename" in item:
                            files.append(args.output / item.get("subfolder", "") / item["filename"])
    print(f"demo: done in {time.time() - started:.1f} s (ComfyUI start included); results:")
    for f in files:
        print(f"  {f}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
