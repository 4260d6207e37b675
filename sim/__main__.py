"""`python -m tilesim` runs the tilesim command line."""
import sys

from tilesim.cli.main import main

sys.exit(main())
