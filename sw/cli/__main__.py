"""``python -m bitline.sw.cli``: the same as the ``bitline`` command, exit code included."""

from bitline.sw.cli import main

raise SystemExit(main())
