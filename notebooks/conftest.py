"""pytest --nbmake runs every notebook here in fast mode (fewer images, epochs and seeds) unless the
caller sets VLP_FAST itself; the kernels inherit this environment."""

import os

os.environ.setdefault("VLP_FAST", "1")
