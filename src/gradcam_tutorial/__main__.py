"""``python -m gradcam_tutorial`` runs the ``gradcam`` command (handy where scripts are not on PATH)."""

import sys

from .cli import main

sys.exit(main())
