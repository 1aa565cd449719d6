import os

# Triton kernels run in its interpreter on CPU tensors unless a GPU run says otherwise
# (`TRITON_INTERPRET=0 pytest -m gpu`); it must be set before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

# `python -m pytest` puts the repository root on sys.path, where the Triton sources' folder `kernels/`
# would shadow PyPI's `kernels`, which transformers imports: importing sqbert_fast (which imports neither
# triton nor transformers) drops it.
import sqbert_fast  # noqa: E402,F401

from sqbert_fast.peers import strict_fp32  # noqa: E402  (after TRITON_INTERPRET)

# The GPU tests' ground truth is transformers (and the reference backend) in fp32 on the GPU: true fp32,
# not the TF32 convolutions PyTorch allows by default.
strict_fp32()
