"""pytest --nbmake runs every notebook here in fast mode (fewer images and epochs, the same recipe) unless
the caller sets VLP_FAST itself; the kernels inherit this environment. With several pytest workers, each
kernel takes its share of the cores (threads beyond the cores slow every kernel down several times)."""

import os

os.environ.setdefault("VLP_FAST", "1")
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
