"""permessage-deflate settings by numbers: window bits and zlib ``memLevel``
against memory per connection and compression ratio (issue 15).

For each setting, on the corpus of ``wsfast.benchmark.corpus`` (one
connection's stream of chat and market-data messages, context takeover,
wsfast's default threshold of 128 B):

- the ratio: bytes of the compressed messages before / after compression,
  and the same with every message on the wire counted (the ones under the
  threshold go uncompressed); ``released``: the same stream with the zlib
  objects released after every message (the worst case of release);
- memory (tracemalloc: CPython's zlib allocates through PyMem_RawMalloc,
  which it traces): one side's :class:`Deflate` after one 512 B message
  each way (the c100k bench's first message), the compressor and the
  inflater, then after :meth:`Deflate.release`;
- CPU per message: compress + inflate of the whole corpus, best of
  ``--repeat``, by today's code (``--baseline REV``: the Deflate class of
  that git revision, for comparison), and with a release after every
  message.

    PYTHONPATH=src python bench/deflate_settings.py [--baseline 8760b4f]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from typing import Any, Optional

from wsfast.benchmark.c100k import DEFLATE_MESSAGE
from wsfast.benchmark.corpus import messages
from wsfast.extensions.permessage_deflate import Deflate

THRESHOLD = 128
TAIL = b"\x00\x00\xff\xff"
SETTINGS = [(12, 5), (12, 4), (12, 3), (11, 5), (11, 4), (11, 3), (13, 4), (15, 8)]


def _pair(cls: Any, bits: int, mem_level: int) -> tuple[Any, Any]:
    a = cls(compress_bits=bits, decompress_bits=bits, threshold=THRESHOLD, level=6, mem_level=mem_level)
    b = cls(compress_bits=bits, decompress_bits=bits, threshold=THRESHOLD, level=6, mem_level=mem_level)
    return a, b


def ratio(corpus: list[bytes], bits: int, mem_level: int, release: bool) -> tuple[float, float]:
    a, b = _pair(Deflate, bits, mem_level)
    raw = wire = big = big_out = 0
    for message in corpus:
        raw += len(message)
        if len(message) < THRESHOLD:
            wire += len(message)
            continue
        out = a.compress(message)
        assert b.decompress(out, True, None) == message
        big += len(message)
        big_out += len(out)
        wire += len(out)
        if release:
            a.release()
            b.release()
    return big / big_out, raw / wire


def memory(bits: int, mem_level: int) -> tuple[int, int, int]:
    """Bytes of one side's compressor, inflater (after one message each
    way), and of the whole Deflate object's state once released."""
    peer = zlib.compressobj(6, zlib.DEFLATED, -bits)
    incoming = peer.compress(DEFLATE_MESSAGE) + peer.flush(zlib.Z_SYNC_FLUSH)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    d = Deflate(compress_bits=bits, decompress_bits=bits, threshold=THRESHOLD, level=6, mem_level=mem_level)
    created = tracemalloc.get_traced_memory()[0]
    d.compress(DEFLATE_MESSAGE)
    compressor = tracemalloc.get_traced_memory()[0]
    d.decompress(incoming[:-4], True, 1 << 20)
    inflater = tracemalloc.get_traced_memory()[0]
    d.release()
    released = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del d
    return compressor - created, inflater - compressor, released - base


def cpu(cls: Any, corpus: list[bytes], bits: int, mem_level: int, release: bool, repeat: int) -> float:
    """Microseconds per compressed message: compress on one side, inflate on
    the other."""
    big = [m for m in corpus if len(m) >= THRESHOLD]
    best = float("inf")
    for _ in range(repeat):
        a, b = _pair(cls, bits, mem_level)
        start = time.perf_counter()
        if release:
            for m in big:
                b.decompress(a.compress(m), True, 1 << 20)
                a.release()
                b.release()
        else:
            for m in big:
                b.decompress(a.compress(m), True, 1 << 20)
        best = min(best, time.perf_counter() - start)
    return best / len(big) * 1e6


def baseline_class(rev: str) -> Optional[type]:
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:src/wsfast/extensions/permessage_deflate.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no baseline: {exc}", file=sys.stderr)
        return None
    source = source.replace("from ..exceptions import", "from wsfast.exceptions import")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("baseline_deflate", f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # for its dataclass
    spec.loader.exec_module(module)
    return module.Deflate  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000, help="messages in the corpus")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", default=None, help="git revision whose Deflate to time too")
    args = parser.parse_args()
    corpus = messages(args.count)
    big = [m for m in corpus if len(m) >= THRESHOLD]
    print(
        f"corpus: {len(corpus)} messages, {sum(map(len, corpus)):,} B; {len(big)} at or above the threshold "
        f"({THRESHOLD} B), {sum(map(len, big)):,} B"
    )
    old = baseline_class(args.baseline) if args.baseline else None
    print(
        "| bits | memLevel | compressor B | inflater B | released B | ratio | ratio, released each message "
        "| wire ratio | us/msg | us/msg, released each message |" + (" us/msg, baseline |" if old else "")
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if old else ""))
    for bits, mem_level in SETTINGS:
        comp, infl, rel = memory(bits, mem_level)
        r, wire = ratio(corpus, bits, mem_level, False)
        r_rel, _ = ratio(corpus, bits, mem_level, True)
        t = cpu(Deflate, corpus, bits, mem_level, False, args.repeat)
        t_rel = cpu(Deflate, corpus, bits, mem_level, True, args.repeat)
        row = (
            f"| {bits} | {mem_level} | {comp:,} | {infl:,} | {rel:,} | {r:.3f} | {r_rel:.3f} | {wire:.3f} "
            f"| {t:.2f} | {t_rel:.2f} |"
        )
        if old is not None:
            row += f" {cpu(old, corpus, bits, mem_level, False, args.repeat):.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
