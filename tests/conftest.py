import os

# Triton kernels run in its interpreter on CPU tensors unless a GPU run says otherwise
# (`TRITON_INTERPRET=0 pytest -m gpu`); it must be set before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

from sqbert_fast.peers import strict_fp32  # noqa: E402  (after TRITON_INTERPRET)

# The GPU tests' ground truth is transformers (and the reference backend) in fp32 on the GPU: true fp32,
# not the TF32 convolutions PyTorch allows by default.
strict_fp32()
