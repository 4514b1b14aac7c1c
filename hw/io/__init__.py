"""Board I/O: ``uart`` (8N1 receiver and transmitter) and ``uart_bridge`` (the command decoder
of the UART host protocol in :mod:`bitline.hw.spec.uart_protocol`); ``axi`` (the accelerator
behind AXI4-Lite and AXI4-Stream, docs/integration.md).
"""
