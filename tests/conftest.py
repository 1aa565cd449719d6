import os

# Triton kernels run in its interpreter on CPU tensors unless a GPU run says otherwise
# (`TRITON_INTERPRET=0 pytest -m gpu`); it must be set before anything imports triton.
os.environ.setdefault("TRITON_INTERPRET", "1")
