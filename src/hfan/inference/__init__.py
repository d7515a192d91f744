"""Running a model: the official test path and its device, batch and precision policy (predictor.py), the fast
backends that compute the same logits (backends.py: torch.compile, onnxruntime), ONNX export (export.py) and
the allocator setting for long CPU runs (malloc.py)."""
