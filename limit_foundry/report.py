"""`python -m limit_foundry.report STUDY_DIR`: kept for compatibility; the same as `limit-foundry report`."""

if __name__ == "__main__":
    from limit_foundry.study.report import main

    raise SystemExit(main())
