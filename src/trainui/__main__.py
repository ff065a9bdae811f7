import sys

from trainui.cli import main

sys.exit(main())
