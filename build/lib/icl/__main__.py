"""``python -m icl <command>``: the package's command line.

Commands:

- ``reproduce``: the paper's experiments at the paper's scale (:func:`icl.reproduce.main`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = ("reproduce",)
USAGE = "usage: python -m icl {reproduce} [options]   (python -m icl reproduce --help)"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a command; an unknown command prints the usage and returns 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"python -m icl: error: unknown command {args[0]!r}; choose from {COMMANDS}",
              file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    import icl.reproduce as reproduce

    return reproduce.main(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
