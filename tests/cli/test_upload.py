"""`limit-foundry upload`: a folder to object storage (moto's S3 server on 127.0.0.1), and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from limit_foundry.cli.upload import main


def test_a_folder_is_uploaded_and_counted(s3_server: dict[str, str], tmp_path: Path, capsys) -> None:
    import boto3

    folder = tmp_path / "out"
    (folder / "lima").mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    (folder / "lima" / "RAW.json").write_text('{"metrics/x": 0.5}')
    uri = f"s3://{s3_server['bucket']}/cli-upload/job"
    assert main([str(folder), uri]) == 0
    assert capsys.readouterr().out.strip() == f"uploaded 2 objects (20 bytes) to {uri}"
    listed = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"]).list_objects_v2(
        Bucket=s3_server["bucket"], Prefix="cli-upload/"
    )
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "cli-upload/job/lima/RAW.json",
        "cli-upload/job/results.json",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/absent", "s3://bucket/x"], "absent: nothing to upload"),
        (["{tmp}", "s3://{bucket}"], "name an object or a folder inside the bucket"),
        (["{tmp}", "s3://no-such-bucket/x"], "no such object in the object store (NoSuchBucket)"),
    ],
)
def test_bad_input_exits_2_naming_it(
    s3_server, tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    (tmp_path / "f.txt").write_text("x")
    argv = [a.format(tmp=tmp_path, bucket=s3_server["bucket"]) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
