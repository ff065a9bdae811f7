"""``python -m trainui.learner``: the learner (see ``trainui.learner``)."""

import sys

from trainui.learner import main

sys.exit(main())
