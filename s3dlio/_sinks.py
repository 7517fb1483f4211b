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

from . import _engine, _local, azure_store, gcs_store, s3_multipart
from ._native import ffi
from .errors import (AlreadyExistsError, InvalidArgumentError, StorageIOError, ThrottledError,
                     TimeoutError, error_from_oserror)
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
    #: The sink can write parts from the caller's memory, so large writes
    #: skip the copy into part buffers (local buffered files).
    borrows = False

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
        if number >= s3_multipart.MAX_PARTS:
            raise InvalidArgumentError(
                f"more than {s3_multipart.MAX_PARTS} parts of {len(part)} bytes: use a larger "
                f"chunk_size for {self.parsed.raw}", uri=self.parsed.raw, code="TooManyParts")
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
    """Chunks of a resumable session, in order, started with the first.
    A chunk that fails, or that the session holds only in part, is
    recovered as GCS prescribes: ask the session how much it holds and
    send the rest of the chunk again (its buffer is still ours until it is
    collected), at most five times per chunk."""

    sequential = True
    _RECOVERIES = 5
    _RECOVERABLE = (StorageIOError, ThrottledError, TimeoutError)

    def __init__(self, parsed: ParsedURI, options: Any) -> None:
        super().__init__(parsed, options)
        self.session: Optional[str] = None

    def part_size(self, wanted: int) -> int:
        quantum = gcs_store.CHUNK_QUANTUM
        return max(quantum, wanted - wanted % quantum)

    def _send(self, piece: memoryview, offset: int, total: Optional[int],
              crc: Optional[str]) -> _engine.Pending:
        assert self.session is not None
        request = gcs_store.chunk_request(self.parsed, self.session, piece, offset, total, crc)
        return _engine.Pending([request], 1)

    def _reply(self, pending: _engine.Pending) -> tuple[Optional[Any], bytes]:
        """The chunk's reply and body, or (None, b"") after a failure worth
        recovering from."""
        results = pending.finish()
        try:
            results.raise_first()
            return results.response_headers(0), bytes(results.views[0])
        except self._RECOVERABLE:
            return None, b""
        finally:
            for view in results.views:
                view.release()
            results.free()

    def _status(self, total: Optional[int]) -> Any:
        assert self.session is not None
        request = gcs_store.status_request(self.parsed, self.session, total)
        results = _engine.Pending([request], 1).finish()
        try:
            results.raise_first()
            return results.response_headers(0)
        finally:
            results.free()

    def _deliver(self, pending: _engine.Pending, piece: memoryview, offset: int,
                 total: Optional[int], crc: Optional[str]) -> bytes:
        """Waits for a chunk and recovers it until the session holds all of
        it (or, for the last chunk, the object is complete); returns the
        last reply's body."""
        end = offset + len(piece)
        for _attempt in range(self._RECOVERIES + 1):
            reply, body = self._reply(pending)
            if reply is not None and reply.status in (200, 201):
                return body
            if reply is None or reply.status != 308:
                reply = self._status(total)  # what does the session hold?
                if reply is not None and reply.status in (200, 201):
                    return b""
            held = gcs_store.persisted(reply)
            if total is None and held == end:
                return b""
            if not offset <= held <= end:
                break
            pending = self._send(piece[held - offset:], held, total, crc)
        else:
            pending.cancel()
        raise StorageIOError(f"GCS session did not take the chunk at {offset} after "
                             f"{self._RECOVERIES} recoveries: {self.parsed.raw}",
                             uri=self.parsed.raw, code="ChunkNotPersisted")

    def ship(self, number: int, part: memoryview, offset: int) -> Any:
        if self.session is None:
            start = gcs_store.session_start_request(self.parsed, (), not self.options.overwrite)
            self.session = gcs_store.session_uri(self.parsed,
                                                 _engine.Pending([start], 1).finish())
        return self._send(part, offset, None, None), part, offset

    def collect(self, job: Any) -> None:
        pending, part, offset = job
        self._deliver(pending, part, offset, None, None)

    def close(self, tail: memoryview, total: int, crc: int, shipped: int) -> Optional[str]:
        if self.session is None:
            return _single_put(self.parsed, tail, self.options.overwrite)
        offset = total - len(tail)
        body = self._deliver(self._send(tail, offset, total, _crc_b64(crc)), tail, offset,
                             total, _crc_b64(crc))
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

    MAX_BLOCKS = 50_000
    MAX_BLOCK = 4000 * MiB

    def __init__(self, parsed: ParsedURI, options: Any) -> None:
        super().__init__(parsed, options)
        self.upload = azure_store.new_upload()

    def part_size(self, wanted: int) -> int:
        return min(wanted, self.MAX_BLOCK)  # Azure's largest block

    def ship(self, number: int, part: memoryview, offset: int) -> Any:
        if number >= self.MAX_BLOCKS:
            raise InvalidArgumentError(
                f"more than {self.MAX_BLOCKS} blocks of {len(part)} bytes: use a larger "
                f"chunk_size for {self.parsed.raw}", uri=self.parsed.raw, code="TooManyParts")
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
            # Short, so any name that fits its directory has a temporary one.
            self.tmp = os.path.join(directory, f"{_local.TEMP_MARKER}{os.urandom(8).hex()}")
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                              0o666)
        except OSError as exc:
            raise error_from_oserror(exc, parsed.raw) from exc
        if direct:
            import fcntl
            try:
                fcntl.fcntl(self.fd, fcntl.F_SETFL,
                            fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    self.abort()
                    raise error_from_oserror(exc, parsed.raw) from exc
                self.direct = False  # the file system refuses O_DIRECT (ramfs)
        self.pool: Optional[concurrent.futures.ThreadPoolExecutor] = \
            concurrent.futures.ThreadPoolExecutor(max_workers=min(4, options.max_in_flight),
                                                  thread_name_prefix="s3dlio-writer")

    @property
    def borrows(self) -> bool:  # type: ignore[override]
        # O_DIRECT needs page-aligned memory, which a caller's buffer may not be.
        return not self.direct

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
        assert self.pool is not None
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
            fd, self.fd = self.fd, -1
            os.close(fd)  # Linux releases the fd even when close reports an error
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
            self._stop_threads()
        return None

    def _stop_threads(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def abort(self) -> None:
        try:
            self._stop_threads()
            fd, self.fd = self.fd, -1
            if fd >= 0:
                os.close(fd)
        finally:
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
