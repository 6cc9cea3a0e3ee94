import sys

from belabox_metrics.cli import main

sys.exit(main())
