"""Extra FPGA constraint files, one per board family (package data, no code; see README.md).

:meth:`bitline.hw.boards.Board.constraints_file` finds them through
:mod:`importlib.resources` (``files("bitline.constraints") / "ulx3s.lpf"``), in a source
checkout and in an installed wheel alike. This file makes the folder a regular package:
Python 3.11's ``importlib.resources`` cannot read a namespace package under setuptools'
editable install.
"""
