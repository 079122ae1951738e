"""The pack's shape: layout, metadata, dependency lists, the one-way dependency rule."""

import ast
import importlib.util
import logging
import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_layout():
    for path in ("__init__.py", "nodes", "dreamactor_core", "web", "workflows", "tests",
                 "requirements.txt", "pyproject.toml", "README.md", "LICENSE", ".ci/run", "Makefile"):
        assert (ROOT / path).exists(), path


def _requirement_lines():
    lines = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            lines.append(line.replace(" ", ""))
    return lines


def test_pyproject_matches_registry_spec_and_requirements():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    for key in ("name", "version", "description", "license", "dependencies", "requires-python"):
        assert project.get(key), key
    assert "comfyui" not in project["name"].replace("comfyui-", "", 1)  # registry id without a second "ComfyUI"
    assert project["urls"]["Repository"].startswith("https://")
    comfy = meta["tool"]["comfy"]
    for key in ("PublisherId", "DisplayName", "Icon"):
        assert key in comfy
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert sorted(d.replace(" ", "") for d in project["dependencies"]) == sorted(_requirement_lines())


def test_core_never_imports_comfyui():
    banned = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "server", "execution"}
    offenders = []
    for path in (ROOT / "dreamactor_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []


def test_core_importable_from_plain_python_elsewhere(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import dreamactor_core, sys; print(dreamactor_core.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert pathlib.Path(out.stdout.strip()).parent == ROOT / "dreamactor_core"


def _load_registry():
    spec = importlib.util.spec_from_file_location("da_registry", ROOT / "nodes" / "registry.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_optional_dependency_leaves_out_only_that_module(tmp_path, monkeypatch, caplog):
    pkg = tmp_path / "fakepack"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")

    class_src = "class {n}:\n    @classmethod\n    def GET_SCHEMA(cls): return None\nNODES = [{n}]\n"
    (pkg / "good.py").write_text(class_src.format(n="Good"))
    (pkg / "needs_dep.py").write_text(class_src.format(n="NeedsDep"))
    (pkg / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (pkg / "bad_schema.py").write_text(
        "class Bad:\n    @classmethod\n    def GET_SCHEMA(cls): raise ValueError('ids must be unique')\nNODES = [Bad]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = _load_registry()
    with caplog.at_level(logging.WARNING, logger="ComfyUI-DreamActor"):
        classes = registry.load_node_classes("fakepack", {
            "good": (), "needs_dep": ("a_module_that_is_not_installed",), "broken": (), "bad_schema": ()})
    assert [c.__name__ for c in classes] == ["Good"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert any("'needs_dep' left out: missing a_module_that_is_not_installed (pip install" in m for m in messages)
    assert any("'broken' left out: RuntimeError: boom at import" in m for m in messages)
    assert any("node Bad left out: invalid schema: ids must be unique" in m for m in messages)


def test_every_node_module_is_registered_and_documented():
    registry = _load_registry()
    readme = (ROOT / "README.md").read_text()
    for module in registry.NODE_MODULES:
        src = (ROOT / "nodes" / f"{module}.py").read_text()
        node_ids = [kw.value.value for kw in ast.walk(ast.parse(src))
                    if isinstance(kw, ast.keyword) and kw.arg == "node_id"]
        assert node_ids, f"nodes/{module}.py declares no node"
        for node_id in node_ids:
            assert f"`{node_id}`" in readme, f"{node_id} is not documented in README.md"
