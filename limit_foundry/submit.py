"""`python -m limit_foundry.submit`: kept for compatibility; the same as `limit-foundry submit`."""

if __name__ == "__main__":
    import runpy
    import sys

    sys.argv[1:1] = ["submit"]
    runpy.run_module("limit_foundry.cli", run_name="__main__")
