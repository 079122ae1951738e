"""A real ComfyUI 0.3.75 server (from .comfyui/, see scripts/setup.sh) for tests and the demo.

Each server gets its own input/output/user/temp folders, a free loopback port and a log file;
``stop`` always terminates the process group, also when a test fails.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMFY_DIR = ROOT / ".comfyui"
PACK_LINK = "ComfyUI-DreamActor"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, workdir: pathlib.Path, python: str = sys.executable, extra_args=(),
                 output_dir: pathlib.Path | None = None, env: dict | None = None):
        if not (COMFY_DIR / "main.py").is_file():
            raise RuntimeError(f"ComfyUI is not installed in {COMFY_DIR}: run `bash scripts/setup.sh` first")
        if not (COMFY_DIR / "custom_nodes" / PACK_LINK).exists():
            raise RuntimeError(f"the pack is not linked into {COMFY_DIR / 'custom_nodes'}: run scripts/setup.sh")
        self.workdir = pathlib.Path(workdir)
        self.input_dir = self.workdir / "input"
        self.output_dir = pathlib.Path(output_dir) if output_dir else self.workdir / "output"
        self.user_dir = self.workdir / "user"
        for d in (self.input_dir, self.output_dir, self.user_dir / "default", self.workdir / "temp"):
            d.mkdir(parents=True, exist_ok=True)
        settings = self.user_dir / "default" / "comfy.settings.json"
        if not settings.exists():  # otherwise the templates dialog covers the canvas
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "comfyui.log"
        self.python = python
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        # A models/dreamactor folder of this server's own, for test model files.
        self.models_dir = self.workdir / "models" / "dreamactor"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.extra_paths = self.workdir / "extra_model_paths.yaml"
        self.extra_paths.write_text(f"dreamactor_tests:\n    base_path: {self.workdir / 'models'}\n"
                                    "    dreamactor: dreamactor\n")

    def start(self, timeout: float = 120.0) -> "ComfyServer":
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--input-directory", str(self.input_dir), "--output-directory", str(self.output_dir),
               "--user-directory", str(self.user_dir), "--temp-directory", str(self.workdir / "temp"),
               "--database-url", "sqlite:///:memory:", "--disable-api-nodes",
               "--extra-model-paths-config", str(self.extra_paths), *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=COMFY_DIR, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}; log:\n{self.log()[-4000:]}")
            try:
                if requests.get(self.url + "/system_stats", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s; log:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- API -----------------------------------------------------------------------------
    def object_info(self, node: str | None = None) -> dict:
        r = requests.get(self.url + "/object_info" + (f"/{node}" if node else ""), timeout=30)
        r.raise_for_status()
        return r.json()

    def copy_input(self, path: pathlib.Path, name: str | None = None) -> str:
        name = name or pathlib.Path(path).name
        shutil.copy(path, self.input_dir / name)
        return name

    def queue(self, prompt: dict, workflow: dict | None = None, client_id: str | None = None) -> str:
        body = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        r = requests.post(self.url + "/prompt", json=body, timeout=30)
        if r.status_code != 200:
            raise PromptRejected(r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)
        return r.json()["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        """Waits for the prompt to finish; returns its history entry (status + outputs)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = requests.get(f"{self.url}/history/{prompt_id}", timeout=30)
            r.raise_for_status()
            entry = r.json().get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if not self.alive():
                raise RuntimeError(f"ComfyUI died while running the prompt; log:\n{self.log()[-4000:]}")
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def wait_for_progress(self, prompt: dict, node: str, at_least: int, timeout: float = 300.0) -> str:
        """Queues ``prompt`` and returns its id once ``node`` has reported ``at_least`` steps of
        progress over the websocket (what the frontend's progress bar shows)."""
        import websocket

        client_id = uuid.uuid4().hex
        ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}", timeout=timeout)
        try:
            prompt_id = self.queue(prompt, client_id=client_id)
            deadline = time.time() + timeout
            while time.time() < deadline:
                message = ws.recv()
                if not isinstance(message, str):
                    continue  # binary preview frames
                event = json.loads(message)
                data = event.get("data", {})
                if event.get("type") == "progress" and data.get("node") == node and data.get("value", 0) >= at_least:
                    return prompt_id
                if event.get("type") == "execution_error":
                    raise RuntimeError(f"prompt failed before reaching progress {at_least}: {data}")
        finally:
            ws.close()
        raise TimeoutError(f"node {node} did not reach progress {at_least} within {timeout:.0f} s")

    def wait_until_running(self, prompt_id: str, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            queue = requests.get(self.url + "/queue", timeout=10).json()
            if any(item[1] == prompt_id for item in queue["queue_running"]):
                return
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not start within {timeout:.0f} s")

    def run(self, prompt: dict, workflow: dict | None = None, timeout: float = 600.0) -> dict:
        return self.wait(self.queue(prompt, workflow), timeout)

    def interrupt(self) -> None:
        requests.post(self.url + "/interrupt", timeout=10)


class PromptRejected(RuntimeError):
    def __init__(self, status: int, body):
        super().__init__(f"/prompt refused the prompt ({status}): {body}")
        self.status, self.body = status, body


def execution_error(entry: dict) -> dict | None:
    """The execution_error message of a finished history entry, or None."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return None
