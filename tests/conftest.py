import os

# Keep thread pools small: CI has 2 cores and tests run numerics in several libraries at once.
os.environ.setdefault("OMP_NUM_THREADS", "2")
