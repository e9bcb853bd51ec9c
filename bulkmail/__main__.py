"""``python -m bulkmail``: the same as the ``bulkmail`` command."""

import sys

from bulkmail.cli import main

sys.exit(main())
