"""Triton kernels of sqbert_fast, one file per fused op (installed as ``sqbert_fast._triton``)."""
