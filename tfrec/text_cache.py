"""On-disk cache of text vectors: what an encoder computes for a text, computed once.

Entries are keyed by the encoder's fingerprint (`TextEncoder.fingerprint`: its
weights, tokenizer, sequence length, pooling and which output is cached) and
the exact text. They live in `text-vectors/` under `$TFREC_CACHE_DIR`, else
`$XDG_CACHE_HOME/tfrec`, else `~/.cache/tfrec`. `TFREC_TEXT_CACHE=0` (or
`off`, `false`, `no`) turns the cache off.

Each store writes one shard, `<fingerprint>-<hash of its texts>.tv`:

    magic b"TFRECTV1" | width uint32 | count uint32
    | count text keys (16-byte BLAKE2b of the UTF-8 text)
    | count uint32 row counts | the rows, float32 [sum of row counts, width]
    | BLAKE2b-16 of everything before | file length uint64 | b"TFRECEND"

A shard is written to a temporary file and renamed into place (`os.replace`),
so readers never see it half written; one that is cut short, padded or
altered anyway fails its length or checksum: it is ignored (a miss) and
deleted. Reading a shard marks it used (its modification time); after each
store the least recently used shards are deleted until the directory holds at
most `$TFREC_CACHE_MAX_BYTES` (default `DEFAULT_MAX_BYTES`, 2 GiB).

Example:

>>> import tempfile
>>> cache = TextVectorCache("0123abcd", directory=tempfile.mkdtemp())
>>> cache.store(["star wars"], [np.ones((1, 4), np.float32)])
>>> cache.load(["star wars", "amelie"])
{0: array([[1., 1., 1., 1.]], dtype=float32)}
"""

import hashlib
import os
import pathlib
import struct
import time
import uuid

import numpy as np
from absl import logging

MAGIC = b"TFRECTV1"
END = b"TFRECEND"
HEADER = struct.Struct("<8sII")
FOOTER = struct.Struct("<16sQ8s")
KEY_BYTES = 16
SUFFIX = ".tv"
DEFAULT_MAX_BYTES = 2 * 1024 ** 3
STALE_TEMPORARY_SECONDS = 3600  # a temporary file this old belongs to a run that died
OFF_VALUES = ("0", "off", "false", "no")


def cache_directory() -> pathlib.Path:
    """The text-vector cache directory (see module doc); not created here.

    >>> cache_directory().name
    'text-vectors'
    """
    base = os.environ.get("TFREC_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = os.path.join(xdg, "tfrec") if xdg else os.path.join(os.path.expanduser("~"), ".cache", "tfrec")
    return pathlib.Path(base) / "text-vectors"


def cache_enabled() -> bool:
    """False when `TFREC_TEXT_CACHE` is `0`, `off`, `false` or `no`."""
    return os.environ.get("TFREC_TEXT_CACHE", "1").strip().lower() not in OFF_VALUES


def max_cache_bytes() -> int:
    """The size bound, `$TFREC_CACHE_MAX_BYTES` or `DEFAULT_MAX_BYTES`.

    Raises:
        ValueError: naming the variable and its value when that is no integer >= 0.
    """
    value = os.environ.get("TFREC_CACHE_MAX_BYTES", str(DEFAULT_MAX_BYTES))
    if not value.strip().isdigit():
        raise ValueError(f"TFREC_CACHE_MAX_BYTES={value!r}: expected a number of bytes (an integer >= 0)")
    return int(value)


def text_key(text: str) -> bytes:
    """The 16-byte key of a text (BLAKE2b of its UTF-8 bytes)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


def encode_shard(keys: list, arrays: list) -> bytes:
    """The bytes of a shard holding `arrays[i]` (float32 `[rows, width]`) under `keys[i]`."""
    width = arrays[0].shape[1]
    rows = np.array([len(array) for array in arrays], "<u4")
    data = np.concatenate(arrays).astype("<f4", copy=False)
    body = b"".join([HEADER.pack(MAGIC, width, len(keys)), *keys, rows.tobytes(), data.tobytes()])
    digest = hashlib.blake2b(body, digest_size=16).digest()
    return body + FOOTER.pack(digest, len(body) + FOOTER.size, END)


def decode_shard(content: bytes) -> dict:
    """The `{key: float32 [rows, width]}` of a shard's bytes; {} when they are no complete shard."""
    if len(content) < HEADER.size + FOOTER.size:
        return {}
    digest, length, end = FOOTER.unpack_from(content, len(content) - FOOTER.size)
    body = memoryview(content)[:len(content) - FOOTER.size]
    if end != END or length != len(content) or hashlib.blake2b(body, digest_size=16).digest() != digest:
        return {}
    magic, width, count = HEADER.unpack_from(content)
    if magic != MAGIC:
        return {}
    offset = HEADER.size
    keys = [bytes(body[offset + i * KEY_BYTES:offset + (i + 1) * KEY_BYTES]) for i in range(count)]
    offset += count * KEY_BYTES
    rows = np.frombuffer(content, "<u4", count, offset)
    data = np.frombuffer(content, "<f4", offset=offset + 4 * count,
                         count=(len(body) - offset - 4 * count) // 4).reshape(-1, width)
    if len(data) != rows.sum():
        return {}
    starts = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
    return {key: data[starts[i]:starts[i + 1]] for i, key in enumerate(keys)}


class TextVectorCache:
    """The cached outputs of one encoder (one fingerprint), by text.

    Args:
        fingerprint: hex string naming the encoder and its output.
        directory: where shards live (default `cache_directory()`).
        max_bytes: size bound of the directory (default `max_cache_bytes()`).
    """

    def __init__(self, fingerprint: str, directory=None, max_bytes=None):
        self.fingerprint = fingerprint
        self.directory = pathlib.Path(directory) if directory is not None else cache_directory()
        self.max_bytes = max_cache_bytes() if max_bytes is None else max_bytes

    def shards(self) -> list:
        """Paths of this fingerprint's complete-looking shards (content not checked yet)."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"{self.fingerprint}-*{SUFFIX}"))

    def load(self, texts: list) -> dict:
        """`{index in texts: float32 [rows, width]}` for the texts the cache holds.

        Shards that are missing, unreadable or fail their checks are skipped.
        """
        wanted = {}
        for index, text in enumerate(texts):
            wanted.setdefault(text_key(text), []).append(index)
        found = {}
        for path in self.shards():
            try:
                entries = decode_shard(path.read_bytes())
            except OSError:  # evicted by another run since listed
                continue
            if not entries:
                logging.warning("text vector cache: deleting %s (incomplete or damaged)", path.name)
                path.unlink(missing_ok=True)
                continue
            hits = [key for key in entries if key in wanted]
            for key in hits:
                for index in wanted.pop(key):
                    found[index] = entries[key]
            if hits:
                _touch(path)
        return found

    def store(self, texts: list, arrays: list) -> None:
        """Writes `arrays[i]` (float32 `[rows, width]`) as the entry of `texts[i]`, then evicts
        least recently used shards beyond the size bound. Failing to write only logs a warning."""
        if not texts:
            return
        keys = [text_key(text) for text in texts]
        content = encode_shard(keys, arrays)
        if len(content) > self.max_bytes:
            logging.info("text vector cache: %d bytes exceed TFREC_CACHE_MAX_BYTES=%d, not stored",
                         len(content), self.max_bytes)
            return
        name = f"{self.fingerprint}-{hashlib.blake2b(b''.join(sorted(keys)), digest_size=8).hexdigest()}{SUFFIX}"
        temporary = self.directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(content)
            os.replace(temporary, self.directory / name)
        except OSError as error:
            logging.warning("text vector cache: could not write %s: %s", self.directory / name, error)
            temporary.unlink(missing_ok=True)
            return
        evict(self.directory, self.max_bytes)


def evict(directory, max_bytes: int) -> None:
    """Deletes the least recently used shards of `directory` until the rest hold at most
    `max_bytes`, and temporary files older than `STALE_TEMPORARY_SECONDS` (left by runs that died)."""
    files = []
    for path in pathlib.Path(directory).iterdir():
        try:
            status = path.stat()
        except OSError:  # deleted by another run meanwhile
            continue
        if path.name.endswith(".tmp"):
            if time.time() - status.st_mtime > STALE_TEMPORARY_SECONDS:
                path.unlink(missing_ok=True)
        elif path.name.endswith(SUFFIX):
            files.append((status.st_mtime, status.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files, key=lambda entry: entry[0]):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        logging.info("text vector cache: evicted %s (%d bytes)", path.name, size)


def _touch(path):
    try:
        os.utime(path)
    except OSError:  # evicted meanwhile
        pass
