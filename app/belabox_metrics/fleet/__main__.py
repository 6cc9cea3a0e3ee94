import sys

from belabox_metrics.fleet.cli import main

sys.exit(main())
