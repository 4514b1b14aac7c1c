"""The host compiler and driver (docs/architecture.md).

``frontend`` (ONNX -> IR, float model), ``passes`` (IR -> IR rewrites), ``quant`` (quantizers
and mixed-precision search), ``integer`` (the quantized model and its integer arithmetic),
``mapping`` (the five strategies), ``bundle`` (``image.bin`` + manifest), ``perf``
(performance, energy and area), ``host`` (driver and UART host), ``flow`` (the declared
compile steps) and ``cli`` (the ``bitline`` command, a thin shell). Nothing here imports
``bitline.sim`` outside ``cli``.
"""
