import sys

from hfan.cli import main

sys.exit(main())
