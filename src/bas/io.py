"""File input and output: atomic writes, JSON without NaN, and the one image reader.

Writes: every file is written to a temporary sibling, flushed and renamed, so a reader sees either
the previous complete file or the new complete file, never a partial one, even when the writer is
killed mid-write. A Ctrl-C during a write removes the temporary file, leaves the previous file as
it was and raises ``KeyboardInterrupt`` (whatever error the writing library made of it). The
temporary names are ``.<name>.bas-<pid>-<random>.tmp[<suffix>]``; the first atomic write of a
process into a folder removes the ones left there by processes that no longer run (a killed save).
Files get the mode ``open()`` would give them (``0o666`` less the umask).

Images: :func:`read_image` is how every part of the package reads an image file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bas.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

# ----------------------------------------------------------------------------- atomic writes

_TEMP_NAME = re.compile(r"^\..+\.bas-(\d+)-[A-Za-z0-9_]+\.tmp")
_cleaned_folders: set[Path] = set()
_cleaned_lock = threading.Lock()


def _file_mode() -> int:
    """``0o666`` less the process's umask (what ``open()`` gives a new file; mkstemp gives 0600)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it elsewhere
    os.umask(mask)
    return 0o666 & ~mask


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_orphan_temp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files of atomic writes into ``folder`` whose process no longer runs;
    returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _pid_running(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _clean_once(folder: Path) -> None:
    key = folder.resolve()
    with _cleaned_lock:
        if key in _cleaned_folders:
            return
        _cleaned_folders.add(key)
    remove_orphan_temp_files(folder)


class _NoteInterrupt:
    """Context manager that notes whether SIGINT arrived while it was active (main thread with
    Python's default handler only). The signal still raises ``KeyboardInterrupt`` at once; the note
    lets :func:`_atomic` re-raise it as such when the writing library turned it into another error
    (torch's zip writer raises a ``RuntimeError``)."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        signal.default_int_handler(signum, frame)

    def __enter__(self) -> _NoteInterrupt:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def _atomic(path: Path, suffix: str) -> Iterator[str]:
    """The shared part of :func:`atomic_open` and :func:`atomic_path`: yields the temporary name;
    renames it over ``path`` when the block succeeds, removes it otherwise."""
    tmp = None
    with _NoteInterrupt() as note:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _clean_once(path.parent)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{path.name}.bas-{os.getpid()}-", suffix=".tmp" + suffix, dir=path.parent
            )
            os.close(fd)
            os.chmod(tmp, _file_mode())
            yield tmp
            os.replace(tmp, path)
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
                exc.filename = str(path)  # name the file the user asked for, not the temporary one
            if note.interrupted and not isinstance(exc, KeyboardInterrupt):
                raise KeyboardInterrupt from None  # whatever the writer made of the interrupt
            raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file renamed over it on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if "r" in mode or "a" in mode:
        raise ValueError("atomic_open only supports write modes")
    with _atomic(Path(path), "") as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it is renamed to ``path`` if the block succeeds.

    For libraries that want a file name rather than a file object (safetensors, matplotlib).
    """
    path = Path(path)
    with _atomic(path, path.suffix) as tmp:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())


# ----------------------------------------------------------------------------- JSON


def to_json(data: Any, *, indent: int | None = None) -> str:
    """``data`` as strict JSON text (no ``NaN`` / ``Infinity``).

    Numpy values, tuples and paths are converted. A non-finite number becomes ``null``; when
    ``data`` is a dict, the dotted keys of those values are listed under ``"nonfinite"``
    (``{"loss": nan, "top5": [1, inf]}`` -> ``{"loss": null, "top5": [1, null],
    "nonfinite": ["loss", "top5.1"]}``). Every JSON and JSON-lines file is written with it.
    """
    bad: list[str] = []
    plain = _plain(data, "", bad)
    if bad and isinstance(plain, dict):
        plain["nonfinite"] = bad
    return json.dumps(plain, indent=indent, allow_nan=False)


def path_inside(folder: str | Path, name: str, suffix: str = "") -> Path:
    """``<folder>/<name><suffix>`` for a relative ``name`` (an image id, a relative input path).

    Raises :class:`bas.errors.DataError` when ``name`` is empty, absolute or holds a ``..`` part,
    or when a symbolic link already in ``folder`` would lead the file outside it, so that an
    output named after it cannot land outside ``folder``.
    """
    from pathlib import PurePosixPath, PureWindowsPath

    from bas.errors import DataError

    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not name or PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or ".." in parts:
        raise DataError(
            f"name {name!r} must be a relative path without '..' to stay inside the folder", folder
        )
    from bas.data.paths import check_inside

    path = Path(folder) / f"{name}{suffix}"
    check_inside(folder, path, file=folder, what=name, root_name="the output folder")
    return path


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON (see :func:`to_json`), atomically."""
    write_text(path, to_json(data, indent=2) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _plain(value: Any, key: str, bad: list[str]) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{key}.{k}" if key else str(k), bad) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}.{i}" if key else str(i), bad) for i, v in enumerate(value)]
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        bad.append(key)
        return None
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return value
    if hasattr(value, "tolist") and type(value).__module__.split(".")[0] in ("numpy", "torch"):
        return _plain(value.tolist(), key, bad)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json_default(obj: Any) -> Any:
    """``default=`` for :func:`json.dumps`: numpy values and paths as plain JSON values."""
    return _plain(obj, "", [])


# ----------------------------------------------------------------------------- images

_strict_lock = threading.Lock()
_strict_depth = 0
_strict_saved = False

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


@contextlib.contextmanager
def _strictdecoded_image() -> Iterator[None]:
    """``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` off while any thread decodes through here, so a
    truncated file is an error even where something else switched the flag on."""
    global _strict_depth, _strict_saved
    from PIL import ImageFile

    with _strict_lock:
        if _strict_depth == 0:
            _strict_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_depth += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_depth -= 1
            if _strict_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved


def read_image(path: str | Path, mode: str = "RGB", *, what: str = "image", exif: bool = True) -> Image.Image:
    """Read an image file, fully decoded, as a PIL image of ``mode`` ("RGB" or "L").

    The pixels are the ones a photo viewer shows: the EXIF orientation is applied (``exif=True``,
    for user photos; datasets read with ``exif=False``, since annotation boxes are in the stored
    pixel frame, as the reference code reads them); 16-bit grey is
    scaled to 8 bits (65535 -> 255), not clipped; transparent pixels (alpha, palette or colour-key
    transparency) are composited on white; CMYK, palette, 1-bit and grey images are converted
    with PIL's conversions. Decoding is strict: a truncated file is an error whatever
    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` says.

    Raises:
        DataError: naming the file, when it is missing, unreadable, truncated, in a colour mode
        that has no RGB conversion, or larger than PIL's decompression-bomb limit
        (``PIL.Image.MAX_IMAGE_PIXELS``). ``what`` names the file's role in the message.
    """
    from PIL import ImageOps

    if mode not in ("RGB", "L"):
        raise ValueError(f"read_image reads 'RGB' or 'L' images, not {mode!r}")
    with decoded_image(path, what) as im:
        oriented = ImageOps.exif_transpose(im) if exif else im
    try:
        return _convert(oriented, mode)
    except ValueError as exc:
        raise DataError(f"cannot convert {what} of colour mode {oriented.mode} ({exc})", path) from None


@contextlib.contextmanager
def decoded_image(path: str | Path, what: str = "image") -> Iterator[Image.Image]:
    """The image file at ``path`` open and fully decoded, strictly (see :func:`read_image`); every
    failure (missing, truncated, a decompression bomb, not an image) is a DataError naming it."""
    from PIL import Image

    try:
        with _strictdecoded_image(), Image.open(path) as im:
            im.load()
            yield im
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise DataError(f"{what} path is a folder", path) from None
    except PermissionError:
        raise DataError(f"{what} cannot be opened: permission denied", path) from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{what} refused as a possible decompression bomb: {exc}", path) from None
    except Exception as exc:  # any failure to decode is a property of the file
        raise DataError(f"cannot read {what} ({_reason(exc)})", path) from None


def _reason(exc: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image file"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


def _convert(im: Image.Image, mode: str) -> Image.Image:
    import numpy as np
    from PIL import Image

    if im.mode in _SIXTEEN_BIT:
        wide = np.asarray(im).astype(np.int64).clip(0, 65535)
        im = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    if im.mode in _WITH_ALPHA or "transparency" in im.info:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return im if im.mode == mode else im.convert(mode)


def decode_images(
    paths: Sequence[str | Path],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    exif: bool = True,
) -> list[tuple[int, int] | DataError]:
    """Decode every image fully with :func:`read_image`, in a pool of ``workers`` threads
    (default: the CPU count, at most 8); returns, in order, each image's ``(W, H)`` or its
    :class:`DataError`. ``progress(n)`` is called with the number done so far; ``exif`` as in
    :func:`read_image`."""

    def size(path: str | Path) -> tuple[int, int] | DataError:
        try:
            return read_image(path, exif=exif).size
        except DataError as exc:
            return exc

    workers = workers or min(8, os.cpu_count() or 1)
    results: list[tuple[int, int] | DataError] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(size, paths):
            results.append(result)
            if progress is not None:
                progress(len(results))
    return results


def publish_directory(root: Path, write: Callable[[Path], None], finished: Callable[[], bool]) -> None:
    """Write a whole directory atomically: ``write(tmp)`` fills a temporary sibling of ``root``, which
    is then renamed into place (an empty ``root`` is replaced by the rename itself).

    If ``root`` exists by then, ``finished()`` decides: True (another process completed the same
    directory meanwhile) keeps it; False replaces it, putting the old directory back if the swap
    fails. The caller checks beforehand that replacing ``root`` is allowed.
    """
    import shutil

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, root)
            return
        except OSError:
            if not root.exists():
                raise
        if finished():
            return
        trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.rename(root, trash / "old")
        try:
            os.rename(tmp, root)
        except BaseException:
            os.rename(trash / "old", root)
            raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
