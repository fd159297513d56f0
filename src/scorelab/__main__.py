"""``python -m scorelab`` is the ``scorelab`` command (so ``torchrun -m scorelab`` works)."""

from scorelab.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
