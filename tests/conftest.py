import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

from vlp_core.backbone import load_clip


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
