import os
import sys

# `python -m pytest` puts the repository root on sys.path, where the Triton sources' folder `kernels/`
# (installed as sqbert_fast._triton) would shadow PyPI's `kernels`, which transformers imports.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]

# Triton kernels run in its interpreter on CPU tensors unless a GPU run says otherwise
# (`TRITON_INTERPRET=0 pytest -m gpu`); it must be set before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

from sqbert_fast.peers import strict_fp32  # noqa: E402  (after TRITON_INTERPRET)

# The GPU tests' ground truth is transformers (and the reference backend) in fp32 on the GPU: true fp32,
# not the TF32 convolutions PyTorch allows by default.
strict_fp32()
