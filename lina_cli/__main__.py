"""`python -m lina_cli ...` runs the CLI; `torchrun -m lina_cli generate ...` needs this entry point."""

from lina_cli.app import main

if __name__ == "__main__":
    main()
