"""``python -m biostream``: the same command line as the ``biostream`` script."""

from biostream.cli import main

if __name__ == "__main__":
    main()
