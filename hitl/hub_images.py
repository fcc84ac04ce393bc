"""Images from a Hugging Face dataset: ``HITL_IMAGES=hf://datasets/OWNER/NAME[/SUBDIR][@REV]``.

A Space has no images on its disk, so the image source can name a dataset
repo instead of a folder. It is downloaded once into a local cache folder
and the rest of the app sees an ordinary folder of images.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

PREFIX = "hf://"
IMAGE_PATTERNS = [
    f"*.{ext}"
    for e in ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
    for ext in (e, e.upper())
]
# Hub rules for an owner or repo name: letters, digits, '-', '_', '.', not starting or ending
# with '-' or '.'.
_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$")
_USAGE = "expected hf://datasets/OWNER/NAME[/SUBDIR][@REVISION]"


@dataclass
class HubDatasetRef:
    """A dataset repo on the Hub, an optional folder inside it and an optional revision."""

    repo_id: str
    subdir: str | None
    revision: str | None = None


def parse_hf_uri(uri: str) -> HubDatasetRef | None:
    """None when uri is not hf://; a HubDatasetRef for hf://datasets/...; else ValueError (why).

    The revision may come last (``.../SUBDIR@main``) or right after the name
    (``OWNER/NAME@main/SUBDIR``, as huggingface_hub's own hf:// paths write it);
    write a '/' inside a revision as %2F in the second form.
    """
    if not uri.startswith(PREFIX):
        return None
    rest = uri[len(PREFIX) :]
    kind, _, rest = rest.partition("/")
    if kind in ("models", "spaces", "buckets"):
        raise ValueError(f"{uri!r}: only datasets can hold the images ({_USAGE})")
    if kind != "datasets":
        raise ValueError(f"{uri!r}: {_USAGE}")
    revision = None
    parts = rest.split("/")
    if len(parts) >= 2 and "@" in parts[1]:  # OWNER/NAME@REV[/SUBDIR]
        parts[1], _, revision = parts[1].partition("@")
        revision = unquote(revision)
    elif "@" in rest:  # OWNER/NAME[/SUBDIR]@REV
        rest, _, revision = rest.partition("@")
        parts = rest.split("/")
    if revision is not None and not revision:
        raise ValueError(f"{uri!r}: empty revision after '@' ({_USAGE})")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{uri!r}: missing OWNER/NAME ({_USAGE})")
    owner, name, *sub = parts
    for label, value in (("owner", owner), ("dataset name", name)):
        if not _NAME.match(value) or ".." in value:
            raise ValueError(f"{uri!r}: {label} {value!r} is not a valid Hub name")
    sub = [s for s in sub if s]
    if any(s in (".", "..") for s in sub):
        raise ValueError(f"{uri!r}: SUBDIR may not contain '.' or '..'")
    return HubDatasetRef(repo_id=f"{owner}/{name}", subdir="/".join(sub) or None, revision=revision)


def _local_name(ref: HubDatasetRef) -> str:
    """A folder name unique per repo and revision, safe on any filesystem."""
    name = ref.repo_id.replace("/", "--")
    if ref.revision:
        name += "--" + re.sub(r"[^A-Za-z0-9._-]", "_", ref.revision)
    return name


def _default_download(**kwargs) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(**kwargs)


def _explain(ref: HubDatasetRef, exc: Exception) -> str:
    """A plain sentence about why the download failed and what to do."""
    from huggingface_hub import errors

    where = f"Hugging Face dataset {ref.repo_id!r}" + (
        f" at revision {ref.revision!r}" if ref.revision else ""
    )
    if isinstance(exc, errors.GatedRepoError):
        why = ("is gated: accept its terms on huggingface.co and set HF_TOKEN to a token of "
               "that account")
    elif isinstance(exc, errors.RepositoryNotFoundError):
        why = ("was not found: check the name, and for a private dataset set HF_TOKEN to a "
               "token that can read it")
    elif isinstance(exc, errors.RevisionNotFoundError):
        why = "has no such revision: check the branch, tag or commit after '@'"
    elif isinstance(
        exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, ConnectionError)
    ):
        why = ("could not be reached: check the network (and that HF_HUB_OFFLINE is not set), "
               "then try again")
    else:
        why = (
            f"could not be downloaded ({type(exc).__name__}: {exc}): check the name, "
            "HF_TOKEN for a private dataset, and the network"
        )
    return f"{where} {why}."


def resolve_image_source(source: str, cache_dir: Path, download: Callable | None = None) -> str:
    """A local image folder for source: hf:// sources are downloaded, others returned as they are.

    download defaults to huggingface_hub.snapshot_download and is called with
    keyword arguments only (repo_id, repo_type, revision, local_dir, allow_patterns).
    """
    ref = parse_hf_uri(source)
    if ref is None:
        return source
    local_dir = Path(cache_dir) / _local_name(ref)
    patterns = [f"{ref.subdir}/**"] if ref.subdir else IMAGE_PATTERNS
    try:
        (download or _default_download)(
            repo_id=ref.repo_id,
            repo_type="dataset",
            revision=ref.revision,
            local_dir=str(local_dir),
            allow_patterns=patterns,
        )
    except Exception as exc:
        raise RuntimeError(_explain(ref, exc)) from exc
    folder = local_dir / ref.subdir if ref.subdir else local_dir
    if not folder.is_dir():
        what = f"has no folder {ref.subdir!r}" if ref.subdir else "has no images"
        raise RuntimeError(
            f"Hugging Face dataset {ref.repo_id!r} {what}: check the path in {source!r}."
        )
    return str(folder)
