"""Compile generated C on demand into a cache, load it with cffi; import generated numpy code.

Cache layout (root: ``$BNMFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/bnmft``, else
``~/.cache/bnmft``)::

    c/<module>-<key>.so      the library, moved into place with os.replace (never partial)
    c/<module>-<key>.json    manifest: key, compiler, flags, sha256 of the .so bytes
    c/<module>-<key>.lock    fcntl.flock lock: one process builds a given key at a time
    py/<module>-<hash>.py    generated numpy modules, imported by path

``key`` is the sha256 of the exact sources, the compiler command and its version line, and
the flags, so a library built from other sources or with other flags is never picked up. A
library is loaded only if its manifest exists (written after the library) and records the
sha256 of the library's current bytes; otherwise (crash between the two writes, a truncated or
overwritten file) it is rebuilt. Temporary files and build directories have their own names
and are never loaded. Files are replaced, never rewritten in place, so a process that has a
library mapped is not disturbed by a rebuild (rewriting a mapped file in place can SIGBUS).
POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from bnmft.paths import cache_dir

from .errors import CodegenError
from .files import atomic_write_bytes, atomic_write_text
from .prepare import check_identifier

#: Flags of every build: the documented command plus nothing that changes IEEE semantics
#: (no -ffast-math: it would break inf results and the 1e-13 accuracy).
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-shared", "-fPIC")
LDLIBS = ("-lm",)
_COMPILE_TIMEOUT_S = 300
#: One kernel per quantity, ``void NAME_QTY(size_t n, const double *B, double *out);`` or,
#: for a family module, with the family arguments ``const double *slope, ...`` after ``B``
#: (filled in: the leading ``const double *`` parameters of the fused prototype).
_PROTOTYPE = r"^void ([A-Za-z_][A-Za-z0-9_]*)\(size_t n, const double \*B{}, double \*out\);$"
#: The fused kernel ``void NAME_all(size_t n, const double *B, double *q1, ...);`` (NAME
#: filled in), and one of its output parameters.
_FUSED_PROTOTYPE = r"^void {}_all\(size_t n, const double \*B,([^;()]*)\);$"
_OUTPUT = re.compile(r"double \*([A-Za-z_][A-Za-z0-9_]*)\Z")
#: Parameterised kernels ``void NAME_QTY_p(size_t n, const double *B, const double *P1, ...,
#: double *out);`` and ``void NAME_all_p(size_t n, const double *B, const double *P1, ...,
#: double *Q1, ...);``: each parameter pointer is NULL (the module's default value) or points
#: to ``n`` values, one per element, as ``B`` does.
_PARAM_PROTOTYPE = re.compile(
    r"^void ([A-Za-z_][A-Za-z0-9_]*)_p\(size_t n,\s*const double \*B,([^;()]*)\);$", re.M
)
_PARAM = re.compile(r"const double \*([A-Za-z_][A-Za-z0-9_]*)\Z")


def find_compiler() -> list[str]:
    """The C compiler command: ``$CC`` (may include arguments), else cc, gcc or clang."""
    env = os.environ.get("CC")
    if env:
        cmd = shlex.split(env)
        if cmd and shutil.which(cmd[0]):
            return [shutil.which(cmd[0]), *cmd[1:]]
        raise CodegenError(f"C compiler CC={env!r} not found")
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise CodegenError("no C compiler found (install cc/gcc/clang or set CC)")


@functools.cache
def _compiler_version(cmd: tuple[str, ...]) -> str:
    """First line of ``cc --version`` (part of the cache key: a new compiler rebuilds)."""
    try:
        res = subprocess.run(
            [*cmd, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as err:
        raise CodegenError(f"cannot run C compiler {cmd[0]}: {err}") from None
    lines = (res.stdout or res.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def _module_name(sources: Mapping[str, str], module: str | None, suffix: str) -> str:
    """``module``, or the stem of the one ``*suffix`` file in ``sources``; checked."""
    if module is None:
        stems = sorted(name[: -len(suffix)] for name in sources if name.endswith(suffix))
        if len(stems) != 1:
            raise CodegenError(f"give module=: sources hold no or several {suffix} files")
        module = stems[0]
    return check_identifier(module, "module name")


def _source(sources: Mapping[str, str], filename: str) -> str:
    try:
        return sources[filename]
    except KeyError:
        raise CodegenError(f"sources lack {filename}") from None


def _c_files(sources: Mapping[str, str], module: str | None) -> tuple[str, str, str]:
    module = _module_name(sources, module, ".c")
    return module, _source(sources, f"{module}.c"), _source(sources, f"{module}.h")


def _key(module: str, c_text: str, h_text: str, compiler: list[str]) -> str:
    h = hashlib.sha256()
    for part in (module, c_text, h_text, "\0".join(compiler), _compiler_version(tuple(compiler))):
        h.update(part.encode("utf-8"))
        h.update(b"\0\0")
    h.update("\0".join(CFLAGS + LDLIBS).encode())
    return h.hexdigest()


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_valid(lib: Path, manifest: Path, key: str) -> bool:
    """True if ``lib`` is the complete library for ``key`` (manifest present and matching)."""
    try:
        meta = json.loads(manifest.read_text("utf-8"))
        return meta.get("key") == key and meta.get("so_sha256") == _sha256_file(lib)
    except (OSError, ValueError):
        return False


def _compile(compiler: list[str], module: str, files: dict[str, str], build: Path) -> Path:
    """Compile ``files`` in ``build`` into ``lib<module>.so``; one-line CodegenError on failure."""
    for name, text in files.items():
        (build / name).write_text(text, encoding="utf-8")
    target = build / f"lib{module}.so"
    cmd = [*compiler, *CFLAGS, f"{module}.c", "-o", target.name, *LDLIBS]
    try:
        res = subprocess.run(
            cmd, cwd=build, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CodegenError(f"C compiler failed to run for {module}: {err}") from None
    if res.returncode != 0 or not target.exists():
        lines = res.stderr.splitlines()
        first = next((ln for ln in lines if "error" in ln), lines[0] if lines else "")
        raise CodegenError(f"C compilation of {module} failed ({res.returncode}): {first.strip()}")
    return target


def build_c(sources: Mapping[str, str], module: str | None = None) -> Path:
    """Return the path of the compiled library for these sources, building it if needed."""
    module, c_text, h_text = _c_files(sources, module)
    compiler = find_compiler()
    key = _key(module, c_text, h_text, compiler)
    folder = cache_dir() / "c"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{module}-{key[:32]}"
    lib, manifest = folder / f"{stem}.so", folder / f"{stem}.json"
    if _is_valid(lib, manifest, key):
        return lib
    with open(folder / f"{stem}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        if _is_valid(lib, manifest, key):  # built by another process while we waited
            return lib
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
        try:
            files = {f"{module}.c": c_text, f"{module}.h": h_text}
            built = _compile(compiler, module, files, build)
            digest = _sha256_file(built)
            os.replace(built, lib)
            meta = {
                "key": key,
                "module": module,
                "compiler": compiler,
                "compiler_version": _compiler_version(tuple(compiler)),
                "flags": list(CFLAGS + LDLIBS),
                "so_sha256": digest,
            }
            atomic_write_text(manifest, json.dumps(meta, indent=1, sort_keys=True) + "\n")
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return lib


class CModule:
    """A loaded generated C library: one attribute per quantity, ``f(B, **params) ->
    ndarray``, the fused ``all(B, **params) -> {quantity: ndarray}``, plus ``module``,
    ``path``, ``names`` and ``params`` (the parameters the kernels accept as arrays broadcast
    against ``B``; empty for a module without parameterised kernels). Quantities cannot take
    those names."""

    RESERVED = frozenset({"module", "path", "names", "params", "arguments", "all"})

    def __init__(
        self, module: str, path: Path, functions: dict[str, Callable], fused: Callable,
        params: tuple[str, ...] = (), arguments: tuple[str, ...] = (),
    ) -> None:
        self.module = module
        self.path = path
        self.names = tuple(functions)
        self.params = tuple(params)
        self.arguments = tuple(arguments)
        for name, fn in functions.items():
            setattr(self, name, fn)
        self.all = fused

    def __repr__(self) -> str:
        return f"<CModule {self.module} from {self.path} ({', '.join(self.names)})>"


def _as_input(B) -> np.ndarray:
    """``B`` as a C-contiguous float64 array of its own shape (0-d kept)."""
    arr = np.asarray(B, dtype=np.float64)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr).reshape(arr.shape)  # keeps 0-d shapes
    return arr


def _inputs(symbol: str, B, params: dict, accepted: tuple[str, ...], args=()):
    """``(B, [parameter arrays or None in accepted order])``, all C-contiguous float64 of the
    broadcast shape of ``B``, the arrays ``args`` (the family arguments, which then lead the
    list) and the given parameters (``None`` values count as not given)."""
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        have = ", ".join(accepted) or "none"
        raise TypeError(f"{symbol} has no parameter {unknown[0]!r} (parameters: {have})")
    given = [name for name in accepted if params.get(name) is not None]
    if not given and not args:
        return _as_input(B), None
    arrays = [_as_input(np.array(a)) for a in np.broadcast_arrays(
        np.asarray(B, dtype=np.float64),
        *(np.asarray(a, dtype=np.float64) for a in args),
        *(np.asarray(params[name], dtype=np.float64) for name in given),
    )]
    lead, arrays = arrays[: 1 + len(args)], dict(zip(given, arrays[1 + len(args):]))
    return lead[0], [*lead[1:], *(arrays.get(name) for name in accepted)]


def _arguments(symbol: str, args: tuple, kw: dict, names: tuple[str, ...]) -> tuple:
    """The family arguments ``names`` of a call, positional or by keyword (removed from
    ``kw``); TypeError if one is missing or given twice."""
    if len(args) > len(names):
        raise TypeError(f"{symbol} takes B and {len(names)} arguments ({', '.join(names)})")
    values = list(args)
    for name in names[len(args):]:
        if name not in kw:
            raise TypeError(f"{symbol} needs the argument {name!r} after B")
        values.append(kw.pop(name))
    clash = [name for name in names[: len(args)] if name in kw]
    if clash:
        raise TypeError(f"{symbol} got {clash[0]!r} twice")
    return tuple(values)


def _pointers(ffi, arrays) -> list:
    return [ffi.NULL if a is None else ffi.from_buffer("double[]", a) for a in arrays]


def _wrap(ffi, lib, symbol: str, name: str, params: tuple[str, ...] = (),
          arguments: tuple[str, ...] = ()) -> Callable:
    kernel = getattr(lib, symbol)
    kernel_p = getattr(lib, f"{symbol}_p") if params else None
    k = len(arguments)

    def call(B, *args, **kw) -> np.ndarray:
        args = _arguments(symbol, args, kw, arguments)
        arr, given = _inputs(symbol, B, kw, params, args)
        out = np.empty(arr.shape, dtype=np.float64)
        if arr.size:
            b, o = ffi.from_buffer("double[]", arr), ffi.from_buffer("double[]", out)
            if given is None:
                kernel(arr.size, b, o)
            elif all(g is None for g in given[k:]):
                kernel(arr.size, b, *_pointers(ffi, given[:k]), o)
            else:
                kernel_p(arr.size, b, *_pointers(ffi, given), o)
        return out

    call.__name__ = call.__qualname__ = name
    extra = "".join(f", {p}" for p in arguments) + "".join(f", {p}=None" for p in params)
    call.__doc__ = (
        f"{name}(B{extra}): elementwise C kernel {symbol}"
        + (f" ({symbol}_p with the parameters, broadcast against B; None = the module's"
           " default)" if params else "")
        + "; returns float64 of the broadcast shape."
    )
    call._lib = lib  # keep the library loaded as long as a callable exists
    return call


def _output_array(name: str, array, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` if the fused kernel can write ``name`` into it in place."""
    ok = (
        isinstance(array, np.ndarray)
        and array.dtype == np.float64
        and array.shape == shape
        and array.flags.c_contiguous
        and array.flags.writeable
    )
    if not ok:
        raise CodegenError(
            f"out[{name!r}] must be a writeable C-contiguous float64 array of shape {shape}"
        )
    return array


def _wrap_fused(ffi, lib, symbol: str, outputs: tuple[str, ...],
                params: tuple[str, ...] = (), arguments: tuple[str, ...] = ()) -> Callable:
    kernel = getattr(lib, symbol)
    kernel_p = getattr(lib, f"{symbol}_p") if params else None
    k = len(arguments)

    def fused(B, *args, names=None, out=None, **kw) -> dict[str, np.ndarray]:
        args = _arguments(symbol, args, kw, arguments)
        arr, given_params = _inputs(symbol, B, kw, params, args)
        given = dict(out or {})
        if names is None:
            wanted = set(given or outputs)
        else:
            wanted = {names} if isinstance(names, str) else set(names)
            wanted |= set(given)
        unknown = sorted(wanted - set(outputs))
        if unknown:
            raise CodegenError(f"{symbol} has no output {unknown[0]!r}")
        # New outputs are the rows of one block: one allocation, fewer page faults.
        block = np.empty((len(wanted - set(given)), *arr.shape), dtype=np.float64)
        fresh = (block[j, ...] for j in range(len(block)))  # arrays, 0-d ones included
        result = {
            name: _output_array(name, given[name], arr.shape) if name in given else next(fresh)
            for name in outputs
            if name in wanted
        }
        if arr.size:
            pointers = [
                ffi.from_buffer("double[]", result[name]) if name in result else ffi.NULL
                for name in outputs
            ]
            b = ffi.from_buffer("double[]", arr)
            if given_params is None:
                kernel(arr.size, b, *pointers)
            elif all(g is None for g in given_params[k:]):
                kernel(arr.size, b, *_pointers(ffi, given_params[:k]), *pointers)
            else:
                kernel_p(arr.size, b, *_pointers(ffi, given_params), *pointers)
        return result

    fused.__name__ = fused.__qualname__ = "all"
    extra = "".join(f", {p}=None" for p in params)
    lead = "".join(f", {p}" for p in arguments)
    fused.__doc__ = (
        f"all(B{lead}, names=None, out=None{extra}): the quantities in names (default: all, or"
        f" those of out) at B in one pass of the fused C kernel {symbol}, as {{quantity: float64"
        " array of the broadcast shape} in module order (new arrays are rows of one block);"
        " out maps quantities to arrays to write in place"
        + ("; parameters broadcast against B, None = the module's default." if params else ".")
    )
    fused._lib = lib  # keep the library loaded as long as the callable exists
    return fused


def _split_arguments(text: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``(parameters, outputs)`` of ``const double *P1, ..., double *Q1, ...``."""
    params: list[str] = []
    outputs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        m = _PARAM.match(item)
        if m and not outputs:
            params.append(m.group(1))
            continue
        m = _OUTPUT.match(item)
        if not m:
            return None
        outputs.append(m.group(1))
    return tuple(params), tuple(outputs)


def _fused_outputs(h_text: str, module: str
                   ) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """``(symbol, output names, family arguments)`` of the fused prototype in the header, if
    it has one."""
    found = re.findall(_FUSED_PROTOTYPE.format(re.escape(module)), h_text, re.M)
    if len(found) != 1:
        return None
    split = _split_arguments(found[0])
    if split is None or not split[1]:
        return None
    return f"{module}_all", split[1], split[0]


def _parameterised(h_text: str, module: str, names: tuple[str, ...], outputs: tuple[str, ...],
                   arguments: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The parameters of the ``_p`` kernels in the header (after the family ``arguments``,
    which they take first): every kernel and the fused one must take the same list, or there
    must be none."""
    found = {}
    for symbol, args in _PARAM_PROTOTYPE.findall(h_text):
        split = _split_arguments(args)
        if split is None or not split[0]:
            raise CodegenError(f"{module}.h: cannot read the prototype of {symbol}_p")
        found[symbol] = split
    if not found:
        return ()
    params = next(iter(found.values()))[0]
    expected = {f"{module}_{name}": (params, ("out",)) for name in names}
    expected[f"{module}_all"] = (params, outputs)
    if found != expected or params[: len(arguments)] != arguments:
        raise CodegenError(
            f"{module}.h: the _p kernels must be one per quantity and {module}_all_p, all with"
            " the same parameters"
        )
    return params[len(arguments):]


def load_c(sources: Mapping[str, str], module: str | None = None) -> CModule:
    """Compile (or reuse from the cache) and load generated C ``sources``; return a
    :class:`CModule` whose attributes are the quantities as numpy-in/numpy-out callables and
    ``all``, the fused kernel (every quantity in one pass, as a dict). Where the header has
    parameterised kernels (``NAME_QTY_p``, ``NAME_all_p``), the callables take those
    parameters as keyword arrays broadcast against ``B``."""
    import cffi

    module, _, h_text = _c_files(sources, module)
    fused = _fused_outputs(h_text, module)
    arguments = fused[2] if fused is not None else ()
    declared = "".join(f", const double *{a}" for a in arguments)
    symbols = re.findall(_PROTOTYPE.format(re.escape(declared)), h_text, re.M)
    symbols = [s for s in symbols if not (s.endswith("_p") and s[:-2] in symbols)]
    prefix = f"{module}_"
    if not symbols or any(not s.startswith(prefix) for s in symbols):
        raise CodegenError(f"{module}.h has no bnmft kernel prototypes")
    names = tuple(s[len(prefix):] for s in symbols)
    if fused is None or fused[1] != names:
        raise CodegenError(f"{module}.h lacks {module}_all over its kernels, in their order")
    params = _parameterised(h_text, module, names, fused[1], arguments)
    path = build_c(sources, module)
    ffi = cffi.FFI()
    ffi.cdef("\n".join(f"void {s}(size_t n, const double *B{declared}, double *out);"
                       for s in symbols))
    outputs = ", ".join(f"double *{name}" for name in fused[1])
    ffi.cdef(f"void {fused[0]}(size_t n, const double *B{declared}, {outputs});")
    if params:
        inputs = declared + "".join(f", const double *{p}" for p in params)
        ffi.cdef("\n".join(
            f"void {s}_p(size_t n, const double *B{inputs}, double *out);" for s in symbols
        ))
        ffi.cdef(f"void {fused[0]}_p(size_t n, const double *B{inputs}, {outputs});")
    try:
        lib = ffi.dlopen(str(path))
    except OSError as err:
        raise CodegenError(f"cannot load {path}: {err}") from None
    functions = {name: _wrap(ffi, lib, s, name, params, arguments)
                 for s, name in zip(symbols, names)}
    clash = sorted(CModule.RESERVED & set(functions))
    if clash:
        raise CodegenError(f"quantity name {clash[0]!r} clashes with a CModule attribute")
    return CModule(module, path, functions,
                   _wrap_fused(ffi, lib, *fused[:2], params, arguments), params, arguments)


def load_numpy(sources: Mapping[str, str] | str, module: str | None = None):
    """Import a generated numpy module from its text (written to the cache, imported by path).

    ``sources`` is the dict from :func:`~bnmft.codegen.generate` (or the module text itself).
    The text must carry the bnmft generated-file header: only generated code is imported.
    """
    if isinstance(sources, str):
        text = sources
        module = check_identifier(module or "generated", "module name")
    else:
        module = _module_name(sources, module, ".py")
        text = _source(sources, f"{module}.py")
    if not text.startswith("# Generated by bnmft "):
        raise CodegenError(f"{module}.py does not look like a bnmft-generated module")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = cache_dir() / "py" / f"{module}-{digest[:32]}.py"
    if not path.exists() or _sha256_file(path) != digest:
        atomic_write_bytes(path, text.encode("utf-8"))
    name = f"bnmft_generated_{module}_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
