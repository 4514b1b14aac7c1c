"""The host side of a running accelerator: ``driver`` (programs a device with a bundle and runs
networks layer job by layer job over any transport) and ``uart`` (a board over the UART
protocol as such a transport).
"""
