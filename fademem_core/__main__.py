"""``python -m fademem_core ...``: see :mod:`fademem_core.cli`."""
import sys

if __name__ == "__main__":
    try:
        from .cli import main
    except KeyboardInterrupt:  # ^C while Python is still importing: one line, like the CLI's
        print("\nfademem: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
