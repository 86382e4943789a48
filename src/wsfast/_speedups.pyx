# cython: language_level=3, freethreading_compatible=True, binding=False
"""Compiled frame codec of wsfast: masking, frame headers, the stream reader
and incremental UTF-8 validation.

:mod:`wsfast._fallback` is its pure-Python twin, with the same interface and
the same results on every input. Import the codec from :mod:`wsfast.codec`,
which picks one of the two.
"""

from cpython.buffer cimport (
    PyBUF_FULL_RO,
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_IsContiguous,
    PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_CheckExact, PyByteArray_GET_SIZE
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
    _PyBytes_Resize,
)
from cpython.list cimport PyList_GET_SIZE
from cpython.memoryview cimport PyMemoryView_Check, PyMemoryView_GET_BUFFER
from cpython.number cimport PyNumber_Index
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8
from libc.string cimport memcpy

cimport cython

import os
from socket import AF_INET, AF_INET6, IPPROTO_TCP, TCP_NODELAY, SHUT_WR as socket_SHUT_WR

from wsfast.exceptions import FrameError

cdef extern from "_kernels.h" nogil:
    ctypedef struct wsf_utf8_state:
        unsigned int dfa
    void wsf_utf8_init()
    void wsf_mask(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char *key)
    ptrdiff_t wsf_utf8_feed(wsf_utf8_state *st, const unsigned char *s, size_t n)

IMPLEMENTATION = "cython"

wsf_utf8_init()

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

cdef enum:
    MAX_CONTROL = 125        # largest control frame payload (RFC 6455 5.5)
    NOGIL_THRESHOLD = 65536  # release the GIL for buffers from this size up
    KEY_BLOCK_SIZE = 4096    # bytes of os.urandom pooled for masking keys
    PREALLOCATE = 1048576    # payloads up to this size are allocated at once

cdef Py_ssize_t PY_SSIZE_T_MAX_ = <Py_ssize_t>((<size_t>-1) >> 1)

# ---------------------------------------------------------------- buffers


cdef inline int _read_buffer(object obj, Py_buffer *view) except -1:
    """Borrow a read-only, C-contiguous view of ``obj``.

    Returns 1 when a buffer was acquired and must be given back with
    :func:`_release`, 0 for ``bytes``, which are read without a call.
    """
    if PyBytes_CheckExact(obj):
        view.buf = PyBytes_AS_STRING(obj)
        view.len = PyBytes_GET_SIZE(obj)
        return 0
    if not PyObject_CheckBuffer(obj):
        raise TypeError("data must be a bytes-like object")
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    return 1


cdef inline void _release(Py_buffer *view, int acquired) noexcept:
    if acquired:
        PyBuffer_Release(view)


cdef inline int _read_key(object mask, unsigned char *key) except -1:
    cdef Py_buffer view
    if PyBytes_CheckExact(mask) and PyBytes_GET_SIZE(mask) == 4:
        memcpy(key, PyBytes_AS_STRING(mask), 4)
        return 0
    if not PyObject_CheckBuffer(mask):
        raise TypeError("mask must be a bytes-like object")
    PyObject_GetBuffer(mask, &view, PyBUF_SIMPLE)
    if view.len != 4:
        PyBuffer_Release(&view)
        raise ValueError("mask must contain 4 bytes")
    memcpy(key, view.buf, 4)
    PyBuffer_Release(&view)
    return 0


cdef inline void _rotate(const unsigned char *key, Py_ssize_t phase, unsigned char *out) noexcept nogil:
    out[0] = key[phase & 3]
    out[1] = key[(phase + 1) & 3]
    out[2] = key[(phase + 2) & 3]
    out[3] = key[(phase + 3) & 3]


cdef inline void _mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n,
                       const unsigned char *key) noexcept:
    if n >= NOGIL_THRESHOLD:
        with nogil:
            wsf_mask(dst, src, <size_t>n, key)
    else:
        wsf_mask(dst, src, <size_t>n, key)


# ---------------------------------------------------------------- masking


def apply_mask(data, mask):
    """Return ``data`` XOR-ed with the 4-byte ``mask`` (RFC 6455 section 5.3).

    Accepts any C-contiguous bytes-like object; the signature matches
    ``websockets.speedups.apply_mask``.
    """
    cdef unsigned char key[4]
    cdef Py_buffer view
    cdef int acquired
    cdef bytes out
    _read_key(mask, key)
    acquired = _read_buffer(data, &view)
    try:
        out = PyBytes_FromStringAndSize(NULL, view.len)
        _mask(<unsigned char *>PyBytes_AS_STRING(out), <const unsigned char *>view.buf, view.len, key)
    finally:
        _release(&view, acquired)
    return out


def mask_inplace(buffer, mask, Py_ssize_t start=0, Py_ssize_t phase=0, /):
    """XOR ``buffer[start:]`` in place with ``mask`` rotated by ``phase``.

    ``phase`` is the position in the key of the first byte (0-3), so a payload
    that arrives in pieces can be unmasked piece by piece. Returns the phase
    for the byte that follows.
    """
    cdef unsigned char key[4]
    cdef unsigned char rkey[4]
    cdef Py_buffer view
    cdef Py_ssize_t n
    if PyBytes_CheckExact(mask) and PyBytes_GET_SIZE(mask) == 4:
        memcpy(key, PyBytes_AS_STRING(mask), 4)
    else:
        _read_key(mask, key)
    if PyByteArray_CheckExact(buffer) and PyByteArray_GET_SIZE(buffer) < NOGIL_THRESHOLD:
        # The common case, without a buffer export: the GIL stays held, so
        # the bytearray cannot be resized meanwhile.
        n = PyByteArray_GET_SIZE(buffer)
        _check_span(start, phase, n)
        _rotate(key, phase, rkey)
        wsf_mask(<unsigned char *>PyByteArray_AS_STRING(buffer) + start,
                 <unsigned char *>PyByteArray_AS_STRING(buffer) + start, <size_t>(n - start), rkey)
        return (phase + n - start) & 3
    if not PyObject_CheckBuffer(buffer):
        raise TypeError("mask_inplace needs a writable buffer")
    PyObject_GetBuffer(buffer, &view, PyBUF_FULL_RO)
    try:
        if view.readonly:
            raise TypeError("mask_inplace needs a writable buffer")
        if not PyBuffer_IsContiguous(&view, b'C'):
            raise BufferError("data must be a C-contiguous buffer")
        n = view.len
        _check_span(start, phase, n)
        _rotate(key, phase, rkey)
        _mask(<unsigned char *>view.buf + start, <unsigned char *>view.buf + start, n - start, rkey)
    finally:
        PyBuffer_Release(&view)
    return (phase + n - start) & 3


cdef inline int _check_span(Py_ssize_t start, Py_ssize_t phase, Py_ssize_t n) except -1:
    if start < 0 or start > n:
        raise ValueError("start must be between 0 and len(buffer)")
    if phase < 0 or phase > 3:
        raise ValueError("phase must be between 0 and 3")
    return 0


cdef unsigned char _key_block[KEY_BLOCK_SIZE]
cdef Py_ssize_t _key_pos = KEY_BLOCK_SIZE
_urandom = os.urandom


cdef inline int _next_key(unsigned char *key) except -1:
    global _key_pos
    cdef bytes block
    if _key_pos >= KEY_BLOCK_SIZE:
        block = _urandom(KEY_BLOCK_SIZE)
        memcpy(_key_block, PyBytes_AS_STRING(block), KEY_BLOCK_SIZE)
        _key_pos = 0
    memcpy(key, _key_block + _key_pos, 4)
    _key_pos += 4
    return 0


cdef void _forget_keys() noexcept:
    global _key_pos
    _key_pos = KEY_BLOCK_SIZE


def _after_fork_in_child():
    """A forked child must not hand out its parent's keys."""
    _forget_keys()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def mask_key():
    """Return a fresh 4-byte masking key (RFC 6455 section 10.3).

    Keys are sliced from a pooled ``os.urandom`` block, refilled when used up:
    cryptographically random, without a system call per frame.
    """
    cdef unsigned char key[4]
    _next_key(key)
    return PyBytes_FromStringAndSize(<char *>key, 4)


# ---------------------------------------------------------------- headers


cdef struct Header:
    int opcode
    int fin
    int rsv
    int masked
    Py_ssize_t size            # header length in bytes
    unsigned long long length  # payload length
    unsigned char key[4]


cdef inline bint _known_opcode(int opcode) noexcept nogil:
    return opcode <= 2 or 8 <= opcode <= 10


cdef int _parse(const unsigned char *p, Py_ssize_t avail, Header *h) except -1:
    """Parse a header: 1 when complete, 0 when more bytes are needed."""
    cdef unsigned long long length
    cdef int i
    if avail < 2:
        return 0
    h.opcode = p[0] & 0x0F
    h.fin = (p[0] & 0x80) != 0
    h.rsv = (p[0] >> 4) & 7
    h.masked = (p[1] & 0x80) != 0
    length = p[1] & 0x7F
    if not _known_opcode(h.opcode):
        raise FrameError(1002, f"reserved opcode {h.opcode:#x}")
    if h.opcode & 0x8:
        if not h.fin:
            raise FrameError(1002, "fragmented control frame")
        if length > MAX_CONTROL:
            raise FrameError(1002, "control frame payload longer than 125 bytes")
    h.size = 2
    if length == 126:
        h.size = 4
    elif length == 127:
        h.size = 10
    if h.masked:
        h.size += 4
    if avail < h.size:
        return 0
    if length == 126:
        length = (<unsigned long long>p[2] << 8) | p[3]
    elif length == 127:
        length = 0
        for i in range(2, 10):
            length = (length << 8) | p[i]
        if length >> 63:
            raise FrameError(1002, "frame length with the most significant bit set")
    h.length = length
    if h.masked:
        memcpy(h.key, p + h.size - 4, 4)
    return 1


def parse_header(data, Py_ssize_t offset=0):
    """Parse the frame header that starts at ``data[offset]``.

    Returns ``(opcode, fin, rsv, length, mask, header_length)`` where ``rsv``
    holds RSV1-3 as bits 2-0 (RSV1 = 4) and ``mask`` is the 4-byte key or
    ``None``; or ``None`` when more bytes are needed. Raises
    :class:`~wsfast.exceptions.FrameError` (code 1002) for a reserved opcode,
    a fragmented or over-long control frame, or a 64-bit length with its top
    bit set.
    """
    cdef Py_buffer view
    cdef int acquired
    cdef Header h
    cdef int complete
    cdef Py_ssize_t start
    acquired = _read_buffer(data, &view)
    try:
        if offset < 0:
            raise ValueError("offset must not be negative")
        start = view.len if offset > view.len else offset
        complete = _parse(<const unsigned char *>view.buf + start, view.len - start, &h)
    finally:
        _release(&view, acquired)
    if not complete:
        return None
    mask = PyBytes_FromStringAndSize(<char *>h.key, 4) if h.masked else None
    return h.opcode, bool(h.fin), h.rsv, h.length, mask, h.size


cdef int _check_opcode_rsv(Py_ssize_t opcode, Py_ssize_t rsv, int *op, int *bits) except -1:
    """Check ``opcode`` and ``rsv``, into C ints."""
    if not (0 <= opcode <= 15 and _known_opcode(<int>opcode)):
        raise ValueError(f"reserved opcode {opcode:#x}")
    if rsv < 0 or rsv > 7:
        raise ValueError("rsv must be between 0 and 7")
    op[0] = <int>opcode
    bits[0] = <int>rsv
    return 0


cdef int _check_build(int opcode, unsigned long long length, bint fin, int rsv) except -1:
    if length >> 63:
        raise ValueError("length must be between 0 and 2**63 - 1")
    if opcode & 0x8:
        if not fin:
            raise ValueError("control frames cannot be fragmented")
        if length > MAX_CONTROL:
            raise ValueError("control frame payload longer than 125 bytes")
    return 0


cdef inline Py_ssize_t _write_header(unsigned char *out, int opcode, unsigned long long length,
                                     bint fin, int rsv, bint masked) noexcept nogil:
    """Write a header without its key; return its length (2, 4 or 10)."""
    cdef int i
    out[0] = (0x80 if fin else 0) | (rsv << 4) | opcode
    cdef unsigned char m = 0x80 if masked else 0
    if length < 126:
        out[1] = m | <unsigned char>length
        return 2
    if length < 65536:
        out[1] = m | 126
        out[2] = <unsigned char>(length >> 8)
        out[3] = <unsigned char>length
        return 4
    out[1] = m | 127
    for i in range(8):
        out[2 + i] = <unsigned char>(length >> (56 - 8 * i))
    return 10


cdef inline unsigned long long _length(object length) except? 0xFFFFFFFFFFFFFFFF:
    length = PyNumber_Index(length)
    if length < 0 or length >> 63:
        raise ValueError("length must be between 0 and 2**63 - 1")
    return <unsigned long long>length


def build_header(Py_ssize_t opcode, length, fin=True, Py_ssize_t rsv=0, mask=None):
    """Return the header of a frame with a ``length``-byte payload.

    With a ``mask`` the header ends with the 4-byte key (the payload must then
    be masked with it). Raises ``ValueError`` for a frame RFC 6455 forbids.
    """
    cdef unsigned char out[14]
    cdef unsigned long long n
    cdef Py_ssize_t size
    cdef bint is_fin = fin
    cdef int op, bits
    _check_opcode_rsv(opcode, rsv, &op, &bits)
    n = _length(length)
    _check_build(op, n, is_fin, bits)
    if mask is None:
        size = _write_header(out, op, n, is_fin, bits, False)
    else:
        size = _write_header(out, op, n, is_fin, bits, True)
        _read_key(mask, out + size)
        size += 4
    return PyBytes_FromStringAndSize(<char *>out, size)


def build_frame(Py_ssize_t opcode, payload, fin=True, Py_ssize_t rsv=0, mask=None):
    """Return a whole frame: header, masking key and (masked) payload.

    ``mask`` is ``None`` or ``False`` for an unmasked frame (server side),
    ``True`` for a fresh key from :func:`mask_key` (client side), or a 4-byte
    key. The frame is written in one buffer in one pass.
    """
    cdef int op, bits
    _check_opcode_rsv(opcode, rsv, &op, &bits)
    return _build_frame(op, payload, fin, bits, mask)


cdef bytes _build_frame(int op, object payload, bint is_fin, int bits, object mask):
    """:func:`build_frame` once its opcode and RSV bits are checked."""
    cdef Py_buffer view
    cdef int acquired
    cdef unsigned char head[14]
    cdef unsigned char key[4]
    cdef Py_ssize_t size
    cdef bint masked = not (mask is None or mask is False)
    cdef bytes out
    cdef unsigned char *dst
    acquired = _read_buffer(payload, &view)
    try:
        _check_build(op, <unsigned long long>view.len, is_fin, bits)
        if masked:
            if mask is True:
                _next_key(key)
            else:
                _read_key(mask, key)
        size = _write_header(head, op, <unsigned long long>view.len, is_fin, bits, masked)
        if masked:
            memcpy(head + size, key, 4)
            size += 4
        out = PyBytes_FromStringAndSize(NULL, size + view.len)
        dst = <unsigned char *>PyBytes_AS_STRING(out)
        memcpy(dst, head, size)
        if masked:
            _mask(dst + size, <const unsigned char *>view.buf, view.len, key)
        elif view.len:
            memcpy(dst + size, view.buf, view.len)
    finally:
        _release(&view, acquired)
    return out


# ---------------------------------------------------------------- stream reader


cdef class FrameReader:
    """Split a byte stream into frames, whatever its chunking.

    ``feed(data)`` returns every frame that ``data`` completes, as
    ``(opcode, fin, rsv, payload)`` tuples with the payload unmasked. Between
    calls the reader keeps only an incomplete header (at most 14 bytes) or the
    payload received so far of the one incomplete frame: memory follows the
    bytes received, not the length a header announces (payloads up to 1 MiB
    are allocated at once, larger ones grow as they arrive).

    ``max_frame_size`` (bytes, ``None`` for no limit) is checked as soon as a
    header is read, before any payload is buffered: a larger frame raises
    :class:`~wsfast.exceptions.FrameError` with code 1009.
    ``max_compressed_frame_size`` replaces it for frames with RSV1 set
    (compressed by permessage-deflate, whose output may be a little larger
    than its input); ``None``: ``max_frame_size`` for those too.
    ``expect_masked`` is true on a server (clients must mask), false on a
    client (servers must not), ``None`` to accept both; a violation raises
    ``FrameError`` with code 1002.

    After a ``FrameError`` the reader stays failed: each later ``feed``
    raises a ``FrameError`` with the same code and reason. The error's
    ``frames`` holds the frames completed before the bad one in the failing
    call. A reader is not meant to be fed from two threads at once.
    """

    cdef object _max              # int or None
    cdef unsigned long long _limit
    cdef bint _has_limit
    cdef object _cmax             # for RSV1 frames: int or None
    cdef unsigned long long _climit
    cdef bint _has_climit
    cdef int _expect              # -1: either, 0: unmasked, 1: masked
    cdef unsigned char _head[14]  # an incomplete header
    cdef Py_ssize_t _head_len
    cdef PyObject *_buf           # owned bytes being filled, or NULL
    cdef Py_ssize_t _cap          # its allocated size
    cdef Py_ssize_t _got
    cdef Header _hdr
    cdef int _error_code
    cdef str _error_reason
    cdef object _sink             # during feed_dispatch: whom to call, or None
    cdef bint _text               # during feed_dispatch: decode text frames for it
    cdef object _raised           # the sink's exception, re-raised at the end

    def __init__(self, max_frame_size=1048576, expect_masked=None, max_compressed_frame_size=None):
        if max_frame_size is not None and max_frame_size < 0:
            raise ValueError("max_frame_size must not be negative")
        if max_compressed_frame_size is None:
            max_compressed_frame_size = max_frame_size
        elif max_compressed_frame_size < 0:
            raise ValueError("max_compressed_frame_size must not be negative")
        self._max = max_frame_size
        self._has_limit = max_frame_size is not None and max_frame_size < 2**64
        self._limit = <unsigned long long>max_frame_size if self._has_limit else 0
        self._cmax = max_compressed_frame_size
        self._has_climit = max_compressed_frame_size is not None and max_compressed_frame_size < 2**64
        self._climit = <unsigned long long>max_compressed_frame_size if self._has_climit else 0
        self._expect = -1 if expect_masked is None else (1 if expect_masked else 0)
        self._head_len = 0
        self._got = 0
        self._error_code = 0
        self._sink = None
        self._raised = None

    def __dealloc__(self):
        Py_XDECREF(self._buf)
        self._buf = NULL

    @property
    def max_frame_size(self):
        """The largest payload accepted, in bytes, or ``None``."""
        return self._max

    @property
    def max_compressed_frame_size(self):
        """The largest payload accepted in a frame with RSV1 set, or ``None``."""
        return self._cmax

    @property
    def buffered(self):
        """Bytes of the stream held for an incomplete frame."""
        return self._head_len + self._got

    def partial(self, Py_ssize_t start=0):
        """Describe the incomplete frame whose header has been read.

        Returns ``(opcode, fin, rsv, length, payload[start:received])`` with
        the payload received so far, unmasked, or ``None`` when no frame is
        in progress. Lets the protocol layer validate a large text frame as
        its bytes arrive.
        """
        if start < 0:
            raise ValueError("start must not be negative")
        if self._buf == NULL:
            return None
        if start > self._got:
            start = self._got
        data = PyBytes_FromStringAndSize(PyBytes_AS_STRING(<object>self._buf) + start, self._got - start)
        return self._hdr.opcode, self._hdr.fin == 1, self._hdr.rsv, self._hdr.length, data

    def feed(self, data):
        """Consume ``data``; return the frames it completes."""
        cdef list frames = []
        self._consume(data, -1, frames)
        return frames

    def feed_dispatch(self, data, sink, bint text=False):
        """Consume ``data``; deliver plain messages by direct calls.

        Each complete frame that is a whole message (FIN set, no RSV bit) is
        passed to ``sink.on_binary(payload)`` as soon as it is parsed, and
        with ``text`` a text one to ``sink.on_text(str)`` once it decodes as
        UTF-8, as long as every frame before it in this call went that way.
        From the first other frame on (a control frame, a fragment, RSV bits,
        invalid UTF-8), frames are returned as :meth:`feed` returns them, for
        the caller to handle in order. A ``FrameError``'s ``frames`` holds the
        frames completed before the bad one that were not delivered.

        If the sink raises, nothing more is delivered: the rest of ``data``
        is still parsed (the reader stays in step with the stream), its
        frames are dropped, and the sink's exception is raised.
        """
        cdef list frames = []
        self._dispatch(data, -1, sink, text, frames)
        return frames

    cdef int _dispatch(self, data, Py_ssize_t size, sink, bint text, list frames) except -1:
        """:meth:`feed_dispatch` of the first ``size`` bytes of ``data`` (all: -1)."""
        cdef object raised
        self._sink = sink
        self._text = text
        try:
            self._consume(data, size, frames)
        finally:
            self._sink = None
            raised = self._raised
            self._raised = None
            if raised is not None:
                raise raised
        return 0

    cdef int _consume(self, data, Py_ssize_t size, list frames) except -1:
        cdef Py_buffer view
        cdef int acquired
        if self._error_code:
            raise FrameError(self._error_code, self._error_reason)
        acquired = _read_buffer(data, &view)
        try:
            with cython.critical_section(self):
                self._feed(<const unsigned char *>view.buf, view.len if size < 0 else min(size, view.len), frames)
        except FrameError as exc:
            exc.frames = frames
            self._error_code = exc.code
            self._error_reason = exc.reason
            self._head_len = 0
            self._drop()
            raise
        finally:
            _release(&view, acquired)
        return 0

    cdef int _emit(self, int opcode, bint fin, int rsv, bytes payload, list frames) except -1:
        """A frame is complete: deliver it to the sink, or add it to ``frames``."""
        cdef object sink = self._sink
        cdef object message = None
        if sink is not None and fin and not rsv and PyList_GET_SIZE(frames) == 0:
            if opcode == 2:
                message = payload
            elif opcode == 1 and self._text:
                try:
                    message = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), NULL)
                except UnicodeDecodeError:
                    pass  # the caller reports it
            if message is not None:
                try:
                    if opcode == 2:
                        sink.on_binary(message)
                    else:
                        sink.on_text(message)
                except BaseException as exc:
                    self._sink = None
                    self._raised = exc
                return 0
        if self._raised is None:
            frames.append((opcode, fin, rsv, payload))
        return 0

    cdef void _drop(self) noexcept:
        Py_XDECREF(self._buf)
        self._buf = NULL
        self._got = 0

    cdef int _feed(self, const unsigned char *p, Py_ssize_t n, list frames) except -1:
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t take
        cdef Header h
        if self._buf != NULL:
            pos = self._fill(p, n, frames)
            if self._buf != NULL:
                return 0
        if self._head_len:
            take = min(14 - self._head_len, n - pos)
            memcpy(self._head + self._head_len, p + pos, take)
            if not _parse(self._head, self._head_len + take, &h):
                self._head_len += take
                return 0
            pos += h.size - self._head_len
            self._head_len = 0
            pos = self._frame(&h, p, pos, n, frames)
        while pos < n:
            if not _parse(p + pos, n - pos, &h):
                memcpy(self._head, p + pos, n - pos)
                self._head_len = n - pos
                break
            pos = self._frame(&h, p, pos + h.size, n, frames)
        return 0

    cdef Py_ssize_t _frame(self, Header *h, const unsigned char *p, Py_ssize_t start, Py_ssize_t n,
                           list frames) except -1:
        """Handle a frame whose payload starts at p[start]; return the next position."""
        cdef bytes payload
        cdef Py_ssize_t length
        if self._expect >= 0 and h.masked != self._expect:
            raise FrameError(1002, "unmasked frame from client" if self._expect else "masked frame from server")
        if h.rsv & 4:
            if self._has_climit and h.length > self._climit:
                raise FrameError(
                    1009, f"compressed frame of {h.length} bytes exceeds max_compressed_frame_size={self._cmax}"
                )
        elif self._has_limit and h.length > self._limit:
            raise FrameError(1009, f"frame of {h.length} bytes exceeds max_frame_size={self._max}")
        if h.length <= <unsigned long long>(n - start):
            length = <Py_ssize_t>h.length
            if h.masked:
                payload = PyBytes_FromStringAndSize(NULL, length)
                # The GIL stays held inside a reader: its state is not shared.
                wsf_mask(<unsigned char *>PyBytes_AS_STRING(payload), p + start, <size_t>length, h.key)
            else:
                payload = PyBytes_FromStringAndSize(<const char *>p + start, length)
            self._emit(h.opcode, h.fin == 1, h.rsv, payload, frames)
            return start + length
        if h.length > <unsigned long long>PY_SSIZE_T_MAX_ - 64:
            raise FrameError(1009, f"frame of {h.length} bytes is too large to buffer")
        self._hdr = h[0]
        self._got = 0
        self._reserve(min(<Py_ssize_t>h.length, max(<Py_ssize_t>PREALLOCATE, n - start)))
        self._fill(p + start, n - start, frames)
        return n

    cdef int _reserve(self, Py_ssize_t size) except -1:
        """Make room for ``size`` payload bytes in the incomplete frame's buffer."""
        try:
            if self._buf == NULL:
                buf = PyBytes_FromStringAndSize(NULL, size)
                Py_INCREF(buf)
                self._buf = <PyObject *>buf
            else:
                _PyBytes_Resize(&self._buf, size)  # we hold the only reference
        except MemoryError:
            raise FrameError(1009, f"frame of {self._hdr.length} bytes is too large to buffer") from None
        self._cap = size
        return 0

    cdef Py_ssize_t _fill(self, const unsigned char *p, Py_ssize_t n, list frames) except -1:
        """Copy payload bytes of the incomplete frame; return the bytes used."""
        cdef unsigned char rkey[4]
        cdef Py_ssize_t length = <Py_ssize_t>self._hdr.length
        cdef Py_ssize_t take = min(length - self._got, n)
        cdef unsigned char *dst
        if self._got + take > self._cap:
            self._reserve(min(length, max(self._got + take, 2 * self._cap)))
        dst = <unsigned char *>PyBytes_AS_STRING(<object>self._buf) + self._got
        if self._hdr.masked:
            _rotate(self._hdr.key, self._got, rkey)
            wsf_mask(dst, p, <size_t>take, rkey)
        else:
            memcpy(dst, p, take)
        self._got += take
        if self._got == length:
            if self._cap != length:
                _PyBytes_Resize(&self._buf, length)  # shrinks: cannot fail
            payload = <object>self._buf
            Py_DECREF(payload)  # the reference self._buf held passes to `payload`
            self._buf = NULL
            self._got = 0
            self._emit(self._hdr.opcode, self._hdr.fin == 1, self._hdr.rsv, payload, frames)
        return take


# ---------------------------------------------------------------- the asyncio transport's hot path

# The transport and the connection keep their state in __slots__; reading a
# slot through its offset (fixed in subclasses too) costs a few instructions
# where getattr from C costs over a hundred. The offsets are taken from the
# classes' member descriptors on first use, and used only on instances of
# those classes.

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member

cdef object _OPEN = None  # wsfast.protocol.State.OPEN
cdef Py_ssize_t _BY_REFERENCE = 0  # wsfast.protocol.BY_REFERENCE
cdef type _Transport = None  # wsfast.asyncio.transport.WebSocketTransport
cdef type _Connection = None  # wsfast.protocol.Connection

# slot offsets: ws.*
cdef Py_ssize_t W_CONN, W_BATCH, W_VIEW, W_TRANSPORT
# conn.*
cdef Py_ssize_t C_SINK, C_DISCARD, C_MSG_OPCODE, C_CHECKED, C_STREAM, C_READER, C_TEXT_AS_BYTES
cdef Py_ssize_t C_OUT, C_STATE, C_SEND_OPCODE, C_DEFLATE, C_MASK


cdef Py_ssize_t _offset(type cls, str name) except -1:
    descr = cls.__dict__[name]
    if type(descr).__name__ != "member_descriptor":
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    return (<PyMemberDescrObject *><PyObject *>descr).d_member.offset


cdef int _import_classes() except -1:
    global _OPEN, _BY_REFERENCE, _Transport, _Connection
    global W_CONN, W_BATCH, W_VIEW, W_TRANSPORT
    global C_SINK, C_DISCARD, C_MSG_OPCODE, C_CHECKED, C_STREAM, C_READER, C_TEXT_AS_BYTES
    global C_OUT, C_STATE, C_SEND_OPCODE, C_DEFLATE, C_MASK
    from wsfast.asyncio.transport import WebSocketTransport
    from wsfast.protocol import BY_REFERENCE, Connection, State

    W_CONN = _offset(WebSocketTransport, "conn")
    W_BATCH = _offset(WebSocketTransport, "_batch")
    W_VIEW = _offset(WebSocketTransport, "_view")
    W_TRANSPORT = _offset(WebSocketTransport, "_transport")
    C_SINK = _offset(Connection, "sink")
    C_DISCARD = _offset(Connection, "_discard")
    C_MSG_OPCODE = _offset(Connection, "_msg_opcode")
    C_CHECKED = _offset(Connection, "_checked")
    C_STREAM = _offset(Connection, "stream_messages")
    C_READER = _offset(Connection, "_reader")
    C_TEXT_AS_BYTES = _offset(Connection, "text_as_bytes")
    C_OUT = _offset(Connection, "_out")
    C_STATE = _offset(Connection, "state")
    C_SEND_OPCODE = _offset(Connection, "_send_opcode")
    C_DEFLATE = _offset(Connection, "deflate")
    C_MASK = _offset(Connection, "_mask")
    _OPEN = State.OPEN
    _BY_REFERENCE = BY_REFERENCE
    _Transport = WebSocketTransport
    _Connection = Connection
    return 0


cdef inline object _slot(object obj, Py_ssize_t offset):
    """The value of the slot at ``offset`` of ``obj`` (AttributeError if unset)."""
    cdef PyObject *value = (<PyObject **>((<char *><PyObject *>obj) + offset))[0]
    if value == NULL:
        raise AttributeError("slot not set")
    return <object>value


cdef inline void _set_slot(object obj, Py_ssize_t offset, object value) noexcept:
    cdef PyObject **slot = <PyObject **>((<char *><PyObject *>obj) + offset)
    cdef PyObject *old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject *>value
    Py_XDECREF(old)


cdef inline object _conn(object ws):
    """``ws.conn`` if ``ws`` is a WebSocketTransport with a Connection, else ``None``."""
    if _Transport is None:
        _import_classes()
    if not isinstance(ws, _Transport):
        return None
    conn = _slot(ws, W_CONN)
    return conn if isinstance(conn, _Connection) else None


cdef bint _send_plain(ws, data, compress, int opcode) except -1:
    """Frame a whole message as one plain frame and queue it in the read's
    batch (or write it); ``False`` if it needs the general path (compression,
    a large message sent by reference, queued replies, not open)."""
    cdef object conn = _conn(ws)
    cdef object deflate
    cdef object payload
    if (
        conn is None
        or compress is not None
        or _slot(conn, C_STATE) is not _OPEN
        or _slot(conn, C_SEND_OPCODE)
        or _slot(conn, C_OUT)
    ):
        return False
    if len(data) >= _BY_REFERENCE:
        return False
    payload = PyUnicode_AsUTF8String(data) if opcode == 1 and isinstance(data, str) else data
    deflate = _slot(conn, C_DEFLATE)
    if deflate is not None and len(payload) >= deflate.threshold:
        return False
    frame = _build_frame(opcode, payload, True, 0, _slot(conn, C_MASK))
    batch = _slot(ws, W_BATCH)
    if batch is None:
        ws._write(frame)
    else:
        (<list?>batch).append(frame)
    return True


@cython.binding(True)
def send_binary_path(ws, data, compress=None):
    """Send a binary message (``compress``: override the compression threshold).

    ``WebSocketTransport.send_binary``, compiled for its common case (a whole
    message as one plain frame); the rest goes to ``ws._send_binary``.
    """
    if not _send_plain(ws, data, compress, 2):
        ws._send_binary(data, compress)


@cython.binding(True)
def send_text_path(ws, data, compress=None):
    """Send a text message: ``str``, or ``bytes`` already in UTF-8 (not checked).

    ``WebSocketTransport.send_text``, compiled for its common case; the rest
    goes to ``ws._send_text``.
    """
    if not _send_plain(ws, data, compress, 1):
        ws._send_text(data, compress)


@cython.binding(True)
def get_buffer_path(ws, Py_ssize_t sizehint):
    """``WebSocketTransport.get_buffer``: the read buffer the transport shares
    with the other connections of its thread."""
    if _Transport is None:
        _import_classes()
    return _slot(ws, W_VIEW) if isinstance(ws, _Transport) else ws._view


@cython.binding(True)
def read_path(ws, Py_ssize_t nbytes):
    """``WebSocketTransport.buffer_updated``: the bytes of one read, from its
    shared buffer, through the connection to the listener, and the replies
    out in one write.

    The hot path of :mod:`wsfast.asyncio.transport`, compiled: on an open
    connection with a listener and no fragmented message under way, whole
    messages go from the reader to the listener with no Python frame in
    between; anything else (handshake, control frames, fragments, errors,
    automatic replies, closing) goes through the transport's and the
    connection's Python methods (``ws._read`` for a whole read).
    """
    _read(ws, nbytes)


cdef int _read(object ws, Py_ssize_t nbytes) except -1:
    cdef object conn = _conn(ws)
    cdef object sink
    cdef object reader
    cdef list frames
    if conn is None:
        ws._read(nbytes)
        return 0
    sink = _slot(conn, C_SINK)
    reader = _slot(conn, C_READER)
    if (
        sink is None
        or _slot(conn, C_DISCARD)
        or _slot(conn, C_MSG_OPCODE)
        or _slot(conn, C_CHECKED)
        or _slot(conn, C_STREAM)
        or type(reader) is not FrameReader
    ):
        ws._read(nbytes)
        return 0
    _set_slot(ws, W_BATCH, [])
    frames = []
    try:
        try:
            (<FrameReader>reader)._dispatch(_slot(ws, W_VIEW), nbytes, sink, not _slot(conn, C_TEXT_AS_BYTES), frames)
        except FrameError as exc:
            events = conn._frame_error(exc)
        else:
            if frames or (<FrameReader>reader)._head_len or (<FrameReader>reader)._buf != NULL:
                events = conn._frames_received(frames)
            else:
                events = None
        if events:
            ws._handle_events(events)
    except Exception as exc:  # a listener callback failed
        ws._flush()
        ws._internal_error(exc)
        return 0
    if _slot(conn, C_OUT) or _slot(conn, C_STATE) is not _OPEN:
        ws._after_input()  # automatic replies, or closing
        return 0
    batch = _slot(ws, W_BATCH)
    _set_slot(ws, W_BATCH, None)
    if batch:
        transport = _slot(ws, W_TRANSPORT)
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        if type(transport) is SocketTransport:
            (<SocketTransport>transport)._write(data)
        elif transport is not None:
            transport.write(data)
    return 0


# ---------------------------------------------------------------- the socket transport

cdef extern from "_socket.h" nogil:
    enum: WSF_IOV_MAX
    ctypedef struct wsf_iov:
        const void *base
        size_t len
    ptrdiff_t wsf_recv(int fd, void *buf, size_t n)
    ptrdiff_t wsf_send(int fd, const void *buf, size_t n)
    ptrdiff_t wsf_sendv(int fd, const wsf_iov *bufs, int count)
    bint wsf_would_block(ptrdiff_t result)

cdef enum:
    MAX_READS_PER_EVENT = 16  # back-to-back reads of one readiness event, at most

cdef object _logger = None  # asyncio's logger, as asyncio's transports use
cdef object _TransportSocket = None  # asyncio.trsock.TransportSocket


cdef class SocketTransport:
    """An asyncio transport over a connected, non-blocking stream socket, on
    any event loop with ``add_reader``/``add_writer`` (asyncio's selector
    loops, uvloop): wsfast's own, compiled. POSIX only.

    It behaves as asyncio's own socket transport (write buffer limits and
    ``pause_writing``/``resume_writing``, ``pause_reading``/``resume_reading``,
    ``close`` once the buffer has drained, ``abort``, ``write_eof``,
    ``get_extra_info`` with ``socket``, ``sockname`` and ``peername``), and
    differs in what it costs: a read goes from ``recv`` into a
    :class:`~wsfast.asyncio.transport.WebSocketTransport`'s buffer and on to
    the compiled read path with no Python call in between; a write is one
    ``send``; what a write leaves unsent stays a reference to its ``bytes``
    (no copy) and queued writes go out together in one ``sendmsg``.
    """

    cdef object _loop
    cdef object _sock
    cdef int _fd
    cdef object _protocol
    cdef bint _ws  # the protocol is a WebSocketTransport with the compiled read path
    cdef dict _extra
    cdef list _pending  # bytes objects waiting to be sent, the first from _sent on
    cdef Py_ssize_t _sent
    cdef Py_ssize_t _size  # bytes waiting
    cdef Py_ssize_t _high
    cdef Py_ssize_t _low
    cdef bint _closing
    cdef bint _paused
    cdef bint _eof
    cdef bint _writing_paused
    cdef int _conn_lost
    cdef object _on_read  # the bound methods registered with the loop
    cdef object _on_write
    cdef object __weakref__

    def __init__(self, loop, sock, protocol, extra=None):
        """Wrap ``sock`` (connected; made non-blocking, TCP_NODELAY on TCP);
        ``protocol.connection_made`` follows on the loop, as with asyncio."""
        global _logger, _TransportSocket
        if _logger is None:
            import logging
            from asyncio.trsock import TransportSocket

            _logger = logging.getLogger("asyncio")
            _TransportSocket = TransportSocket
        sock.setblocking(False)
        if sock.family in (AF_INET, AF_INET6):
            sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._extra = dict(extra) if extra else {}
        self._extra["socket"] = _TransportSocket(sock)
        for name, get in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            if name not in self._extra:
                try:
                    self._extra[name] = get()
                except OSError:
                    self._extra[name] = None
        self._pending = []
        self._high = 65536
        self._low = 16384
        self._on_read = self._read_ready
        self._on_write = self._write_ready
        self.set_protocol(protocol)
        loop.call_soon(self._connection_made)

    def __repr__(self):
        state = "closed" if self._conn_lost else "closing" if self._closing else "open"
        return f"<wsfast.SocketTransport fd={self._fd} {state} pending={self._size}>"

    def _connection_made(self):
        try:
            self._protocol.connection_made(self)
        finally:
            if not self._closing and not self._paused:
                self._loop.add_reader(self._fd, self._on_read)

    # ------------------------------------------------------------ reading

    def _read_ready(self):
        # A read that fills the buffer leaves more behind, most likely: read
        # again at once rather than after another turn of the event loop
        # (a large message arrives in a few calls instead of a few turns).
        cdef int rounds = 0
        while self._read_once() and rounds < MAX_READS_PER_EVENT:
            rounds += 1

    cdef bint _read_once(self) except -1:
        """One recv into the protocol's buffer; ``True`` if it filled the
        buffer and reading goes on."""
        cdef Py_buffer view
        cdef Py_buffer *shared
        cdef bint acquired = False
        cdef ptrdiff_t n
        cdef Py_ssize_t size
        if self._conn_lost or self._paused or self._closing:
            return False
        protocol = self._protocol
        try:
            buffer = _slot(protocol, W_VIEW) if self._ws else protocol.get_buffer(-1)
            shared = PyMemoryView_GET_BUFFER(buffer) if PyMemoryView_Check(buffer) else NULL
            if shared == NULL or shared.readonly or not PyBuffer_IsContiguous(shared, b"C"):
                # Not a writable contiguous memoryview (such as the
                # connection's own): acquire its buffer for this read.
                PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
                acquired = True
                shared = &view
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return False
        size = shared.len
        if size == 0:
            n = -1
        else:
            n = wsf_recv(self._fd, shared.buf, <size_t>size)  # `buffer` keeps the memory alive
        if acquired:
            PyBuffer_Release(&view)
        if size == 0:
            self._fatal_error(RuntimeError("get_buffer() returned an empty buffer"), "Fatal error: protocol.get_buffer() call failed.")
            return False
        if n > 0:
            try:
                if self._ws:
                    _read(protocol, n)
                else:
                    protocol.buffer_updated(n)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
                return False
            return n == size
        if n == 0:
            self._read_eof()
        elif not wsf_would_block(n):
            self._fatal_error(OSError(-n, os.strerror(-n)), "Fatal read error on socket transport")
        return False

    def _read_eof(self):
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # Half-closed: stop reading; close() or the peer's reset ends it.
            self._loop.remove_reader(self._fd)
        else:
            self.close()

    def is_reading(self):
        return not self._paused and not self._closing

    def pause_reading(self):
        if self._paused or self._closing:
            return
        self._paused = True
        self._loop.remove_reader(self._fd)

    def resume_reading(self):
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop.add_reader(self._fd, self._on_read)

    # ------------------------------------------------------------ writing

    def write(self, data):
        """Send ``data`` (bytes-like), or queue what the socket does not take."""
        if not PyObject_CheckBuffer(data) or isinstance(data, str):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        self._write(data)

    def writelines(self, list_of_data):
        self.write(b"".join(list_of_data))

    cdef int _write(self, object data) except -1:
        cdef Py_buffer view
        cdef ptrdiff_t n
        cdef Py_ssize_t size
        cdef const char *start
        cdef int acquired = 0
        if PyBytes_CheckExact(data):
            start = PyBytes_AS_STRING(data)
            size = PyBytes_GET_SIZE(data)
        else:
            acquired = _read_buffer(data, &view)
            start = <const char *>view.buf
            size = view.len
        try:
            if size == 0:
                return 0
            if self._conn_lost:
                if self._conn_lost >= 5:
                    _logger.warning("socket.send() raised exception.")
                self._conn_lost += 1
                return 0
            if self._pending:
                # Behind queued bytes; the caller may reuse a mutable buffer.
                self._pending.append(data if PyBytes_CheckExact(data) else PyBytes_FromStringAndSize(start, size))
                self._size += size
            else:
                n = wsf_send(self._fd, start, <size_t>size)
                if n == size:
                    return 0
                if n < 0:
                    if not wsf_would_block(n):
                        self._fatal_error(OSError(-n, os.strerror(-n)), "Fatal write error on socket transport")
                        return 0
                    n = 0
                if PyBytes_CheckExact(data):
                    self._pending.append(data)  # by reference: no copy of the rest
                    self._sent = n
                else:
                    self._pending.append(PyBytes_FromStringAndSize(start + n, size - n))
                    self._sent = 0
                self._size = size - n
                self._loop.add_writer(self._fd, self._on_write)
        finally:
            _release(&view, acquired)
        self._maybe_pause_protocol()
        return 0

    def _write_ready(self):
        cdef wsf_iov bufs[WSF_IOV_MAX]
        cdef list pending = self._pending
        cdef Py_ssize_t count = min(len(pending), <Py_ssize_t>WSF_IOV_MAX)
        cdef Py_ssize_t i, done
        cdef ptrdiff_t n
        cdef Py_ssize_t skip = self._sent
        if self._conn_lost or not count:
            return
        for i in range(count):
            item = pending[i]
            bufs[i].base = PyBytes_AS_STRING(item) + skip
            bufs[i].len = <size_t>(PyBytes_GET_SIZE(item) - skip)
            skip = 0
        n = wsf_sendv(self._fd, bufs, <int>count)
        if n < 0:
            if wsf_would_block(n):
                return
            self._loop.remove_writer(self._fd)
            pending.clear()
            self._size = 0
            self._sent = 0
            self._fatal_error(OSError(-n, os.strerror(-n)), "Fatal write error on socket transport")
            return
        self._size -= n
        n += self._sent
        done = 0
        while done < count and n >= PyBytes_GET_SIZE(pending[done]):
            n -= PyBytes_GET_SIZE(pending[done])
            done += 1
        del pending[:done]
        self._sent = n
        self._maybe_resume_protocol()  # may write more
        if not pending:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._call_connection_lost(None)
            elif self._eof:
                self._sock.shutdown(socket_SHUT_WR)

    def can_write_eof(self):
        return True

    def write_eof(self):
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._pending:
            self._sock.shutdown(socket_SHUT_WR)

    def get_write_buffer_size(self):
        return self._size

    def get_write_buffer_limits(self):
        return (self._low, self._high)

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 65536 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        self._maybe_pause_protocol()

    cdef int _maybe_pause_protocol(self) except -1:
        if self._size > self._high and not self._writing_paused:
            self._writing_paused = True
            self._tell_protocol("pause_writing")
        return 0

    cdef int _maybe_resume_protocol(self) except -1:
        if self._writing_paused and self._size <= self._low:
            self._writing_paused = False
            self._tell_protocol("resume_writing")
        return 0

    cdef int _tell_protocol(self, str method) except -1:
        """Call ``protocol.<method>()``; a failure goes to the loop's exception handler."""
        try:
            getattr(self._protocol, method)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(f"protocol.{method}() failed", exc)
        return 0

    cdef int _report(self, str message, object exc) except -1:
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )
        return 0

    # ------------------------------------------------------------ closing

    def is_closing(self):
        return self._closing

    def close(self):
        """Stop reading; close the socket once the queued bytes are sent."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._pending:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self):
        """Close the socket now; queued bytes are dropped."""
        self._force_close(None)

    def _fatal_error(self, exc, message):
        if isinstance(exc, OSError):  # the peer went away: not worth a traceback
            if self._loop.get_debug():
                _logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(message, exc)
        self._force_close(exc)

    def _force_close(self, exc):
        if self._conn_lost:
            return
        if self._pending:
            self._pending.clear()
            self._size = 0
            self._sent = 0
            self._loop.remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._loop.remove_reader(self._fd)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._protocol = None
            self._ws = False

    # ------------------------------------------------------------ the rest of asyncio.Transport

    def get_extra_info(self, name, default=None):
        return self._extra.get(name, default)

    def set_protocol(self, protocol):
        if _Transport is None:
            _import_classes()
        self._protocol = protocol
        cls = type(protocol)
        self._ws = (
            isinstance(protocol, _Transport)
            and getattr(cls, "get_buffer", None) is get_buffer_path
            and getattr(cls, "buffer_updated", None) is read_path
        )

    def get_protocol(self):
        return self._protocol


# ---------------------------------------------------------------- UTF-8


cdef class Utf8Validator:
    """Incremental UTF-8 validator whose state carries across fragments.

    ``feed(data)`` returns ``False`` as soon as the bytes fed so far cannot
    start a valid UTF-8 text, that is at the first bad byte, even when it is
    in the middle of a multi-byte sequence that has not been completed yet.
    ``complete`` tells whether the text fed so far ends on a code point
    boundary; ``position`` counts the bytes accepted (after a failure, the
    offset of the first bad byte in the whole stream).
    """

    cdef wsf_utf8_state _state
    cdef bint _valid
    cdef long long _position

    def __init__(self):
        self.reset()

    @property
    def valid(self):
        """``False`` once a bad byte has been seen."""
        return self._valid

    @property
    def complete(self):
        """``True`` when the input so far is valid and ends on a code point."""
        return self._valid and self._state.dfa == 0

    @property
    def position(self):
        """Bytes accepted so far; after a failure, the offset of the bad byte."""
        return self._position

    def reset(self):
        """Forget everything fed so far."""
        self._state.dfa = 0
        self._valid = True
        self._position = 0

    def feed(self, data):
        """Validate the next bytes of the text; ``False`` at the first bad byte."""
        cdef Py_buffer view
        cdef int acquired
        cdef ptrdiff_t bad
        acquired = _read_buffer(data, &view)
        if not self._valid:
            _release(&view, acquired)
            return False
        with cython.critical_section(self):
            bad = wsf_utf8_feed(&self._state, <const unsigned char *>view.buf, <size_t>view.len)
        _release(&view, acquired)
        if bad < 0:
            self._position += view.len
            return True
        self._position += bad
        self._valid = False
        return False


def validate_utf8(data):
    """Return ``True`` if ``data`` is a complete, valid UTF-8 text."""
    cdef Py_buffer view
    cdef int acquired
    cdef ptrdiff_t bad
    cdef wsf_utf8_state state
    state.dfa = 0
    acquired = _read_buffer(data, &view)
    if view.len >= NOGIL_THRESHOLD:
        with nogil:
            bad = wsf_utf8_feed(&state, <const unsigned char *>view.buf, <size_t>view.len)
    else:
        bad = wsf_utf8_feed(&state, <const unsigned char *>view.buf, <size_t>view.len)
    _release(&view, acquired)
    return bad < 0 and state.dfa == 0
