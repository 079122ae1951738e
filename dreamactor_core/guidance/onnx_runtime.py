"""One place that opens user-supplied ONNX models (optional backends) with onnxruntime."""

from __future__ import annotations


def inference_session(path: str, providers=None, backend: str = "this"):
    """An onnxruntime session on ``path``; a clear install hint when onnxruntime is missing."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(f"the {backend} backend needs onnxruntime: pip install onnxruntime "
                          "(or onnxruntime-gpu), or use the MediaPipe backend") from None
    return onnxruntime.InferenceSession(path, providers=providers or ["CPUExecutionProvider"])
