"""Loading images as a person sees them, and the offline demo picture with known ground truth.

Whatever the file holds (palette, 16-bit grey, CMYK, transparency, an EXIF rotation, an animation),
:func:`load_image` returns 8-bit RGB pixels oriented as an image viewer would show them, so the
heatmap lines up with what the reader looks at. Anything that is not a usable image stops with an
:class:`ImageError` that names the file and the problem.
"""

from __future__ import annotations

import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow's decompression-bomb guard stays on; above this many pixels we also downscale on load so
# that a heatmap overlay of a giant scan never needs gigabytes.
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason."""


def _describe_non_image(path: Path, head: bytes) -> str:
    stripped = head.lstrip().lower()
    if not head:
        return "it is empty (0 bytes)"
    if stripped.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "it is an HTML/XML page, not an image (a failed download saved under an image name?)"
    try:
        head.decode("utf-8")
        return "it is a text file, not an image"
    except UnicodeDecodeError:
        return "its format is not one Pillow can read"


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` as an upright 8-bit RGB image, or raise :class:`ImageError` saying why not."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except PermissionError:
        raise ImageError(f"{path}: cannot be opened: permission denied") from None
    except OSError:  # missing, or a link to nothing, or a loop of links
        if path.is_symlink():
            raise ImageError(f"{path}: is a broken or looping symbolic link") from None
        raise ImageError(f"{path}: no such file") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{path}: is a directory, not an image file")
    if not stat.S_ISREG(mode):  # opening a FIFO would wait forever for a writer
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise ImageError(f"{path}: is {kind}, not a regular file")
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; between the two we
            # decode and shrink, and say so in our own words below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # the context manager closes the file even when decoding fails half-way
            with Image.open(path) as opened:
                n_frames = getattr(opened, "n_frames", 1)
                original = opened.size
                if original[0] * original[1] > MAX_PIXELS:
                    # draft() lets JPEG decode at a reduced scale; others are decoded, then shrunk
                    scale = (MAX_PIXELS / (original[0] * original[1])) ** 0.5
                    opened.draft("RGB", (int(original[0] * scale), int(original[1] * scale)))
                opened.load()
                turn = _orientation(opened)  # read before shrinking: a new image may lose the tags
                image = to_rgb(_shrink(opened))
                if turn is not None:
                    image = image.transpose(turn)
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"{path}: refused, too many pixels for a safe decode ({error}); "
            f"downscale it below {MAX_PIXELS:,} pixels first"
        ) from None
    except UnidentifiedImageError:
        with open(path, "rb") as handle:
            head = handle.read(512)
        raise ImageError(f"{path}: cannot be read as an image: {_describe_non_image(path, head)}") from None
    except PermissionError:
        raise ImageError(f"{path}: cannot be opened: permission denied") from None
    except MemoryError:
        raise ImageError(f"{path}: too large to decode in the memory available") from None
    except Exception as error:
        # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError, but also IndexError
        # (truncated animated GIF), TypeError (truncated multi-page TIFF) and others on bad input.
        raise ImageError(f"{path}: the image data is damaged or truncated ({type(error).__name__}: {error})") from None
    if n_frames > 1:
        warnings.warn(f"{path}: has {n_frames} frames; using the first one", stacklevel=2)
    if image.size != original and image.size != original[::-1]:
        warnings.warn(
            f"{path}: {original[0]}x{original[1]} pixels; downscaled to {image.width}x{image.height}", stacklevel=2
        )
    return image


def _shrink(image: Image.Image) -> Image.Image:
    """Resize a decoded picture above :data:`MAX_PIXELS` to just below it, before any conversion.

    Resizing in the file's own mode costs one smaller copy, where converting a 16-bit or palette
    picture to RGB first would cost several full-size ones; ``reducing_gap`` box-averages by a whole
    factor first, which is fast and as sharp. 1-bit pictures are averaged as grey, palette ones as
    RGB (averaging palette indices would be meaningless).
    """
    pixels = image.width * image.height
    if pixels <= MAX_PIXELS:
        return image
    scale = (MAX_PIXELS / pixels) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    if image.mode.startswith("I;16"):  # resized as 16-bit (Pillow cannot box-reduce it), white stays 65535
        return image.resize(size, Image.Resampling.BILINEAR)
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("P", "PA"):
        image = to_rgb(image)
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


# EXIF orientation -> the transpose that shows the picture upright (the EXIF 2.3 definitions)
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The transpose that shows the picture upright, from its EXIF (or XMP) orientation.

    Only the orientation tag is read, so a damaged tag elsewhere in the EXIF block (one stored with
    the wrong type makes ``ImageOps.exif_transpose`` fail) does not cost the picture its rotation.
    """
    try:
        value = image.getexif().get(0x0112)
        return _ORIENTATIONS.get(value) if isinstance(value, int) else None
    except Exception:
        return None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB the way a viewer would show it.

    Transparency is composited on white (dropping the alpha channel would reveal whatever colour
    the transparent pixels happen to store), 16/32-bit grey is rescaled rather than clipped.
    """
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.array(image, dtype=np.float32)  # a writable copy, exact for 16-bit data
        np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        values *= np.float32(255.0 / _white_level(image.mode, values))
        values += np.float32(0.5)
        grey = np.clip(values, 0, 255, out=values).astype(np.uint8)
        del values
        if isinstance(image.info.get("transparency"), int):  # a PNG's one transparent grey level
            grey[np.asarray(image) == image.info["transparency"]] = 255
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("RGB", "L", "1") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # no copy of a 40 MP photo for nothing


def _white_level(mode: str, values: np.ndarray) -> float:
    """The value shown as white: the format's full scale where one is known, else the brightest pixel.

    16-bit data is 0..65535; float data in [0, 1] is a normalised picture; 32-bit integers whose values
    fit 8 or 16 bits are taken at that depth, so a flat image keeps its grey level instead of turning
    white. Anything else (negative values, other ranges) is stretched to its own maximum.
    """
    if mode.startswith("I;16"):
        return 65535.0
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    if mode == "F" and low >= 0.0 and high <= 1.0:
        return 1.0
    if mode == "I" and low >= 0.0:
        if high <= 255.0:
            return 255.0
        if high <= 65535.0:
            return 65535.0
    return max(high, 1e-12)


@dataclass(frozen=True)
class Tile:
    """One quadrant of the demo grid: what photo it holds and which ImageNet class that is."""

    name: str
    class_index: int
    box: tuple[int, int, int, int]  # left, top, right, bottom in grid pixels

    @property
    def label(self) -> str:
        """What the tile shows, the part of the name in brackets: ``"cat"`` for ``"chelsea (cat)"``."""
        return self.name.partition("(")[2].rstrip(")") or self.name


def _square(array: np.ndarray) -> Image.Image:
    """Centre square crop of an HxWx3 uint8 array, as a Pillow image."""
    image = Image.fromarray(np.ascontiguousarray(array[..., :3]))
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def demo_grid(tile: int = 256) -> tuple[Image.Image, list[Tile]]:
    """A 2x2 picture of four objects whose ImageNet classes we know, from pip-installed photos.

    Top left scikit-image's ``chelsea`` (Egyptian cat 285), top right ``coffee`` (espresso 967),
    bottom left matplotlib's ``grace_hopper.jpg`` (military uniform 652), bottom right the left
    view of ``stereo_motorcycle`` (moped 665). Each tile is the photo's centre square.
    """
    import matplotlib.cbook
    from skimage import data as skdata

    from .classes import EGYPTIAN_CAT, ESPRESSO, MILITARY_UNIFORM, MOPED

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as photo:
        hopper = np.asarray(photo.convert("RGB"))
    photos = [
        ("chelsea (cat)", EGYPTIAN_CAT, skdata.chelsea()),
        ("coffee (espresso)", ESPRESSO, skdata.coffee()),
        ("grace_hopper (military uniform)", MILITARY_UNIFORM, hopper),
        ("stereo_motorcycle (moped)", MOPED, skdata.stereo_motorcycle()[0]),
    ]
    grid = Image.new("RGB", (2 * tile, 2 * tile))
    tiles = []
    for position, (name, index, pixels) in enumerate(photos):
        left, top = (position % 2) * tile, (position // 2) * tile
        grid.paste(_square(pixels).resize((tile, tile), Image.Resampling.BICUBIC), (left, top))
        tiles.append(Tile(name, index, (left, top, left + tile, top + tile)))
    return grid, tiles


def restore_aspect(image: Image.Image, original_size: tuple[int, int], pixels: int | None = None) -> Image.Image:
    """Undo a stretch to another aspect ratio: resize to ``original_size``'s shape, keeping ``pixels``.

    The mirrored validation photos were squashed from (width, height) to 227x227, so a 500x375 dog
    looks a third narrower than it is; a model's Resize + CenterCrop expects the real shape. The
    result has the original aspect ratio and about ``pixels`` pixels (default: as many as the input
    has, so no detail is invented by upsampling); pass ``original_size[0] * original_size[1]`` to
    get the original size itself.
    """
    width, height = original_size
    if width < 1 or height < 1:
        raise ValueError(f"original size must be positive, not {original_size}")
    scale = ((pixels if pixels is not None else image.width * image.height) / (width * height)) ** 0.5
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
