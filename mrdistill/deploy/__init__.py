"""Shipping models: export (ONNX, TorchScript) with data consistency inside, parity, benchmarks."""
