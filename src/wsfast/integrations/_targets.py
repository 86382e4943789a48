"""The replacements :mod:`wsfast.integrations.accelerate` installs, and where.

Each ``plan_<target>()`` imports the target (with :func:`importlib.import_module`,
so that type checking does not depend on which targets are installed) and
returns its patches:
``(owner, attribute, replacement)``, where ``owner`` is the module or class
whose namespace the target reads the name from at call time. A replacement
takes the same arguments and returns the same values (types included) as the
original; only the work is done by :mod:`wsfast.codec`.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any, Union

from ..codec import Utf8Validator, apply_mask, mask_inplace
from ..compat import wsaccel

if TYPE_CHECKING:
    from .._fallback import Buffer

Patch = tuple[Any, str, Any]


# ---------------------------------------------------------------- websockets


def plan_websockets() -> list[Patch]:
    """``apply_mask`` where websockets' frame parsers and serializers look it up."""
    frames = import_module("websockets.frames")
    patches: list[Patch] = [(frames, "apply_mask", apply_mask)]
    # websockets.legacy warns when imported (deprecated since 14.0): patched
    # only when the application imported it already.
    legacy = sys.modules.get("websockets.legacy.framing")
    if legacy is not None and hasattr(legacy, "apply_mask"):
        patches.append((legacy, "apply_mask", apply_mask))
    return patches


# ---------------------------------------------------------------- wsproto


class WsprotoXorMasker:
    """``wsproto.frame_protocol.XorMaskerSimple``: ``process`` returns a new
    bytearray, the key's phase carried over to the next call."""

    __slots__ = ("_key", "_phase")

    def __init__(self, masking_key: Union[bytes, bytearray]) -> None:
        self._key = bytes(masking_key)
        self._phase = 0

    def process(self, data: Buffer) -> bytearray:
        """Mask the next piece of the payload into a new bytearray."""
        out = bytearray(data)
        self._phase = mask_inplace(out, self._key, 0, self._phase)
        return out


def plan_wsproto() -> list[Patch]:
    """wsproto's pure-Python masker, used by its frame decoder and serializer."""
    return [(import_module("wsproto.frame_protocol"), "XorMaskerSimple", WsprotoXorMasker)]


# ---------------------------------------------------------------- tornado


def tornado_websocket_mask(mask: bytes, data: bytes) -> bytes:
    """``tornado.util._websocket_mask`` (note the argument order)."""
    return apply_mask(data, mask)


def plan_tornado() -> list[Patch]:
    """``_websocket_mask`` in tornado.util and in the modules that imported it."""
    modules = [import_module(name) for name in ("tornado.util", "tornado.websocket", "tornado.web")]
    return [(module, "_websocket_mask", tornado_websocket_mask) for module in modules]


# ---------------------------------------------------------------- websocket-client


def websocket_client_mask(mask_key: Union[str, bytes], data: Union[str, bytes, None]) -> bytes:
    """``websocket.ABNF.mask``: str arguments are latin-1, ``None`` is empty."""
    if data is None:
        data = ""
    if isinstance(mask_key, str):
        mask_key = mask_key.encode("latin-1")
    if isinstance(data, str):
        data = data.encode("latin-1")
    return apply_mask(data, mask_key)


_WEBSOCKET_CLIENT_MASK = staticmethod(websocket_client_mask)  # one object: unpatching checks identity


def websocket_client_xor(mask_value: Buffer, data_value: Buffer) -> bytes:
    """``websocket._abnf._mask``, given arrays of bytes."""
    return apply_mask(data_value, mask_value)


def websocket_client_validate_utf8(utfbytes: Union[str, bytes]) -> bool:
    """``websocket._utils.validate_utf8``: ``False`` at a bad byte.

    As the original (both its wsaccel and its pure-Python variants), a text
    that ends inside a code point is not rejected here.
    """
    if isinstance(utfbytes, str):
        utfbytes = utfbytes.encode("utf-8", "surrogatepass")
    return Utf8Validator().feed(utfbytes)


def plan_websocket_client() -> list[Patch]:
    """websocket-client's frame masking and UTF-8 validation."""
    abnf = import_module("websocket._abnf")
    utils = import_module("websocket._utils")
    return [
        (abnf.ABNF, "mask", _WEBSOCKET_CLIENT_MASK),
        (abnf, "_mask", websocket_client_xor),
        (abnf, "validate_utf8", websocket_client_validate_utf8),
        (utils, "validate_utf8", websocket_client_validate_utf8),
    ]


# ---------------------------------------------------------------- autobahn


def plan_autobahn() -> list[Patch]:
    """Autobahn's validator and masker factory, in its protocol and their own modules."""
    protocol = import_module("autobahn.websocket.protocol")
    utf8validator = import_module("autobahn.websocket.utf8validator")
    xormasker = import_module("autobahn.websocket.xormasker")
    return [
        (protocol, "Utf8Validator", wsaccel.Utf8Validator),
        (protocol, "create_xor_masker", wsaccel.createXorMasker),
        (utf8validator, "Utf8Validator", wsaccel.Utf8Validator),
        (xormasker, "create_xor_masker", wsaccel.createXorMasker),
    ]


# ---------------------------------------------------------------- ws4py


def ws4py_mask(self: Any, data: Buffer) -> bytearray:
    """``ws4py.framing.Frame.mask`` and ``unmask``: a new bytearray."""
    masked = bytearray(data)
    mask_inplace(masked, self.masking_key, 0, 0)
    return masked


def plan_ws4py() -> list[Patch]:
    """ws4py's per-byte masking loop and its pure-Python validator."""
    frame = import_module("ws4py.framing").Frame
    return [
        (frame, "mask", ws4py_mask),
        (frame, "unmask", ws4py_mask),
        (import_module("ws4py.streaming"), "Utf8Validator", wsaccel.Utf8Validator),
        (import_module("ws4py.utf8validator"), "Utf8Validator", wsaccel.Utf8Validator),
    ]
