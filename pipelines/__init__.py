"""Kubeflow pipelines of sayo; `sayo_pipeline.yaml` is the compiled, checked-in form of `sayo_pipeline.py`."""
