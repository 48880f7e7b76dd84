"""The files of one exported version, and the check that a version directory is complete and intact.

A version directory is named by a plain ASCII decimal integer (TF Serving's
rule: no sign, no leading zero, no other script's digits such as "²" or
"٧"). The export writes `manifest.json` last, at the version's root: the size
and SHA-256 of every other file. `check_version` compares the files with it
(sizes everywhere; digests except under `variables/`, whose checkpoint
carries its own checksums) and, where the version holds the catalogue files
of a tfrec export, their line counts with `assets/export_info.json`'s item
count, so that older exports without a manifest are checked too. The server
refuses a version that fails it before loading; the export reads the
catalogue it carries forward from the newest version that passes it.

Example:

>>> is_version_name("12"), is_version_name("012"), is_version_name("\u0667")
(True, False, False)
>>> check_version("exports/movies/3")  # doctest: +SKIP
Traceback (most recent call last):
tfrec.version_files.IncompleteVersionError: exports/movies/3/assets/item_ids.txt: 1200 bytes; manifest.json says 2400
"""

import hashlib
import json
import os
import re

MANIFEST = "manifest.json"
MODEL_FILE = "saved_model.pb"
ASSETS = "assets"
IDS_ASSET = "item_ids.txt"
TITLES_ASSET = "item_titles.txt"
ITEMS_ASSET = "items.jsonl"
INFO_ASSET = "export_info.json"
_VERSION_NAME = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_UNHASHED_DIR = "variables"  # TensorFlow checks each tensor's CRC32C when it restores the checkpoint
_CHUNK = 1 << 20


class IncompleteVersionError(ValueError):
    """A version directory is missing files, or its files differ from its manifest or from each other."""


def is_version_name(name: str) -> bool:
    """Whether directory `name` is a version: a decimal integer in ASCII digits, no sign, no leading zero."""
    return bool(_VERSION_NAME.fullmatch(name))


def version_numbers(model_dir: str) -> list:
    """The sorted version numbers named in `model_dir` (empty when it does not exist), complete or not."""
    try:
        names = os.listdir(model_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(name) for name in names if is_version_name(name) and os.path.isdir(os.path.join(model_dir, name)))


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(version_dir):
    """Relative paths ('/'-separated) of every file under `version_dir` but the manifest, sorted."""
    found = []
    for root, _, names in os.walk(version_dir):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), version_dir).replace(os.sep, "/")
            if relative != MANIFEST:
                found.append(relative)
    return sorted(found)


def write_manifest(version_dir: str) -> str:
    """Writes `version_dir/manifest.json` (size and SHA-256 of every other file); call it last. Returns its path."""
    files = {}
    for relative in _files(version_dir):
        path = os.path.join(version_dir, relative)
        files[relative] = {"bytes": os.path.getsize(path), "sha256": _sha256(path)}
    manifest = os.path.join(version_dir, MANIFEST)
    with open(manifest, "w", encoding="utf-8") as f:
        json.dump({"format": 1, "files": files}, f, indent=1, sort_keys=True)
    return manifest


def check_version(version_dir: str) -> None:
    """Raises `IncompleteVersionError` naming the file when `version_dir` is not a complete, intact version.

    Checked: `saved_model.pb` exists; every file `manifest.json` lists (when
    there is one) exists with its size and (outside `variables/`) its digest;
    the catalogue files (`item_ids.txt`, `item_titles.txt`, `items.jsonl`)
    hold as many lines as `export_info.json` has items (when it exists).
    """
    if not os.path.isfile(os.path.join(version_dir, MODEL_FILE)):
        raise IncompleteVersionError(f"{version_dir}: no {MODEL_FILE} (empty, or still being copied in)")
    manifest = os.path.join(version_dir, MANIFEST)
    if os.path.exists(manifest):
        _check_manifest(version_dir, manifest)
    _check_counts(version_dir)


def _check_manifest(version_dir, manifest):
    try:
        with open(manifest, encoding="utf-8") as f:
            files = json.load(f)["files"]
        listed = {name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise IncompleteVersionError(f"{manifest}: unreadable ({e})") from None
    for relative, (size, digest) in sorted(listed.items()):
        path = os.path.join(version_dir, *relative.split("/"))
        if not os.path.isfile(path):
            raise IncompleteVersionError(f"{path}: missing; {MANIFEST} lists it")
        actual = os.path.getsize(path)
        if actual != size:
            raise IncompleteVersionError(f"{path}: {actual} bytes; {MANIFEST} says {size}")
        if relative.split("/")[0] != _UNHASHED_DIR and _sha256(path) != digest:
            raise IncompleteVersionError(f"{path}: its SHA-256 differs from {MANIFEST}'s (changed after the export)")


def _line_count(path):
    """Complete lines of `path`: a last line cut off before its line break does not count."""
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(_CHUNK), b""))


def _check_counts(version_dir):
    info_path = os.path.join(version_dir, ASSETS, INFO_ASSET)
    if not os.path.exists(info_path):
        return  # not a tfrec export (or one written before export_info.json): nothing to count against
    try:
        with open(info_path, encoding="utf-8") as f:
            num_items = int(json.load(f)["num_items"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IncompleteVersionError(f"{info_path}: unreadable or without num_items ({e})") from None
    for name in (IDS_ASSET, TITLES_ASSET, ITEMS_ASSET):
        path = os.path.join(version_dir, ASSETS, name)
        if name == IDS_ASSET or os.path.exists(path):
            count = _line_count(path) if os.path.exists(path) else 0
            if count != num_items:
                raise IncompleteVersionError(
                    f"{path}: {count} items; {INFO_ASSET} says the version serves {num_items} (truncated or "
                    "replaced after the export)")
