"""The replacements :mod:`wsfast.integrations.accelerate` installs, and where.

Each ``plan_<target>(release)`` imports the target (with
:func:`importlib.import_module`, so that type checking does not depend on which
targets are installed) and returns its patches for the installed release
(a tuple such as ``(1, 3, 2)``):
``(owner, attribute, replacement)``, where ``owner`` is the module or class
whose namespace the target reads the name from at call time. A replacement
takes the same arguments and returns the same values (types included) as the
original; only the work is done by :mod:`wsfast.codec`.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any, Generator, Optional, Union

from ..codec import Utf8Validator, apply_mask, build_frame, mask_inplace
from ..compat import wsaccel

if TYPE_CHECKING:
    from .._fallback import Buffer

Patch = tuple[Any, str, Any]
Release = tuple[int, ...]


# ---------------------------------------------------------------- websockets

# Bound by plan_websockets(): websockets' Opcode members by value, its
# StreamReader class, its frames module, and the original Frame.parse.
_websockets: dict[str, Any] = {}


def websockets_parse(
    cls: Any, read_exact: Any, *, mask: bool, max_size: Optional[int] = None, extensions: Any = None
) -> Generator[None, None, Any]:
    """``websockets.frames.Frame.parse`` with a fast path: when the stream
    reader's buffer already holds the whole frame, it is parsed there in one
    go, with the checks, exceptions and results of the original, which takes
    every other case (a frame still arriving, a bad opcode or mask bit, a
    frame over ``max_size``)."""
    reader: Any = getattr(read_exact, "__self__", None)
    if type(reader) is _websockets["StreamReader"]:
        buffer = reader.buffer
        size = len(buffer)
        if size >= 2:
            head1, head2 = buffer[0], buffer[1]
            opcode = _websockets["opcodes"].get(head1 & 0x0F)
            if opcode is not None and bool(head2 & 0x80) == mask:
                length, start = head2 & 0x7F, 2
                if length == 126:
                    length, start = (int.from_bytes(buffer[2:4], "big"), 4) if size >= 4 else (-1, 0)
                elif length == 127:
                    length, start = (int.from_bytes(buffer[2:10], "big"), 10) if size >= 10 else (-1, 0)
                end = start + (4 if mask else 0) + length
                if 0 <= length and (max_size is None or length <= max_size) and end <= size:
                    if mask:
                        with memoryview(buffer) as view, view[start + 4 : end] as payload:
                            data: Any = apply_mask(payload, buffer[start : start + 4])
                    else:
                        data = buffer[start:end]
                    del buffer[:end]
                    frame = cls(
                        opcode, data, bool(head1 & 0x80), bool(head1 & 0x40), bool(head1 & 0x20), bool(head1 & 0x10)
                    )
                    for extension in reversed(extensions or ()):
                        frame = extension.decode(frame, max_size=max_size)
                    frame.check()
                    return frame
    return (yield from _websockets["parse"](cls, read_exact, mask=mask, max_size=max_size, extensions=extensions))


def websockets_serialize(self: Any, *, mask: bool, extensions: Any = None) -> bytes:
    """``websockets.frames.Frame.serialize``, built in one buffer by
    :func:`wsfast.codec.build_frame`; the mask key still comes from
    ``websockets.frames.secrets.token_bytes(4)``, as in the original."""
    self.check()
    for extension in extensions or ():
        self = extension.encode(self)
    rsv = (4 if self.rsv1 else 0) | (2 if self.rsv2 else 0) | (1 if self.rsv3 else 0)
    if mask:
        return build_frame(self.opcode, self.data, self.fin, rsv, _websockets["frames"].secrets.token_bytes(4))
    return build_frame(self.opcode, self.data, self.fin, rsv)


_WEBSOCKETS_PARSE = classmethod(websockets_parse)  # one object: unpatching checks identity


def plan_websockets(release: Release) -> list[Patch]:
    """``apply_mask`` where websockets looks it up, and ``Frame.parse`` / ``Frame.serialize``."""
    frames = import_module("websockets.frames")
    if vars(frames.Frame)["parse"] is not _WEBSOCKETS_PARSE:
        _websockets["parse"] = vars(frames.Frame)["parse"].__func__
    _websockets["StreamReader"] = import_module("websockets.streams").StreamReader
    _websockets["opcodes"] = {int(opcode): opcode for opcode in frames.Opcode}
    _websockets["frames"] = frames
    patches: list[Patch] = [
        (frames, "apply_mask", apply_mask),
        (frames.Frame, "parse", _WEBSOCKETS_PARSE),
        (frames.Frame, "serialize", websockets_serialize),
    ]
    # websockets.legacy warns when imported (deprecated since 14.0): patched
    # only when the application imported it already.
    legacy = sys.modules.get("websockets.legacy.framing")
    if legacy is not None and hasattr(legacy, "apply_mask"):
        patches.append((legacy, "apply_mask", apply_mask))
    return patches


# ---------------------------------------------------------------- wsproto


class WsprotoXorMasker:
    """``wsproto.frame_protocol.XorMaskerSimple`` of wsproto 1.3: ``process``
    returns a new bytearray, the key's phase carried over to the next call."""

    __slots__ = ("_key", "_phase")

    def __init__(self, masking_key: Union[bytes, bytearray]) -> None:
        self._key = bytes(masking_key)
        self._phase = 0

    def process(self, data: Buffer) -> bytearray:
        """Mask the next piece of the payload into a new bytearray."""
        out = bytearray(data)
        self._phase = mask_inplace(out, self._key, 0, self._phase)
        return out


class WsprotoXorMaskerBytes(WsprotoXorMasker):
    """The same for wsproto 1.2, whose masker returns bytes (and an empty
    input as is)."""

    __slots__ = ()

    def process(self, data: Buffer) -> bytes:  # type: ignore[override]
        """Mask the next piece of the payload into new bytes."""
        if not data:
            return data  # type: ignore[return-value]
        phase = self._phase
        key = self._key if not phase else self._key[phase:] + self._key[:phase]
        out = apply_mask(data, key)
        self._phase = (phase + len(out)) & 3
        return out


# Bound by plan_wsproto(): wsproto.frame_protocol.
_wsproto: dict[str, Any] = {}


def wsproto_serialize_frame(self: Any, opcode: Any, payload: Any = b"", fin: bool = True) -> bytearray:
    """``wsproto.frame_protocol.FrameProtocol._serialize_frame``, built in one
    buffer by :func:`wsfast.codec.build_frame`; a client's mask key still
    comes from ``os.urandom(4)`` in wsproto's module, as in the original."""
    module = _wsproto["module"]
    rsv = module.RsvBits(False, False, False)
    if self.extensions:
        if _wsproto["as_bytes"]:  # 1.3 hands its extensions bytes; 1.2 the payload as given
            payload = bytearray(payload)
            for extension in reversed(self.extensions):
                rsv, payload = extension.frame_outbound(self, opcode, rsv, bytes(payload), fin)
        else:
            for extension in reversed(self.extensions):
                rsv, payload = extension.frame_outbound(self, opcode, rsv, payload, fin)
    if len(payload) > 125 and opcode.iscontrol():
        raise ValueError("payload too long for control frame")
    bits = (4 if rsv.rsv1 else 0) | (2 if rsv.rsv2 else 0) | (1 if rsv.rsv3 else 0)
    if self.client:
        return bytearray(build_frame(opcode, payload, fin, bits, module.os.urandom(4)))
    return bytearray(build_frame(opcode, payload, fin, bits))


def plan_wsproto(release: Release) -> list[Patch]:
    """wsproto's pure-Python masker, used by its frame decoder, and its frame serializer.

    Its UTF-8 handling is left alone: it decodes with CPython's incremental
    decoder, which is the validation too; a leaner decoder object measured no
    faster.
    """
    module = import_module("wsproto.frame_protocol")
    _wsproto["module"] = module
    _wsproto["as_bytes"] = release >= (1, 3)
    return [
        (module, "XorMaskerSimple", WsprotoXorMasker if release >= (1, 3) else WsprotoXorMaskerBytes),
        (module.FrameProtocol, "_serialize_frame", wsproto_serialize_frame),
    ]


# ---------------------------------------------------------------- tornado


def tornado_websocket_mask(mask: bytes, data: bytes) -> bytes:
    """``tornado.util._websocket_mask`` (note the argument order)."""
    return apply_mask(data, mask)


def plan_tornado(release: Release) -> list[Patch]:
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


# Bound by plan_websocket_client(): the original validate_utf8.
_websocket_client: dict[str, Any] = {}


def websocket_client_validate_utf8(utfbytes: Union[str, bytes]) -> bool:
    """``websocket._utils.validate_utf8``: ``False`` at a bad byte.

    As the original (both its wsaccel and its pure-Python variants), a text
    that ends inside a code point is not rejected here. A ``str`` goes to the
    original (versions differ on it; websocket-client itself passes bytes).
    """
    if isinstance(utfbytes, str):
        return bool(_websocket_client["validate_utf8"](utfbytes))
    return Utf8Validator().feed(utfbytes)


def plan_websocket_client(release: Release) -> list[Patch]:
    """websocket-client's frame masking and UTF-8 validation."""
    abnf = import_module("websocket._abnf")
    utils = import_module("websocket._utils")
    if utils.validate_utf8 is not websocket_client_validate_utf8:
        _websocket_client["validate_utf8"] = utils.validate_utf8
    return [
        (abnf.ABNF, "mask", _WEBSOCKET_CLIENT_MASK),
        (abnf, "_mask", websocket_client_xor),
        (abnf, "validate_utf8", websocket_client_validate_utf8),
        (utils, "validate_utf8", websocket_client_validate_utf8),
    ]


# ---------------------------------------------------------------- autobahn


def plan_autobahn(release: Release) -> list[Patch]:
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


def plan_ws4py(release: Release) -> list[Patch]:
    """ws4py's per-byte masking loop and its pure-Python validator."""
    frame = import_module("ws4py.framing").Frame
    return [
        (frame, "mask", ws4py_mask),
        (frame, "unmask", ws4py_mask),
        (import_module("ws4py.streaming"), "Utf8Validator", wsaccel.Utf8Validator),
        (import_module("ws4py.utf8validator"), "Utf8Validator", wsaccel.Utf8Validator),
    ]
