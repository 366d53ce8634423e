"""S3 storage for job inputs and outputs: private objects, short presigned downloads, streamed transfers.

Selected by ``STORAGE_BUCKET`` (see settings). Objects are written without an ACL, so they get the
bucket's default (private; AWS's "bucket owner enforced" ownership rejects ACLs anyway); a public ACL is
refused at configuration time. Downloads are presigned GET URLs that expire after
``STORAGE_URL_EXPIRY_SECONDS``; the web process never proxies output bytes.

Uploads stream from the request's temporary file through boto3's managed transfer (multipart above
``multipart_threshold``, a few chunks in memory at a time); workers download inputs straight to a file
(``download_to``) instead of S3File's spooled copy.

``public_endpoint_url`` covers S3-compatible stores reached at a different address inside the cluster
than from clients (MinIO as ``http://minio:9000`` in docker compose, ``http://localhost:9000`` in a
browser): presigned URLs are signed for the public address, since SigV4 signs the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from django.core.exceptions import ImproperlyConfigured
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

MB = 1024 * 1024


class PrivateS3Storage(S3Storage):
    default_acl = None
    querystring_auth = True
    querystring_expire = 300
    signature_version = "s3v4"  # SigV4 presigned URLs (X-Amz-Expires); SigV2 is deprecated and region-limited
    file_overwrite = True  # names contain the job's uuid; skip a HEAD request per save
    max_memory_size = 8 * MB  # S3File (``open``) spools to disk past this

    def __init__(self, **options: Any) -> None:
        self.public_endpoint_url: str | None = options.pop("public_endpoint_url", None) or None
        chunk = int(options.pop("multipart_chunksize", 8 * MB))
        options.setdefault(
            "transfer_config",
            TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=4),
        )
        super().__init__(**options)
        acl = str(self.default_acl or "")
        if acl.startswith("public") or acl == "authenticated-read":
            raise ImproperlyConfigured(f"Job files must stay private; refusing default ACL {acl!r}.")
        if not self.querystring_auth:
            raise ImproperlyConfigured("Job files must be served through presigned URLs (querystring_auth).")
        self._public_client = None

    def download_to(self, name: str, path: str | Path) -> Path:
        """Stream an object to a local file (multipart ranged GETs, constant memory)."""
        key = self._normalize_name(clean_name(name))
        self.bucket.download_file(key, str(path), Config=self.transfer_config)
        return Path(path)

    def _signing_client(self):
        """The client presigned URLs are made with: the public endpoint's when one is configured."""
        if not self.public_endpoint_url:
            return self.connection.meta.client
        if self._public_client is None:
            self._public_client = self._create_session().client(
                "s3", region_name=self.region_name, use_ssl=self.use_ssl,
                endpoint_url=self.public_endpoint_url, config=self.client_config, verify=self.verify,
            )
        return self._public_client

    def presigned_put_url(self, name: str, *, expire: int) -> str:
        """A presigned PUT URL for a client's direct upload (``jobs.direct_uploads``). S3 does not bound the
        size of a presigned PUT; the server checks the stored object's size before using it."""
        key = self._normalize_name(clean_name(name))
        return self._signing_client().generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket_name, "Key": key}, ExpiresIn=int(expire), HttpMethod="PUT"
        )

    def url(self, name: str, parameters: dict[str, Any] | None = None, expire: int | None = None,
            http_method: str | None = None) -> str:
        """A presigned GET URL (short expiry), signed for the public endpoint when one is configured."""
        if not self.public_endpoint_url:
            return super().url(name, parameters=parameters, expire=expire, http_method=http_method)
        if self._public_client is None:
            self._public_client = self._create_session().client(
                "s3", region_name=self.region_name, use_ssl=self.use_ssl,
                endpoint_url=self.public_endpoint_url, config=self.client_config, verify=self.verify,
            )
        key = self._normalize_name(clean_name(name))
        params = {**(parameters or {}), "Bucket": self.bucket_name, "Key": key}
        return self._public_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expire or self.querystring_expire, HttpMethod=http_method
        )
