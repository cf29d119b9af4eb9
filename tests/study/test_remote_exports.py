"""The study's models/<run> lookup reads HF exports from a save folder in object storage (moto's S3 server)."""

from __future__ import annotations

from pathlib import Path

from limit_foundry.remote import cache_manifest
from limit_foundry.study.stages import export_dir, link_model


def test_export_dir_lists_and_downloads_the_named_or_latest_export(
    s3_server: dict[str, str], tmp_path: Path, monkeypatch
) -> None:
    import boto3

    monkeypatch.setenv("LIMIT_FOUNDRY_CACHE", str(tmp_path / "cache"))
    s3 = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    bucket = s3_server["bucket"]
    for name in ("ep2-ba40", "ep4-ba80", "ep10-ba200"):
        s3.put_object(Bucket=bucket, Key=f"study/run/hf/huggingface/{name}/config.json", Body=name.encode())
    save_folder = f"s3://{bucket}/study/run/hf"

    named = export_dir(save_folder, "ep4")
    assert named is not None and named.name == "ep4-ba80"
    assert (named / "config.json").read_bytes() == b"ep4-ba80"
    assert cache_manifest(named)["uri"] == f"{save_folder}/huggingface/ep4-ba80"
    latest = export_dir(save_folder + "/", "latest")
    assert latest is not None and (latest / "config.json").read_bytes() == b"ep10-ba200"  # by number
    assert export_dir(save_folder, "ep6") is None

    link = tmp_path / "out" / "models" / "run"
    link_model(link, named)
    assert (link / "config.json").read_bytes() == b"ep4-ba80"
