"""``python -m audioseal_studio``: the ``studio`` command line."""

from audioseal_studio.cli import main

main()
