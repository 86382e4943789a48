"""The frame codec: masking, frame headers, the stream reader, UTF-8.

This module picks the implementation, once, at import time: the compiled
extension :mod:`wsfast._speedups` unless it is missing or the environment
variable ``WSFAST_PURE_PYTHON`` is set to ``1``, else the pure-Python twin
:mod:`wsfast._fallback`. Both have the same interface and give the same
results; everything else in wsfast imports the codec from here.
"""

from __future__ import annotations

import os

if os.environ.get("WSFAST_PURE_PYTHON", "") == "1":
    from . import _fallback as _impl
else:
    try:
        from . import _speedups as _impl  # type: ignore[no-redef]
    except ImportError:  # not compiled: a build without a compiler, or PyPy
        from . import _fallback as _impl

HAS_SPEEDUPS: bool = _impl.IMPLEMENTATION == "cython"
"""``True`` when the compiled extension is in use."""

IMPLEMENTATION: str = _impl.IMPLEMENTATION
"""``"cython"`` or ``"python"``."""

OP_CONT = _impl.OP_CONT
OP_TEXT = _impl.OP_TEXT
OP_BINARY = _impl.OP_BINARY
OP_CLOSE = _impl.OP_CLOSE
OP_PING = _impl.OP_PING
OP_PONG = _impl.OP_PONG

apply_mask = _impl.apply_mask
mask_inplace = _impl.mask_inplace
mask_key = _impl.mask_key
parse_header = _impl.parse_header
build_header = _impl.build_header
build_frame = _impl.build_frame
FrameReader = _impl.FrameReader
Utf8Validator = _impl.Utf8Validator
validate_utf8 = _impl.validate_utf8
get_buffer_path = _impl.get_buffer_path
read_path = _impl.read_path
send_binary_path = _impl.send_binary_path
send_text_path = _impl.send_text_path
SocketTransport = _impl.SocketTransport

__all__ = [
    "HAS_SPEEDUPS",
    "IMPLEMENTATION",
    "OP_CONT",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "apply_mask",
    "mask_inplace",
    "mask_key",
    "parse_header",
    "build_header",
    "build_frame",
    "FrameReader",
    "Utf8Validator",
    "validate_utf8",
    "get_buffer_path",
    "read_path",
    "send_binary_path",
    "send_text_path",
    "SocketTransport",
]
