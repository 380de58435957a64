#!/usr/bin/env python3
"""Long fuzz run of the receive path: ``python tools/fuzz.py --inputs 1000000``.

Runs the harness of ``tests/fuzzing.py`` (mutated captures and generated
packets through the buffer and UDP readers, then ItemGroup.update) in child
processes, and reports inputs tried, crashes, hangs, invariant failures and
the summed stream statistics. Failing inputs are saved under --save-dir.
Needs the package importable (installed, or ``PYTHONPATH=src``) and numpy.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

import fuzzing  # noqa: E402

if __name__ == "__main__":
    sys.exit(fuzzing.main())
