"""`python -m vlp_core ...` is `vlp ...`; torchrun starts it as `torchrun ... -m vlp_core train ...`."""

import sys

from vlp_core.commands import main

sys.exit(main())
