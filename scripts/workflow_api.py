"""UI-format workflow (what users load in ComfyUI) -> API-format prompt (what /prompt runs).

ComfyUI's server has no such converter; the frontend does it in the browser. This mirrors the
frontend for the plain graphs we ship (no subgraphs), using the server's /object_info to know
which inputs are widgets, and the browser test checks it against the frontend's own
``app.graphToPrompt()``.
"""

from __future__ import annotations

VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MUTED, BYPASSED = 2, 4
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _extra_widget_values(spec) -> int:
    """Frontend-only widget values that follow an input's own value in widgets_values."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    extra = 0
    if options.get("control_after_generate"):
        extra += 1
    if any(key.endswith("_upload") and value for key, value in options.items()):
        extra += 1
    return extra


def workflow_to_prompt(workflow: dict, object_info: dict) -> dict:
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow.get("links", [])}  # id -> [id, src, slot, dst, slot, type]
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        info = object_info.get(node["type"])
        if info is None:
            raise KeyError(f"node type {node['type']!r} (node {node['id']}) is not registered in this ComfyUI")
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info.get("input_order", {})
        names = order.get("required", []) + order.get("optional", [])
        linked = {}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                src = links[slot["link"]]
                if nodes[src[1]]["type"] in VIRTUAL_NODES:
                    raise ValueError(f"node {node['id']}: inputs through {nodes[src[1]]['type']} are not supported")
                linked[slot["name"]] = [str(src[1]), src[2]]
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name in names:
            spec = specs[name]
            if _is_widget(spec) and values:
                inputs[name] = values.pop(0)
                del values[:_extra_widget_values(spec)]
            if name in linked:
                inputs[name] = linked[name]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or info.get("display_name", node["type"])}}
    return prompt
