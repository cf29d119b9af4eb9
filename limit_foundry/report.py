"""`python -m limit_foundry.report STUDY_DIR`: kept for compatibility; the same as `limit-foundry report`."""

if __name__ == "__main__":
    import runpy
    import sys

    sys.argv[1:1] = ["report"]
    runpy.run_module("limit_foundry.cli", run_name="__main__")
