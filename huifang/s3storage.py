"""Stored files in an S3-compatible bucket (MinIO, Aliyun OSS, Tencent COS, AWS S3), by boto3.

Uploads and downloads stream through boto3's transfer manager (multipart above its
threshold), so a clip passes through in parts, never whole in memory. Keys are the same
relative names the local backend uses, under an optional prefix.

A resumable upload's pieces are objects ``resumable/<token>/<start offset>``, so the next
piece may reach any API host. Pieces are as small as the client likes (the phone sends
2 MB), below S3's 5 MB minimum part, so each is an object of its own rather than a part of
one multipart upload per file. Each piece is itself written as a multipart upload while
its bytes arrive (parts of ``PART_BYTES``, the last one shorter) and completed only when
it is put on record, which makes it appear at its key in one step, as a rename does on disk.
"""

from __future__ import annotations

import datetime as dt
import functools
import mimetypes
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import structlog
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from huifang.settings import Settings
from huifang.storage import (
    CHUNK,
    Pieces,
    PieceWriter,
    Storage,
    check_token,
    piece_name,
    piece_start,
)

log = structlog.get_logger(__name__)

# Parts of 8 MB, four at a time: a 200 MB clip goes up in 25 parts with at most about
# 32 MB of it in memory; a photo goes in one request.
TRANSFER = TransferConfig(
    multipart_threshold=8 * CHUNK, multipart_chunksize=8 * CHUNK, max_concurrency=4
)
MISSING = {"404", "NoSuchKey", "NotFound"}
# A piece arriving is held in memory up to one part at a time (S3 takes parts of 5 MB or
# more, but the last); the phone's 2 MB pieces go in one part.
PART_BYTES = 8 * CHUNK


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

    @functools.cached_property
    def _pieces(self) -> S3Pieces:
        return S3Pieces(self.client, self.bucket, prefix=self.prefix + "resumable/")

    def pieces(self) -> Pieces:
        return self._pieces

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


class _ObjectPiece(PieceWriter):
    """A piece written as a multipart upload of its own, completed when it is kept."""

    def __init__(self, client: Any, bucket: str, key: str, part_bytes: int) -> None:
        self.client, self.bucket, self.key, self.part_bytes = client, bucket, key, part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._lost = False  # its multipart upload was aborted meanwhile (the upload removed)

    def write(self, chunk: bytes) -> bool:
        self._buffer += chunk
        return len(self._buffer) >= self.part_bytes

    def flush(self) -> None:
        while len(self._buffer) >= self.part_bytes:
            # Hand the buffer over whole, keeping only its tail: no copy of the part.
            part, self._buffer = self._buffer, self._buffer[self.part_bytes :]
            del part[self.part_bytes :]
            self._send(part)

    def close(self) -> None:
        self.flush()
        if self._buffer:
            part, self._buffer = self._buffer, bytearray()
            self._send(part)

    def _send(self, part: bytearray) -> None:
        if self._lost:
            return
        try:
            if self._upload_id is None:
                created = self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType="application/octet-stream"
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            sent = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
            )
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                raise
            # The upload was removed while this piece arrived; recording it will say so.
            self._lost, self._upload_id = True, None
            return
        done = {"ETag": sent["ETag"], "PartNumber": number}
        done.update({k: v for k, v in sent.items() if k.startswith("Checksum")})
        self._parts.append(done)

    def keep(self) -> None:
        if self._lost:
            raise FileNotFoundError(f"the bytes of {self.key} were removed as they arrived")
        if self._upload_id is None:
            return  # no bytes: no piece
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None

    def discard(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:  # removed with its upload, or by the sweep
            log.warning("could not abort a piece's upload", key=self.key, error=str(exc))


class S3Pieces(Pieces):
    """Pieces as objects ``<prefix><token>/<start offset>``."""

    def __init__(self, client: Any, bucket: str, *, prefix: str, part_bytes: int = PART_BYTES):
        self.client, self.bucket, self.prefix, self.part_bytes = client, bucket, prefix, part_bytes

    def prepare(self, token: str) -> None:
        return None  # a key prefix needs no making

    def _folder(self, token: str) -> str:
        return f"{self.prefix}{check_token(token)}/"

    def writer(self, token: str, start: int) -> PieceWriter:
        key = self._folder(token) + piece_name(start)
        return _ObjectPiece(self.client, self.bucket, key, self.part_bytes)

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    def _arriving(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Multipart uploads begun and neither completed nor aborted: pieces arriving, or
        left by a process that died as they arrived."""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            yield from page.get("Uploads", [])

    def sizes(self, token: str) -> dict[int, int]:
        folder = self._folder(token)
        found = {}
        for item in self._objects(folder):
            start = piece_start(item["Key"][len(folder) :])
            if start is not None:
                found[start] = int(item["Size"])
        return found

    def read(self, token: str, start: int, *, limit: int | None = None) -> Iterator[bytes]:
        if limit is not None and limit <= 0:
            return
        extra = {} if limit is None else {"Range": f"bytes=0-{limit - 1}"}
        key = self._folder(token) + piece_name(start)
        body = self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def remove(self, token: str) -> None:
        folder = self._folder(token)
        for arriving in self._arriving(folder):
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=arriving["Key"], UploadId=arriving["UploadId"]
                )
            except ClientError as exc:
                if _code(exc) != "NoSuchUpload":  # completed or aborted meanwhile
                    raise
        keys = [item["Key"] for item in self._objects(folder)]
        for at in range(0, len(keys), 1000):  # DeleteObjects takes up to 1000 keys
            self._delete(keys[at : at + 1000])

    def _delete(self, keys: list[str]) -> None:
        try:
            answer = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        except ClientError as exc:
            # Some S3-compatible stores refuse the batch as botocore now signs it (they ask
            # for a Content-MD5 it no longer sends): one request per key instead.
            log.info("deleting pieces one by one", error=_code(exc))
            for key in keys:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            return
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise OSError(f"could not delete {first.get('Key')}: {first.get('Message')}")

    def idle(self, *, before: dt.datetime, limit: int) -> list[str]:
        latest: dict[str, dt.datetime] = {}
        for items, stamp in (
            (self._objects(self.prefix), "LastModified"),
            (self._arriving(self.prefix), "Initiated"),
        ):
            for item in items:
                token = item["Key"][len(self.prefix) :].split("/", 1)[0]
                when = item[stamp]
                if token not in latest or when > latest[token]:
                    latest[token] = when
        return sorted(token for token, when in latest.items() if when < before)[:limit]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING
