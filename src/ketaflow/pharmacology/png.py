"""A small PNG line chart (median and 5th-95th percentile band) with no plotting dependency:
NumPy draws the pixels, zlib and struct write the file. Used by `ketaflow simulate --plot x.png`;
the .html output (Plotly) is the interactive version."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# 3x5 bitmap font: digits, the capitals the labels need, and a few signs.
_FONT = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
    "A": ("010", "101", "111", "101", "101"),
    "B": ("110", "101", "110", "101", "110"),
    "C": ("011", "100", "100", "100", "011"),
    "D": ("110", "101", "101", "101", "110"),
    "E": ("111", "100", "110", "100", "111"),
    "F": ("111", "100", "110", "100", "100"),
    "G": ("011", "100", "101", "101", "011"),
    "H": ("101", "101", "111", "101", "101"),
    "I": ("111", "010", "010", "010", "111"),
    "J": ("001", "001", "001", "101", "010"),
    "K": ("101", "101", "110", "101", "101"),
    "L": ("100", "100", "100", "100", "111"),
    "M": ("101", "111", "111", "101", "101"),
    "N": ("110", "101", "101", "101", "101"),
    "O": ("010", "101", "101", "101", "010"),
    "P": ("110", "101", "110", "100", "100"),
    "Q": ("010", "101", "101", "110", "011"),
    "R": ("110", "101", "110", "101", "101"),
    "S": ("011", "100", "010", "001", "110"),
    "T": ("111", "010", "010", "010", "010"),
    "U": ("101", "101", "101", "101", "111"),
    "V": ("101", "101", "101", "101", "010"),
    "W": ("101", "101", "111", "111", "101"),
    "X": ("101", "101", "010", "101", "101"),
    "Y": ("101", "101", "010", "010", "010"),
    "Z": ("111", "001", "010", "100", "111"),
    ".": ("000", "000", "000", "000", "010"),
    "/": ("001", "001", "010", "100", "100"),
    "-": ("000", "000", "111", "000", "000"),
    "%": ("101", "001", "010", "100", "101"),
    ",": ("000", "000", "000", "010", "100"),
    "(": ("010", "100", "100", "100", "010"),
    ")": ("010", "001", "001", "001", "010"),
    " ": ("000", "000", "000", "000", "000"),
}
_SCALE = 2  # font pixels per bitmap pixel
WHITE = (255, 255, 255)
BLACK = (30, 30, 30)
GREY = (200, 200, 200)
COLOURS = ((31, 119, 180), (214, 39, 40))
BANDS = ((198, 219, 239), (244, 199, 199))


def _text(img: np.ndarray, x: int, y: int, text: str, colour=BLACK) -> None:
    for ch in text.upper():
        glyph = _FONT.get(ch, _FONT[" "])
        for r, row in enumerate(glyph):
            for c, bit in enumerate(row):
                if bit == "1":
                    y0, x0 = y + r * _SCALE, x + c * _SCALE
                    img[y0 : y0 + _SCALE, x0 : x0 + _SCALE] = colour
        x += 4 * _SCALE


def _line(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour, width: int = 2) -> None:
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:], strict=True):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        px = np.rint(np.linspace(x0, x1, n)).astype(int)
        py = np.rint(np.linspace(y0, y1, n)).astype(int)
        for dx in range(width):
            for dy in range(width):
                ok = (py + dy < img.shape[0]) & (px + dx < img.shape[1])
                img[py[ok] + dy, px[ok] + dx] = colour


def _nice_step(span: float) -> float:
    raw = span / 5.0
    magnitude = 10 ** np.floor(np.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def write_png(
    path: Path,
    hours: np.ndarray,
    series: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],  # (name, p5, p50, p95)
    title: str,
    width: int = 900,
    height: int = 520,
) -> None:
    """Median lines and shaded 5th-95th percentile bands of each series over time."""
    img = np.full((height, width, 3), WHITE, dtype=np.uint8)
    left, right, top, bottom = 70, width - 20, 40, height - 60
    y_max = max(float(np.max(s[3])) for s in series) * 1.05 or 1.0
    x_max = float(hours[-1]) or 1.0

    def px(h: np.ndarray) -> np.ndarray:
        return left + (h / x_max) * (right - left)

    def py(c: np.ndarray) -> np.ndarray:
        return bottom - (c / y_max) * (bottom - top)

    step = _nice_step(y_max)
    for k in range(int(y_max / step) + 1):
        y = round(float(py(np.array(k * step))))
        img[y, left:right] = GREY
        _text(img, 8, y - 5, f"{k * step:g}")
    xstep = _nice_step(x_max)
    for k in range(int(x_max / xstep) + 1):
        x = round(float(px(np.array(k * xstep))))
        img[top:bottom, x] = GREY
        _text(img, x - 4, bottom + 8, f"{k * xstep:g}")
    cols = np.arange(left, right)
    hours_at_col = (cols - left) / (right - left) * x_max
    for idx, (_, p5, _, p95) in enumerate(series):
        lo = py(np.interp(hours_at_col, hours, p5))
        hi = py(np.interp(hours_at_col, hours, p95))
        band = np.array(BANDS[idx % 2], dtype=np.uint16)
        for c, a, b in zip(cols, hi, lo, strict=True):
            # multiply blend, so overlapping bands both stay visible
            cells = img[round(a) : round(b) + 1, c].astype(np.uint16)
            img[round(a) : round(b) + 1, c] = (cells * band // 255).astype(np.uint8)
    for idx, (name, _, p50, _) in enumerate(series):
        _line(img, px(hours), py(p50), COLOURS[idx % 2])
        _text(img, right - 260, top + 6 + 14 * idx, f"- {name} MEDIAN, 5-95%", COLOURS[idx % 2])
    img[top:bottom, left] = BLACK
    img[bottom, left:right] = BLACK
    _text(img, left, 12, title[:100])
    _text(img, (left + right) // 2 - 80, height - 26, "HOURS FROM FIRST DOSE")
    _text(img, 8, top - 22, "NG/ML")
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
