"""Allows ``python -m deltaingest``."""

from deltaingest.cli import main

raise SystemExit(main())
