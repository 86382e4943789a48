"""Check an installed wsfast: where it comes from and which codec it runs.

``python wheel_check.py --speedups yes|no`` fails unless wsfast is imported
from this interpreter's site-packages (not from a source tree), and
``wsfast.HAS_SPEEDUPS`` is what was asked. On a free-threaded build it also
fails if importing the extension turned the GIL back on (the module must
declare ``freethreading_compatible``). Used by cibuildwheel's test-command and
by ``.ci/dist``.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speedups", choices=["yes", "no"], required=True, help="expected wsfast.HAS_SPEEDUPS")
    args = parser.parse_args()

    import wsfast

    where = os.path.realpath(wsfast.__file__)
    installed = {os.path.realpath(sysconfig.get_path(name)) for name in ("purelib", "platlib")}
    print(f"wsfast {wsfast.__version__} from {where}")
    print(f"implementation {wsfast.IMPLEMENTATION} (HAS_SPEEDUPS={wsfast.HAS_SPEEDUPS}) on {sys.version}")
    if not any(where.startswith(root + os.sep) for root in installed):
        sys.exit(f"wsfast is not imported from site-packages {sorted(installed)}")
    if wsfast.HAS_SPEEDUPS != (args.speedups == "yes"):
        sys.exit(f"expected HAS_SPEEDUPS={args.speedups == 'yes'}")
    if wsfast.HAS_SPEEDUPS:
        from wsfast import _speedups

        print(f"extension {_speedups.__file__}")
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        gil = sys._is_gil_enabled()  # type: ignore[attr-defined]  # 3.13+, free-threaded builds
        print(f"free-threaded build, GIL enabled after import: {gil}")
        if gil:
            sys.exit("importing wsfast enabled the GIL")


if __name__ == "__main__":
    main()
