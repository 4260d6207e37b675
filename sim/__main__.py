"""`python -m sim` runs the tilesim command line."""
import sys

from .cli import main

sys.exit(main())
