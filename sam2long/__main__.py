"""`python -m sam2long ...` runs the command line (see sam2long/app/cli.py)."""

import sys

from sam2long.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
