"""Where a streaming writer's parts go: one sink per kind of store.

A sink takes full parts in order (``ship``, which starts the upload or the
write and returns a job), waits for a job (``collect``), and at the end
stores the tail and makes the object appear (``close``), or removes every
trace (``abort``).  An object that fits in one part is one ordinary PUT:
no multipart upload, session or blocks are started for it."""
from __future__ import annotations

import concurrent.futures
import errno
import os
from typing import Any, Optional

from . import _engine, azure_store, gcs_store, s3_multipart
from ._native import ffi
from .errors import AlreadyExistsError, StorageIOError, error_from_oserror
from .uri import ParsedURI

MiB = 1 << 20
_DIRECT_ALIGN = 4096


def _crc_b64(crc: int) -> str:
    import base64
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _single_put(parsed: ParsedURI, data: Any, overwrite: bool) -> Optional[str]:
    """The whole object in one request; returns its ETag."""
    from . import api
    flags = 0 if overwrite else _engine.F_CREATE_ONLY
    req = api._request(_engine.OP_PUT, parsed, data=data, flags=flags)
    results = _engine.Pending([req], 1).finish()
    try:
        results.raise_first()
        if parsed.scheme == "gs":  # the upload's reply is the object's JSON
            meta = gcs_store.parse_json(bytes(results.views[0]), parsed.raw)
            return meta.get("etag") if isinstance(meta, dict) else None
        stat = results.stat(0)
        return ffi.string(stat.etag).decode() or None if stat is not None else None
    finally:
        for view in results.views:
            view.release()
        results.free()


class Sink:
    sequential = False  # parts must go one after another (GCS chunks)

    def __init__(self, parsed: ParsedURI, options: Any) -> None:
        self.parsed = parsed
        self.options = options

    def part_size(self, wanted: int) -> int:
        return wanted

    def ship(self, number: int, part: memoryview, offset: int) -> Any:
        raise NotImplementedError

    def collect(self, job: Any) -> None:
        raise NotImplementedError

    def discard(self, job: Any) -> None:
        """Stops a job that will not be collected (the writer is aborting)."""
        if isinstance(job, _engine.Pending):
            job.cancel()
        elif isinstance(job, tuple) and isinstance(job[0], _engine.Pending):
            job[0].cancel()

    def close(self, tail: memoryview, total: int, crc: int, shipped: int) -> Optional[str]:
        raise NotImplementedError

    def abort(self) -> None:
        pass


class S3Sink(Sink):
    """Parts of a multipart upload, started with the first full part."""

    def __init__(self, parsed: ParsedURI, options: Any) -> None:
        super().__init__(parsed, options)
        self.upload: Optional[s3_multipart.Upload] = None
        self.etags: dict[int, str] = {}
        self.checksums: dict[int, str] = {}

    def part_size(self, wanted: int) -> int:
        return max(wanted, s3_multipart.MIN_PART)

    def ship(self, number: int, part: memoryview, offset: int) -> Any:
        if self.upload is None:
            upload = s3_multipart.Upload(self.parsed)
            upload.take_upload_id(_engine.Pending([upload.start_request(())], 1).finish())
            self.upload = upload
        crc = s3_multipart.crc32c_b64(part)
        self.checksums[number] = crc
        return _engine.Pending([self.upload.part_request(number + 1, part, crc)], 1), number

    def collect(self, job: Any) -> None:
        pending, number = job
        assert self.upload is not None
        self.etags[number] = self.upload.part_etags(pending.finish(), number + 1)[0]

    def close(self, tail: memoryview, total: int, crc: int, shipped: int) -> Optional[str]:
        if self.upload is None:
            return _single_put(self.parsed, tail, self.options.overwrite)
        if len(tail):
            self.collect(self.ship(shipped, tail, total - len(tail)))
        count = len(self.etags)
        request = self.upload.complete_request([self.etags[n] for n in range(count)],
                                               [self.checksums[n] for n in range(count)],
                                               not self.options.overwrite)
        return self.upload.completed_etag(_engine.Pending([request], 1).finish())

    def abort(self) -> None:
        if self.upload is not None and self.upload.query:
            results = _engine.Pending([self.upload.abort_request()], 1).finish()
            results.free()


class GcsSink(Sink):
    """Chunks of a resumable session, in order, started with the first."""

    sequential = True

    def __init__(self, parsed: ParsedURI, options: Any) -> None:
        super().__init__(parsed, options)
        self.session: Optional[str] = None

    def part_size(self, wanted: int) -> int:
        quantum = gcs_store.CHUNK_QUANTUM
        return max(quantum, wanted - wanted % quantum)

    def ship(self, number: int, part: memoryview, offset: int) -> Any:
        if self.session is None:
            start = gcs_store.session_start_request(self.parsed, (), not self.options.overwrite)
            self.session = gcs_store.session_uri(self.parsed,
                                                 _engine.Pending([start], 1).finish())
        request = gcs_store.chunk_request(self.parsed, self.session, part, offset, None, None)
        return _engine.Pending([request], 1), offset + len(part)

    def collect(self, job: Any) -> None:
        pending, end = job
        results = pending.finish()
        try:
            results.raise_first()
            reply = results.response_headers(0)
        finally:
            for view in results.views:
                view.release()
            results.free()
        held = gcs_store._persisted(reply)
        if reply is None or reply.status != 308 or held != end:
            # A streaming writer cannot send again what it no longer holds.
            raise StorageIOError(f"GCS session holds {held} of {end} bytes after a chunk: "
                                 f"{self.parsed.raw}", uri=self.parsed.raw,
                                 code="ChunkNotPersisted")

    def close(self, tail: memoryview, total: int, crc: int, shipped: int) -> Optional[str]:
        if self.session is None:
            return _single_put(self.parsed, tail, self.options.overwrite)
        request = gcs_store.chunk_request(self.parsed, self.session, tail, total - len(tail),
                                          total, _crc_b64(crc))
        results = _engine.Pending([request], 1).finish()
        try:
            results.raise_first()
            reply = results.response_headers(0)
            body = bytes(results.views[0])
        finally:
            for view in results.views:
                view.release()
            results.free()
        if reply is None or reply.status not in (200, 201):
            raise StorageIOError(f"GCS did not finish the upload (HTTP "
                                 f"{reply.status if reply else '?'}): {self.parsed.raw}",
                                 uri=self.parsed.raw, code="UploadIncomplete")
        meta = gcs_store.parse_json(body, self.parsed.raw) if body else {}
        if isinstance(meta, dict) and "size" in meta and int(meta["size"]) != total:
            raise StorageIOError(f"GCS stored {meta['size']} bytes of {total}: "
                                 f"{self.parsed.raw}", uri=self.parsed.raw, code="SizeMismatch")
        return meta.get("etag") if isinstance(meta, dict) else None

    def abort(self) -> None:
        if self.session is not None:  # cancels the session (GCS answers 499)
            client = gcs_store.current()
            request = _engine.Request(_engine.OP_DELETE, self.parsed.raw, self.session,
                                      client=client.single_shot, headers=client.auth())
            _engine.Pending([request], 1).finish().free()


class AzureSink(Sink):
    """Blocks staged in parallel, committed in order at close."""

    def __init__(self, parsed: ParsedURI, options: Any) -> None:
        super().__init__(parsed, options)
        self.upload = azure_store.new_upload()

    def ship(self, number: int, part: memoryview, offset: int) -> Any:
        return _engine.Pending([azure_store.block_request(self.parsed, self.upload, number,
                                                          part)], 1)

    def collect(self, job: Any) -> None:
        results = job.finish()
        results.raise_first()
        results.free()

    def close(self, tail: memoryview, total: int, crc: int, shipped: int) -> Optional[str]:
        if shipped == 0:
            return _single_put(self.parsed, tail, self.options.overwrite)
        if len(tail):
            self.collect(self.ship(shipped, tail, total - len(tail)))
            shipped += 1
        request = azure_store.commit_request(self.parsed, self.upload, shipped, (),
                                             not self.options.overwrite)
        return azure_store.committed_etag(_engine.Pending([request], 1).finish())


class FileSink(Sink):
    """A temporary file beside the target, written at each part's offset by
    a few threads (os.pwrite releases the GIL), renamed into place at close;
    with ``direct``, opened with O_DIRECT (buffered if the file system
    refuses it), the tail padded to 4 KiB and the file truncated back."""

    def __init__(self, parsed: ParsedURI, options: Any, direct: bool) -> None:
        super().__init__(parsed, options)
        assert parsed.path is not None
        self.path = parsed.path
        self.direct = direct
        directory = os.path.dirname(self.path) or "/"
        try:
            os.makedirs(directory, exist_ok=True)
            self.tmp = os.path.join(directory, f".{os.path.basename(self.path)}."
                                    f"s3dlio-{os.urandom(6).hex()}.tmp")
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                              0o666)
            if direct:
                import fcntl
                try:
                    fcntl.fcntl(self.fd, fcntl.F_SETFL,
                                fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_DIRECT)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self.direct = False  # the file system refuses O_DIRECT (ramfs)
        except OSError as exc:
            raise error_from_oserror(exc, parsed.raw) from exc
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(4, options.max_in_flight), thread_name_prefix="s3dlio-writer")

    def part_size(self, wanted: int) -> int:
        if not self.direct:
            return wanted
        return max(_DIRECT_ALIGN, wanted - wanted % _DIRECT_ALIGN)

    def _pwrite(self, part: memoryview, offset: int) -> None:
        done = 0
        while done < len(part):  # bounded: each pass writes at least one byte or raises
            written = os.pwrite(self.fd, part[done:], offset + done)
            if written <= 0:
                raise OSError(errno.EIO, "pwrite wrote nothing")
            done += written

    def ship(self, number: int, part: memoryview, offset: int) -> Any:
        return self.pool.submit(self._pwrite, part, offset)

    def collect(self, job: Any) -> None:
        try:
            job.result()
        except OSError as exc:
            raise error_from_oserror(exc, self.parsed.raw) from exc

    def discard(self, job: Any) -> None:
        job.cancel()
        try:
            job.result()
        except BaseException:
            pass

    def close(self, tail: memoryview, total: int, crc: int, shipped: int) -> Optional[str]:
        try:
            if len(tail):
                if self.direct:
                    # O_DIRECT writes whole blocks from aligned memory: pad
                    # the tail inside its (page-aligned) buffer, then cut
                    # the file back to its real size.
                    padded = -(-len(tail) // _DIRECT_ALIGN) * _DIRECT_ALIGN
                    whole = memoryview(tail.obj).cast("B")
                    whole[len(tail):padded] = bytes(padded - len(tail))
                    self._pwrite(whole[:padded], total - len(tail))
                    os.ftruncate(self.fd, total)
                else:
                    self._pwrite(tail, total - len(tail))
            if self.options.fsync:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            if self.options.overwrite:
                os.rename(self.tmp, self.path)
            else:
                try:
                    os.link(self.tmp, self.path)  # fails if the name exists
                except FileExistsError:
                    raise AlreadyExistsError(f"already exists: {self.parsed.raw}",
                                             uri=self.parsed.raw, code="AlreadyExists") from None
                os.unlink(self.tmp)
            if self.options.fsync:
                directory = os.open(os.path.dirname(self.path) or "/", os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
        except AlreadyExistsError:
            raise
        except OSError as exc:
            raise error_from_oserror(exc, self.parsed.raw) from exc
        finally:
            self.pool.shutdown(wait=True)
        return None

    def abort(self) -> None:
        self.pool.shutdown(wait=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def for_uri(parsed: ParsedURI, options: Any) -> Sink:
    if parsed.scheme == "s3":
        return S3Sink(parsed, options)
    if parsed.scheme == "gs":
        return GcsSink(parsed, options)
    if parsed.scheme == "az":
        return AzureSink(parsed, options)
    return FileSink(parsed, options, direct=parsed.scheme == "direct")
