import sys

from engine.layout import refuse_shadowed

if __name__ == "__main__":
    refuse_shadowed()  # before anything imports `analysis` or `plugins`

    from engine.cli import main

    sys.exit(main())
