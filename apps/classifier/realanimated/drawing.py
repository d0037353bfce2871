"""Procedural "animated" pictures: cartoons, flat graphics, text slides, charts and pixel art.

Each picture is drawn with OpenCV from a seeded generator, in a style picked at random: flat or
gradient backgrounds, a small palette, outlined shapes (aliased or anti-aliased), scene props
(sun, house, tree, cloud, face), text, cel shading, sometimes a light paper grain. The aim is the
variety of real clip art and cartoon frames, not realism; RESULTS.md says where it falls short.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Color = tuple[int, int, int]

WORDS = (
    "HELLO", "snip", "Boom!", "Level 3", "GAME OVER", "Sale 50%", "Chapter 1", "Wow", "Meeting notes",
    "Q3 results", "Click here", "The End", "Score: 1200", "Map", "Welcome", "ZAP", "Agenda", "Hi there",
)  # fmt: skip


def _palette(rng: np.random.Generator, n: int) -> list[Color]:
    import cv2

    # Spread hues, then vary saturation/value: cartoon palettes are few, distinct colours.
    hues = (rng.uniform(0, 180) + np.arange(n) * rng.uniform(18, 60)) % 180
    hsv = np.stack(
        [hues, rng.uniform(90, 255, n), rng.uniform(120, 255, n)],
        axis=1,
    ).astype(np.uint8)[None]
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    return [(int(c[0]), int(c[1]), int(c[2])) for c in rgb]


def _shade(color: Color, factor: float) -> Color:
    r, g, b = (min(255, max(0, round(c * factor))) for c in color)
    return r, g, b


def _background(rng: np.random.Generator, h: int, w: int, palette: list[Color]) -> Image:
    kind = rng.choice(["flat", "gradient", "bands"], p=[0.5, 0.3, 0.2])
    a = np.array(palette[0], dtype=np.float32)
    b = np.array(palette[1 % len(palette)], dtype=np.float32)
    if kind == "flat":
        return np.full((h, w, 3), a, dtype=np.uint8)
    if kind == "gradient":
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        return np.broadcast_to((a * (1 - t) + b * t).astype(np.uint8), (h, w, 3)).copy()
    img = np.empty((h, w, 3), dtype=np.uint8)
    horizon = int(h * rng.uniform(0.45, 0.75))
    img[:horizon] = a.astype(np.uint8)
    img[horizon:] = b.astype(np.uint8)
    return img


class _Painter:
    """Draws props with a shared style (outline colour and width, line type)."""

    def __init__(self, rng: np.random.Generator, img: Image, palette: list[Color]) -> None:
        import cv2

        self.rng = rng
        self.img = img
        self.palette = palette
        self.h, self.w = img.shape[:2]
        self.line = cv2.LINE_AA if rng.random() < 0.5 else cv2.LINE_8
        self.outline = int(rng.integers(0, 5)) if rng.random() < 0.75 else 0
        self.ink: Color = (20, 20, 20) if rng.random() < 0.8 else _shade(palette[-1], 0.4)
        self.cel = rng.random() < 0.35

    def color(self) -> Color:
        return self.palette[int(self.rng.integers(0, len(self.palette)))]

    def point(self) -> tuple[int, int]:
        return int(self.rng.integers(0, self.w)), int(self.rng.integers(0, self.h))

    def size(self, lo: float, hi: float) -> int:
        return max(2, int(min(self.h, self.w) * self.rng.uniform(lo, hi)))

    def circle(self, center: tuple[int, int], radius: int, color: Color) -> None:
        import cv2

        cv2.circle(self.img, center, radius, color, -1, self.line)
        if self.cel:
            # Cel shading: one darker flat crescent, not a gradient.
            offset = (center[0] + radius // 3, center[1] + radius // 3)
            cv2.ellipse(self.img, offset, (radius * 2 // 3, radius * 2 // 3), 0, 0, 180, _shade(color, 0.75), -1)
        if self.outline:
            cv2.circle(self.img, center, radius, self.ink, self.outline, self.line)

    def rect(self, p1: tuple[int, int], p2: tuple[int, int], color: Color) -> None:
        import cv2

        cv2.rectangle(self.img, p1, p2, color, -1, self.line)
        if self.outline:
            cv2.rectangle(self.img, p1, p2, self.ink, self.outline, self.line)

    def poly(self, points: npt.NDArray[np.int32], color: Color) -> None:
        import cv2

        cv2.fillPoly(self.img, [points], color, self.line)
        if self.outline:
            cv2.polylines(self.img, [points], True, self.ink, self.outline, self.line)

    # Props -------------------------------------------------------------------------------------

    def blob(self) -> None:
        kind = self.rng.integers(0, 3)
        if kind == 0:
            self.circle(self.point(), self.size(0.04, 0.2), self.color())
        elif kind == 1:
            x, y = self.point()
            self.rect((x, y), (x + self.size(0.05, 0.35), y + self.size(0.05, 0.35)), self.color())
        else:
            cx, cy = self.point()
            r = self.size(0.05, 0.2)
            n = int(self.rng.integers(3, 7))
            angles = np.sort(self.rng.uniform(0, 2 * np.pi, n))
            pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1).astype(np.int32)
            self.poly(pts, self.color())

    def sun(self) -> None:
        import cv2

        c, r = self.point(), self.size(0.05, 0.12)
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        for a in angles:
            p1 = (int(c[0] + 1.3 * r * np.cos(a)), int(c[1] + 1.3 * r * np.sin(a)))
            p2 = (int(c[0] + 1.8 * r * np.cos(a)), int(c[1] + 1.8 * r * np.sin(a)))
            cv2.line(self.img, p1, p2, (255, 200, 0), max(2, r // 8), self.line)
        self.circle(c, r, (255, 220, 40))

    def house(self) -> None:
        x, y = self.point()
        s = self.size(0.15, 0.35)
        body = self.color()
        self.rect((x, y), (x + s, y + s), body)
        roof = np.array([[x - s // 8, y], [x + s // 2, y - s // 2], [x + s + s // 8, y]], dtype=np.int32)
        self.poly(roof, self.color())
        self.rect((x + s // 3, y + s // 2), (x + 2 * s // 3, y + s), _shade(body, 0.5))
        self.rect((x + s // 10, y + s // 6), (x + s // 4, y + s // 3), (180, 220, 255))

    def tree(self) -> None:
        x, y = self.point()
        s = self.size(0.08, 0.2)
        self.rect((x - s // 6, y), (x + s // 6, y + 2 * s), (120, 72, 30))
        self.circle((x, y), s, (40, int(self.rng.integers(120, 200)), 50))

    def cloud(self) -> None:
        x, y = self.point()
        r = self.size(0.03, 0.08)
        for dx in (-r, 0, r):
            self.circle((x + dx, y - (r // 2 if dx == 0 else 0)), r, (250, 250, 250))

    def face(self) -> None:
        import cv2

        c, r = self.point(), self.size(0.1, 0.25)
        skin = self.color()
        self.circle(c, r, skin)
        for side in (-1, 1):
            eye = (c[0] + side * r // 3, c[1] - r // 5)
            cv2.circle(self.img, eye, max(2, r // 6), (255, 255, 255), -1, self.line)
            cv2.circle(self.img, eye, max(1, r // 12), (10, 10, 10), -1, self.line)
        cv2.ellipse(self.img, (c[0], c[1] + r // 5), (r // 2, r // 4), 0, 10, 170, (60, 10, 10), max(2, r // 12), self.line)

    def text(self) -> None:
        import cv2

        word = WORDS[int(self.rng.integers(0, len(WORDS)))]
        scale = self.rng.uniform(0.6, 3.0) * min(self.h, self.w) / 400
        thickness = max(1, int(scale * 2))
        font = int(self.rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX]))
        x = int(self.rng.integers(0, max(1, self.w // 2)))
        y = int(self.rng.integers(self.h // 6, self.h))
        cv2.putText(self.img, word, (x, y), font, scale, self.ink, thickness + 2, self.line)
        cv2.putText(self.img, word, (x, y), font, scale, self.color(), thickness, self.line)


def _scene(rng: np.random.Generator, h: int, w: int) -> Image:
    palette = _palette(rng, int(rng.integers(3, 11)))
    img = _background(rng, h, w, palette)
    painter = _Painter(rng, img, palette)
    props: list[Callable[[], None]] = [
        painter.blob, painter.blob, painter.sun, painter.house, painter.tree, painter.cloud, painter.face,
        painter.text,
    ]  # fmt: skip
    for _ in range(int(rng.integers(3, 16))):
        props[int(rng.integers(0, len(props)))]()
    return img


def _slide(rng: np.random.Generator, h: int, w: int) -> Image:
    import cv2

    palette = _palette(rng, 4)
    img = _background(rng, h, w, [palette[0], _shade(palette[0], 0.8)])
    painter = _Painter(rng, img, palette)
    cv2.rectangle(img, (0, 0), (w, max(8, h // 7)), palette[1], -1)
    for row in range(int(rng.integers(2, 7))):
        y = h // 4 + row * max(12, h // 9)
        cv2.putText(
            img,
            "- " + WORDS[int(rng.integers(0, len(WORDS)))],
            (w // 12, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            max(0.4, h / 700),
            painter.ink,
            max(1, h // 350),
            painter.line,
        )
    if rng.random() < 0.6:  # a bar chart
        base = h - h // 10
        for i in range(int(rng.integers(3, 8))):
            x = w // 2 + i * max(6, w // 20)
            cv2.rectangle(img, (x, base - int(rng.integers(h // 10, h // 2))), (x + max(4, w // 30), base), palette[2 + i % 2], -1)
    return img


def _pixel_art(rng: np.random.Generator, h: int, w: int) -> Image:
    import cv2

    cells = int(rng.integers(8, 40))
    palette = np.array(_palette(rng, int(rng.integers(3, 9))), dtype=np.uint8)
    grid = palette[rng.integers(0, len(palette), (cells, cells))]
    # Blocky runs rather than noise: repeat each row's colours a few times.
    grid = np.repeat(grid[:, :: max(1, cells // 8)], max(1, cells // 8), axis=1)[:, :cells]
    return np.asarray(cv2.resize(np.ascontiguousarray(grid), (w, h), interpolation=cv2.INTER_NEAREST))


STYLES: dict[str, Callable[[np.random.Generator, int, int], Image]] = {
    "scene": _scene,
    "slide": _slide,
    "pixel_art": _pixel_art,
}
STYLE_WEIGHTS = {"scene": 0.75, "slide": 0.15, "pixel_art": 0.10}


def draw_animated(rng: np.random.Generator, width: int, height: int) -> tuple[Image, str]:
    """One procedural picture (RGB) and the name of its style."""
    names = list(STYLES)
    style = str(rng.choice(names, p=[STYLE_WEIGHTS[n] for n in names]))
    img = STYLES[style](rng, height, width)
    if rng.random() < 0.12:
        # Paper grain / scanned print: the hard case for every model.
        grain = rng.normal(0.0, rng.uniform(2.0, 6.0), img.shape)
        img = np.clip(img.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img), style
