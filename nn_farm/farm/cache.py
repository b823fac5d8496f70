"""The agent's model cache: content-addressed files on disk, capped in size.

A model is known by the sha256 of its bytes. An upload is written to a private
temporary file, hashed while it streams in, and renamed to its final name only
when size and digest match, so a half-written or forged file is never visible.
The final name is ``<digest>.<extension>``, built from the digest and a
whitelisted format alone: nothing a client sends becomes a path.

When the cache grows past its cap, the least recently used models go first
(use time is the file's mtime, so the order survives a restart). A model being
measured is pinned and never evicted under the runtime's feet.

OpenVINO IR is two files (.xml + .bin). It travels as one ``irtar`` upload: an
uncompressed tar with exactly one ``.xml`` and one ``.bin`` member (see
:func:`pack_openvino_ir`). The agent unpacks it, under fixed names, into
``<digest>.ir/model.xml`` and ``model.bin``; member names from the tar are
never used. OpenVINO devices also take plain ``.onnx``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import re
import shutil
import tarfile
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass

from nn_farm.errors import InvalidModel, ModelNotFound, ModelTooLarge

# format -> file extension; the only suffixes a cached file can have.
FORMATS = {"tflite": ".tflite", "onnx": ".onnx", "pt": ".pt", "pt2": ".pt2", "irtar": ".irtar",
           "json": ".json"}  # json: the simulated runtime's model, for scaling benchmarks only
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is a lowercase sha256 hex string.

    Raises:
        InvalidModel: anything else (it could otherwise reach a file name).
    """
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidModel(f"not a sha256 hex digest: {str(digest)[:80]!r}", digest=str(digest)[:80])
    return digest


def check_format(fmt: str, digest: str | None = None) -> str:
    """Return ``fmt`` if it is a whitelisted model format.

    Raises:
        InvalidModel: an unknown format.
    """
    if fmt not in FORMATS:
        raise InvalidModel(f"unsupported model format {fmt!r} (accepted: {sorted(FORMATS)})", digest=digest)
    return fmt


def pack_openvino_ir(xml_path: str | os.PathLike) -> bytes:
    """Pack an OpenVINO IR (``model.xml`` beside ``model.bin``) into one ``irtar`` upload.

    The tar is deterministic (fixed names, times and owners), so the same IR
    always has the same digest and is uploaded once.

    Raises:
        InvalidModel: the .bin beside the .xml is missing.
    """
    xml = pathlib.Path(xml_path)
    bin_ = xml.with_suffix(".bin")
    if not bin_.is_file():
        raise InvalidModel(f"OpenVINO IR {xml} has no weights file {bin_.name} beside it")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, src in (("model.xml", xml), ("model.bin", bin_)):
            data = src.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class CachedModel:
    """A model in the cache. ``path`` is what a runtime loads (the .xml for IR)."""

    digest: str
    format: str
    size: int
    path: pathlib.Path


class ModelCache:
    """Content-addressed model files under ``root``, at most ``max_bytes`` in all.

    Args:
        root: the cache directory (created).
        max_bytes: size cap; older models are evicted to stay under it.

    Example:
        >>> cache = ModelCache("/tmp/models", max_bytes=1 << 30)   # doctest: +SKIP
        >>> with cache.upload(digest, "onnx", size) as up:           # doctest: +SKIP
        ...     up.write(data)
    """

    def __init__(self, root: str | os.PathLike, max_bytes: int):
        self.root = pathlib.Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._pins: dict[str, int] = {}
        self._entries: OrderedDict[str, tuple[str, int]] = OrderedDict()  # digest -> (format, size), LRU first
        self._scan()

    def _scan(self) -> None:
        found = []
        for path in self.root.iterdir():
            if path.name.startswith(".tmp-"):  # left by a crash mid-upload or mid-unpack
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                continue
            digest, _, ext = path.name.partition(".")
            fmt = next((f for f, e in FORMATS.items() if e == "." + ext), None)
            if fmt and _DIGEST.match(digest) and path.is_file():
                st = path.stat()
                found.append((st.st_mtime, digest, fmt, st.st_size))
        for _, digest, fmt, size in sorted(found):
            self._entries[digest] = (fmt, size)

    def _file(self, digest: str, fmt: str) -> pathlib.Path:
        return self.root / f"{check_digest(digest)}{FORMATS[check_format(fmt, digest)]}"

    # -- reading -------------------------------------------------------------------------------
    def has(self, digest: str) -> bool:
        with self._lock:
            return digest in self._entries

    def size_of(self, digest: str) -> int:
        with self._lock:
            return self._entries[digest][1] if digest in self._entries else 0

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, digest: str) -> CachedModel:
        """Look a model up and mark it used.

        Raises:
            ModelNotFound: the digest is not cached (never uploaded, or evicted).
            InvalidModel: the digest is malformed.
        """
        check_digest(digest)
        with self._lock:
            if digest not in self._entries:
                raise ModelNotFound(f"model {digest} is not in the agent's cache; upload it first",
                                    digest=digest)
            fmt, size = self._entries[digest]
            self._entries.move_to_end(digest)
        path = self._file(digest, fmt)
        with contextlib.suppress(OSError):
            os.utime(path)
        if fmt == "irtar":
            path = self._unpack_ir(digest, path)
        return CachedModel(digest, fmt, size, path)

    @contextlib.contextmanager
    def pinned(self, digest: str):
        """Keep ``digest`` from eviction inside the ``with`` block; yields its :class:`CachedModel`."""
        model = self.get(digest)
        with self._lock:
            self._pins[digest] = self._pins.get(digest, 0) + 1
        try:
            yield model
        finally:
            with self._lock:
                self._pins[digest] -= 1
                if not self._pins[digest]:
                    del self._pins[digest]

    def _unpack_ir(self, digest: str, tar_path: pathlib.Path) -> pathlib.Path:
        out = self.root / f"{digest}.ir"
        xml = out / "model.xml"
        if xml.is_file():
            return xml
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            with tarfile.open(tar_path, mode="r:") as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                by_ext = {pathlib.PurePosixPath(m.name).suffix: m for m in members}
                if len(members) != 2 or set(by_ext) != {".xml", ".bin"}:
                    raise InvalidModel(f"model {digest}: an irtar upload must hold exactly one .xml and "
                                       f"one .bin, found {[m.name for m in members]}", digest=digest)
                for ext, member in by_ext.items():
                    # Fixed output names: member names never touch the filesystem.
                    with tar.extractfile(member) as src, open(tmp / f"model{ext}", "wb") as dst:
                        dst.write(src.read())
            tmp.rename(out)
        except tarfile.TarError as exc:
            raise InvalidModel(f"model {digest}: not a readable tar: {exc}", digest=digest) from exc
        except OSError:
            if not xml.is_file():  # a concurrent unpack that won the rename is fine
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
        return xml

    # -- writing -------------------------------------------------------------------------------
    def upload(self, digest: str, fmt: str, total_size: int, *, max_upload_bytes: int | None = None) -> "Upload":
        """Start an upload; use as a context manager, ``write`` the chunks, then it commits.

        Args:
            digest: the sha256 the bytes must have.
            fmt: a key of :data:`FORMATS`.
            total_size: announced size in bytes (checked at commit).
            max_upload_bytes: the agent's limit; defaults to the cache cap.

        Raises:
            InvalidModel: bad digest or format.
            ModelTooLarge: announced or streamed size over the limit.
        """
        check_digest(digest)
        check_format(fmt, digest)
        limit = min(max_upload_bytes or self.max_bytes, self.max_bytes)
        if total_size > limit:
            raise ModelTooLarge(f"model {digest} is {total_size} bytes, over the limit of {limit}",
                                digest=digest)
        return Upload(self, digest, fmt, total_size, limit)

    def _commit(self, digest: str, fmt: str, tmp: pathlib.Path, size: int) -> None:
        final = self._file(digest, fmt)
        with self._lock:
            os.replace(tmp, final)
            self._entries[digest] = (fmt, size)
            self._entries.move_to_end(digest)
            self._evict_locked(keep=digest)

    def _evict_locked(self, keep: str) -> None:
        total = sum(size for _, size in self._entries.values())
        for digest in list(self._entries):
            if total <= self.max_bytes:
                break
            if digest == keep or digest in self._pins:
                continue
            total -= self._remove_locked(digest)

    def evict(self, digest: str) -> bool:
        """Drop one model now (unless pinned). Returns whether it was there."""
        with self._lock:
            if digest not in self._entries or digest in self._pins:
                return False
            self._remove_locked(digest)
            return True

    def _remove_locked(self, digest: str) -> int:
        """Delete a model's files (and an unpacked IR); returns the bytes freed."""
        fmt, size = self._entries.pop(digest)
        self._file(digest, fmt).unlink(missing_ok=True)
        shutil.rmtree(self.root / f"{digest}.ir", ignore_errors=True)
        return size


class Upload:
    """One upload in flight: hashed as it is written, visible only after :meth:`commit`."""

    def __init__(self, cache: ModelCache, digest: str, fmt: str, total_size: int, limit: int):
        self.cache, self.digest, self.format = cache, digest, fmt
        self.total_size, self.limit = total_size, limit
        self.size = 0
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=cache.root)
        self._tmp = pathlib.Path(name)
        self._f = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        """Append a chunk.

        Raises:
            ModelTooLarge: the bytes so far exceed the limit.
        """
        self.size += len(data)
        if self.size > self.limit:
            raise ModelTooLarge(f"model {self.digest}: upload exceeds the limit of {self.limit} bytes",
                                digest=self.digest)
        self._hash.update(data)
        self._f.write(data)

    def commit(self) -> None:
        """Make the model visible if size and digest match.

        Raises:
            InvalidModel: the bytes do not match the announced size or digest.
        """
        self._f.close()
        actual = self._hash.hexdigest()
        if self.total_size and self.size != self.total_size:
            raise InvalidModel(f"model {self.digest}: received {self.size} bytes, announced "
                               f"{self.total_size}", digest=self.digest)
        if actual != self.digest:
            raise InvalidModel(f"model {self.digest}: uploaded bytes have sha256 {actual}, "
                               "not the announced digest", digest=self.digest)
        self.cache._commit(self.digest, self.format, self._tmp, self.size)

    def abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "Upload":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.abort()  # no-op after a commit: the temp file was renamed
