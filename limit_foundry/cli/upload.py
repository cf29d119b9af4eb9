"""`limit-foundry upload PATH URI`: copy a file or a folder to object storage, each object checked once stored.

What a platform job runs last: its results outlive its container. Reaches the store through Composer's object
stores, so their settings apply (`S3_ENDPOINT_URL`, the AWS/GCS/OCI credential chains).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.remote import public_uri, upload


def build_parser(prog: str = "limit-foundry upload") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Copy a file, or every file under a folder, to an object-store URI (s3://, gs://, oci://); "
        "each object's size (and MD5, where the store's ETag is one) is checked after its upload.",
    )
    parser.add_argument("path", type=Path, help="a local file or folder")
    parser.add_argument("uri", help="where it goes: the object, or the folder prefix for a folder")
    return parser


def main(argv: list[str] | None = None, prog: str = "limit-foundry upload") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)

    def copy() -> None:
        written = upload(args.path, args.uri)
        print(
            f"uploaded {len(written)} objects ({sum(o.size for o in written)} bytes) to {public_uri(args.uri)}"
        )

    return run_command(copy)
