"""Model front-end: ``onnx_import`` (ONNX -> IR, conversion only), ``ir`` (the float IR),
``float_model`` (runs the IR in float32) and ``im2col`` (the one window layout).
"""
