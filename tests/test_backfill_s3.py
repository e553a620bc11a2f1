"""Archives in S3 and export to S3, through fsspec (the ``s3`` extra), against
moto's S3 server on loopback: credentials from the environment, the endpoint
from ``--endpoint-url``."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from test_backfill import exported
from test_replay import ENV, ROOT, msg, write

pytestmark = pytest.mark.slow

pytest.importorskip("s3fs")
pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto's server did not start") from None
            time.sleep(0.1)
    client = boto3.client(
        "s3",
        endpoint_url=url,
        **{k.lower(): v for k, v in CREDENTIALS.items() if "KEY" in k},
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="archive")
    try:
        yield url, client
    finally:
        server.terminate()
        server.wait(10)


def cli(*args, **env_extra):
    env = {**ENV, **CREDENTIALS, "POSTHOG_API_KEY": "phc_s3", **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "analytics_posthog", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_replay_and_export_read_s3_and_export_writes_s3(s3, capture_server, tmp_path):
    endpoint, client = s3
    local = tmp_path / "segment-logs"
    write(local / "1715904000000" / "a.gz", [msg(1, day=17), msg(2, day=3)], compress=True)
    write(local / "1715990400000" / "b.gz", [msg(3, day=18), "{broken"], compress=True)
    for path in sorted(local.rglob("*.gz")):
        client.upload_file(str(path), "archive", "segment-logs/src/" + str(path.relative_to(local)))

    result = cli(
        "replay",
        "s3://archive/segment-logs",
        "--endpoint-url",
        endpoint,
        "--posthog-host",
        capture_server.url,
        "--checkpoint",
        str(tmp_path / "cp.json"),
        "--rejects",
        str(tmp_path / "rejects.jsonl"),
    )
    assert result.returncode == 1, result.stderr
    assert [e["event"] for e in capture_server.wait_for_events(3)] == ["E2", "E1", "E3"]
    rejects = [json.loads(line) for line in open(tmp_path / "rejects.jsonl")]
    assert [(r["file"], r["line"]) for r in rejects] == [
        ("s3://archive/segment-logs/src/1715990400000/b.gz", 2)
    ]

    # the endpoint from the environment this time, read by two worker processes
    result = cli(
        "export",
        "s3://archive/segment-logs",
        "--out",
        "s3://archive/posthog",
        "--jobs",
        "2",
        "--rejects",
        str(tmp_path / "rejects2.jsonl"),
        AWS_ENDPOINT_URL=endpoint,
    )
    assert result.returncode == 1, result.stderr
    keys = [
        o["Key"] for o in client.list_objects_v2(Bucket="archive", Prefix="posthog/")["Contents"]
    ]
    assert keys == [
        "posthog/2024-05-03.jsonl.gz",
        "posthog/2024-05-17.jsonl.gz",
        "posthog/2024-05-18.jsonl.gz",
    ]
    uploaded = [
        json.loads(line)
        for key in keys
        for line in gzip.decompress(
            client.get_object(Bucket="archive", Key=key)["Body"].read()
        ).splitlines()
    ]
    assert uploaded == capture_server.events
    assert cli("export", str(local), "--out", str(tmp_path / "out")).returncode == 1
    assert [e for _, events in exported(tmp_path / "out") for e in events] == uploaded
