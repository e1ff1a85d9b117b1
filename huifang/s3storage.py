"""Stored files in an S3-compatible bucket (MinIO, Aliyun OSS, Tencent COS, AWS S3), by boto3.

Uploads and downloads stream through boto3's transfer manager (multipart above its
threshold), so a clip passes through in parts, never whole in memory. Keys are the same
relative names the local backend uses, under an optional prefix.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from huifang.settings import Settings
from huifang.storage import CHUNK, Storage

# Parts of 8 MB, four at a time: a 200 MB clip goes up in 25 parts with at most about
# 32 MB of it in memory; a photo goes in one request.
TRANSFER = TransferConfig(
    multipart_threshold=8 * CHUNK, multipart_chunksize=8 * CHUNK, max_concurrency=4
)
MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Storage(Storage):
    name = "s3"

    def __init__(self, client: Any, bucket: str, *, prefix: str = "", presign: bool = False):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.presign = presign

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        if not settings.s3_bucket:
            raise RuntimeError("HUIFANG_STORAGE=s3 needs HUIFANG_S3_BUCKET")
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=Config(
                s3={"addressing_style": settings.s3_addressing_style},
                signature_version="s3v4",
                retries={"max_attempts": 5, "mode": "standard"},
            ),
        )
        return cls(
            client, settings.s3_bucket, prefix=settings.s3_prefix, presign=settings.s3_presign
        )

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def put_file(self, source: Path, relative: str, *, move: bool = False) -> None:
        content_type = mimetypes.guess_type(relative)[0] or "application/octet-stream"
        self.client.upload_file(
            str(source),
            self.bucket,
            self.key(relative),
            ExtraArgs={"ContentType": content_type},
            Config=TRANSFER,
        )
        if move:
            source.unlink(missing_ok=True)

    def write_bytes(self, relative: str, data: bytes) -> None:
        content_type = mimetypes.guess_type(relative)[0] or "application/octet-stream"
        self.client.put_object(
            Bucket=self.bucket, Key=self.key(relative), Body=data, ContentType=content_type
        )

    def local_copy(self, relative: str, scratch: Path) -> Path:
        target = scratch / f"{uuid.uuid4().hex}{PurePosixPath(relative).suffix}"
        try:
            self.client.download_file(self.bucket, self.key(relative), str(target), Config=TRANSFER)
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(relative) from exc
            raise
        return target

    def open(self, relative: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        body = self.client.get_object(Bucket=self.bucket, Key=self.key(relative), **extra)["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def size(self, relative: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(relative))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    def remove(self, relative: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(relative))

    def download_url(
        self, relative: str, *, content_type: str, expires_in: int, filename: str | None = None
    ) -> str | None:
        if not self.presign:
            return None
        params = {
            "Bucket": self.bucket,
            "Key": self.key(relative),
            "ResponseContentType": content_type,
        }
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=max(60, min(expires_in, 7 * 86400))
        )
        return url


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING
