"""mrdistill: knowledge distillation for accelerated MRI reconstruction."""

__version__ = "0.1.0"
