import os

# Triton kernels run in its interpreter on CPU tensors unless a GPU run says otherwise
# (`TRITON_INTERPRET=0 pytest -m gpu`); it must be set before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402  (after TRITON_INTERPRET)

# The GPU tests' ground truth is transformers (and the reference backend) in fp32 on the GPU. PyTorch lets
# cuDNN run fp32 convolutions, SqueezeBERT's 1x1 convs included, in TF32 by default: about 5e-4 of error on
# these models, five times the fp32 bound (seen on an H100). The references must be true fp32.
if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision"):
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"
else:  # torch < 2.9
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
