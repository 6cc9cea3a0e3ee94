import sys

from belabox_metrics.commands.cli import main

sys.exit(main())
