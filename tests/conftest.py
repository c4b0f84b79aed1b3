import os

os.environ.setdefault("MPLBACKEND", "Agg")
# `pytest` runs one worker per core (pytest-xdist, see pyproject.toml): each worker, and each notebook
# kernel it starts, uses its share of the cores instead of all of them
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import pytest
import torch

from vlp_core.backbone import load_clip

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))


@pytest.fixture(scope="session")
def tiny():
    """The random-weight tiny CLIP config (fast, exercises every code path)."""
    return load_clip("vlp-tiny", seed=0)


@pytest.fixture
def images(tiny):
    """Two random normalised images at the tiny model's resolution: (2, 3, 64, 64)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, tiny.image_size, tiny.image_size, generator=generator)


@pytest.fixture(scope="session")
def app_server(tiny, tmp_path_factory):
    """The app served on 127.0.0.1 over the tiny CLIP with no prompt checkpoints (learned methods
    untrained), shared by the server and browser tests."""
    from app.main import serve
    from app.models import load_models

    demo = serve(load_models(tiny, tmp_path_factory.mktemp("no-prompts")))
    yield demo
    demo.close()
