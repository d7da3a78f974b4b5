import sys

from bnmft.cli import main

sys.exit(main())
