import sys

from sparks.cli import main

sys.exit(main())
