"""Builders of varad backbone ONNX files (see scripts/README.md)."""
