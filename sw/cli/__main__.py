"""``python -m bitline.sw.cli``: the same as the ``bitline`` command."""

from bitline.sw.cli import main

main()
