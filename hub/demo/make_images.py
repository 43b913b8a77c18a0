"""One-off tool: draw the illustrations of the demo town "Musterstadt".

The JPEGs in `hub/demo/musterstadt/img/` are committed; this script is only here so they can
be regenerated or extended. It is not imported by the hub, and Pillow is not a dependency of
the project for this script's sake. To run it:

    .venv/bin/pip install pillow
    .venv/bin/python hub/demo/make_images.py            # writes hub/demo/musterstadt/img/*.jpg

Every picture is 800x500, a soft gradient with a simple motif and a German label, drawn at
twice the size and scaled down for smooth edges. Output is deterministic for a given Pillow
version. Each file stays well under 60 KB.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageFilter, ImageFont

W, H = 800, 500
S = 2  # supersampling factor
OUT = Path(__file__).resolve().parent / "musterstadt" / "img"
FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
]

RGB = tuple[int, int, int]


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size * S)
    return ImageFont.load_default(size * S)


def gradient(top: RGB, bottom: RGB) -> Image.Image:
    """A vertical gradient, drawn row by row."""
    img = Image.new("RGB", (W * S, H * S))
    draw = ImageDraw.Draw(img)
    for y in range(H * S):
        t = y / (H * S - 1)
        color = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom))
        draw.line([(0, y), (W * S, y)], fill=color)
    return img


def p(*xy: float) -> list[float]:
    """Scale design coordinates (800x500) to the supersampled canvas."""
    return [v * S for v in xy]


def label(img: Image.Image, text: str, sub: str, fg: RGB = (255, 255, 255), bg: RGB = (0, 0, 0)) -> None:
    """A rounded, translucent banner in the lower left with a title and a small subtitle."""
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    big, small = font(46), font(22)
    tw = max(draw.textlength(text, font=big), draw.textlength(sub, font=small)) / S
    draw.rounded_rectangle(p(30, 360, 30 + tw + 48, 470), radius=18 * S, fill=bg + (150,))
    draw.text(p(54, 372), text, font=big, fill=fg + (255,))
    draw.text(p(56, 432), sub, font=small, fill=fg + (220,))
    img.paste(overlay, (0, 0), overlay)


# --- motifs ---------------------------------------------------------------------------------


def brot(d: ImageDraw.ImageDraw) -> None:
    d.rounded_rectangle(p(300, 250, 780, 330), radius=30 * S, fill=(150, 98, 52))  # board
    for i, (x, y) in enumerate([(340, 180), (470, 170), (600, 185), (400, 255), (540, 250)]):
        shade = (214, 150, 74) if i % 2 else (199, 132, 60)
        d.ellipse(p(x, y, x + 130, y + 80), fill=shade, outline=(150, 92, 40), width=3 * S)
        d.arc(p(x + 25, y + 20, x + 105, y + 60), 200, 340, fill=(244, 214, 160), width=5 * S)
    for x, y in [(120, 90), (200, 60), (680, 70)]:
        d.ellipse(p(x, y, x + 8, y + 8), fill=(255, 246, 220))


def stollen(d: ImageDraw.ImageDraw) -> None:
    d.rounded_rectangle(p(330, 170, 730, 320), radius=70 * S, fill=(236, 226, 210))
    d.rounded_rectangle(p(350, 185, 710, 250), radius=40 * S, fill=(250, 246, 240))
    for i in range(40):
        x = 350 + (i * 47) % 360
        y = 200 + (i * 29) % 100
        d.ellipse(p(x, y, x + 5, y + 5), fill=(255, 255, 255))
    for cx, cy, r in [(120, 90, 26), (240, 60, 16), (720, 80, 20), (640, 40, 12)]:
        star(d, cx, cy, r, (255, 215, 120))


def star(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, color: RGB) -> None:
    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * 0.45
        a = math.pi / 2 + k * math.pi / 5
        pts += p(cx + rr * math.cos(a), cy - rr * math.sin(a))
    d.polygon(pts, fill=color)


def pizza(d: ImageDraw.ImageDraw) -> None:
    d.ellipse(p(380, 90, 700, 410), fill=(204, 140, 64))
    d.ellipse(p(400, 110, 680, 390), fill=(222, 80, 50))
    d.ellipse(p(410, 120, 670, 380), fill=(250, 226, 150))
    for x, y in [(450, 160), (560, 150), (610, 250), (470, 280), (540, 320), (520, 220)]:
        d.ellipse(p(x, y, x + 38, y + 38), fill=(196, 48, 40))
    for x, y in [(500, 180), (600, 200), (440, 230), (580, 300)]:
        d.ellipse(p(x, y, x + 24, y + 14), fill=(60, 140, 60))
    d.rectangle(p(0, 0, 90, 500), fill=(0, 140, 70))
    d.rectangle(p(90, 0, 180, 500), fill=(250, 250, 250))
    d.rectangle(p(180, 0, 270, 500), fill=(206, 43, 55))


def buecher(d: ImageDraw.ImageDraw) -> None:
    colors = [(196, 72, 60), (60, 110, 170), (230, 180, 70), (80, 150, 110), (140, 80, 150)]
    y = 330
    for i, c in enumerate(colors):
        x = 360 + (i % 2) * 30
        d.rounded_rectangle(p(x, y - 44, x + 340 - i * 20, y), radius=6 * S, fill=c)
        d.line(p(x + 20, y - 22, x + 300 - i * 20, y - 22), fill=(255, 255, 255), width=2 * S)
        y -= 46
    d.ellipse(p(90, 60, 230, 200), fill=(255, 236, 180))  # reading lamp glow


def fussball(d: ImageDraw.ImageDraw) -> None:
    for i in range(8):
        if i % 2:
            d.rectangle(p(i * 100, 0, i * 100 + 100, 500), fill=(58, 138, 64))
    d.line(p(400, 0, 400, 500), fill=(235, 245, 235), width=4 * S)
    d.ellipse(p(310, 160, 490, 340), outline=(235, 245, 235), width=4 * S)
    d.ellipse(p(580, 120, 720, 260), fill=(255, 255, 255), outline=(30, 30, 30), width=3 * S)
    cx, cy = 650, 190
    pts = []
    for k in range(5):
        a = math.pi / 2 + k * 2 * math.pi / 5
        pts += p(cx + 26 * math.cos(a), cy - 26 * math.sin(a))
    d.polygon(pts, fill=(30, 30, 30))


def rathaus(d: ImageDraw.ImageDraw) -> None:
    d.rectangle(p(260, 170, 660, 420), fill=(236, 220, 196))
    d.polygon(p(240, 175, 460, 60, 680, 175), fill=(168, 70, 56))
    d.rectangle(p(420, 30, 500, 120), fill=(236, 220, 196))
    d.polygon(p(410, 35, 460, -10, 510, 35), fill=(90, 90, 110))
    d.ellipse(p(435, 55, 485, 105), fill=(255, 255, 255), outline=(60, 60, 60), width=3 * S)
    d.line(p(460, 80, 460, 62), fill=(40, 40, 40), width=3 * S)
    d.line(p(460, 80, 474, 80), fill=(40, 40, 40), width=3 * S)
    for row in (200, 290):
        for x in range(290, 640, 70):
            d.rounded_rectangle(p(x, row, x + 40, row + 60), radius=14 * S, fill=(90, 120, 160))
    d.rounded_rectangle(p(430, 340, 490, 420), radius=24 * S, fill=(110, 70, 40))
    d.rectangle(p(0, 420, 800, 500), fill=(150, 150, 150))


def kino(d: ImageDraw.ImageDraw) -> None:
    d.polygon(p(800, 0, 800, 120, 380, 330, 330, 260), fill=(255, 240, 190, 60))
    d.rectangle(p(0, 60, 800, 150), fill=(25, 25, 30))
    for x in range(10, 800, 40):
        d.rectangle(p(x, 70, x + 20, 82), fill=(230, 230, 230))
        d.rectangle(p(x, 128, x + 20, 140), fill=(230, 230, 230))
    for i, x in enumerate(range(40, 800, 150)):
        d.rectangle(p(x, 90, x + 120, 120), fill=[(220, 120, 60), (90, 160, 200), (240, 200, 80)][i % 3])
    for x, y in [(520, 220), (600, 260), (680, 230), (560, 300), (650, 320)]:
        d.ellipse(p(x, y, x + 50, y + 50), fill=(255, 248, 220))  # popcorn
    d.polygon(p(540, 290, 720, 290, 700, 420, 560, 420), fill=(206, 43, 55))
    for x in (570, 620, 670):
        d.rectangle(p(x, 290, x + 20, 420), fill=(250, 250, 250))


def mode(d: ImageDraw.ImageDraw) -> None:
    d.line(p(260, 70, 760, 70), fill=(120, 90, 110), width=6 * S)
    for i, (x, c) in enumerate([(300, (120, 60, 90)), (450, (60, 90, 130)), (600, (170, 120, 80))]):
        d.arc(p(x + 40, 50, x + 80, 90), 180, 360, fill=(90, 90, 90), width=3 * S)
        d.line(p(x + 60, 90, x + 60, 110), fill=(90, 90, 90), width=3 * S)
        d.polygon(p(x, 140, x + 60, 110, x + 120, 140, x + 110, 330, x + 10, 330), fill=c)
        d.rectangle(p(x + 54, 120, x + 66, 330), fill=tuple(min(255, v + 40) for v in c))
        for b in range(3):
            d.ellipse(p(x + 72, 170 + b * 50, x + 84, 182 + b * 50), fill=(240, 220, 160))


def konzert(d: ImageDraw.ImageDraw) -> None:
    for i in range(5):
        y = 120 + i * 22
        d.line(p(240, y, 780, y + 30), fill=(230, 220, 180), width=2 * S)
    for k, (x, y) in enumerate([(300, 150), (400, 130), (500, 175), (610, 140), (700, 190)]):
        d.ellipse(p(x, y, x + 34, y + 26), fill=(255, 230, 140))
        d.line(p(x + 31, y + 12, x + 31, y - 60), fill=(255, 230, 140), width=4 * S)
        if k % 2 == 0:
            d.line(p(x + 31, y - 60, x + 55, y - 40), fill=(255, 230, 140), width=4 * S)
    # a trumpet
    d.rectangle(p(330, 300, 620, 318), fill=(230, 190, 80))
    d.polygon(p(620, 280, 720, 250, 720, 370, 620, 338), fill=(240, 200, 90))
    for x in (420, 460, 500):
        d.rectangle(p(x, 270, x + 14, 300), fill=(210, 170, 70))


def adventskranz(d: ImageDraw.ImageDraw) -> None:
    d.ellipse(p(300, 230, 740, 400), fill=(40, 100, 50))
    d.ellipse(p(380, 270, 660, 360), fill=(24, 60, 40))
    for x, y in [(330, 280), (420, 250), (560, 250), (660, 290), (520, 370), (390, 360)]:
        d.ellipse(p(x, y, x + 26, y + 26), fill=(200, 40, 50))
    for i, x in enumerate([360, 460, 560, 650]):
        top = 170 if i % 2 else 190
        d.rectangle(p(x, top, x + 34, 300), fill=(220, 60, 60))
        if i < 2:  # first and second Advent: two candles burn
            d.ellipse(p(x + 8, top - 40, x + 26, top - 6), fill=(255, 200, 80))
            d.ellipse(p(x + 12, top - 28, x + 22, top - 8), fill=(255, 245, 200))


def bibliothek(d: ImageDraw.ImageDraw) -> None:
    palette = [(190, 80, 70), (70, 120, 170), (220, 170, 70), (90, 150, 110), (150, 90, 150), (230, 130, 80)]
    for shelf, y in enumerate([40, 170, 300]):
        d.rectangle(p(260, y + 110, 780, y + 122), fill=(120, 80, 50))
        x = 270
        k = shelf
        while x < 760:
            width = 22 + (k * 7) % 18
            height = 80 + (k * 13) % 28
            d.rectangle(p(x, y + 110 - height, x + width, y + 110), fill=palette[k % len(palette)])
            x += width + 4
            k += 1


def flohmarkt(d: ImageDraw.ImageDraw) -> None:
    for i in range(8):
        color = (206, 60, 60) if i % 2 else (250, 250, 250)
        d.polygon(p(260 + i * 60, 110, 320 + i * 60, 110, 320 + i * 60, 170, 260 + i * 60, 190), fill=color)
    d.rectangle(p(270, 190, 280, 420), fill=(110, 80, 50))
    d.rectangle(p(730, 170, 740, 420), fill=(110, 80, 50))
    d.rectangle(p(260, 320, 760, 340), fill=(150, 110, 70))
    d.ellipse(p(300, 270, 360, 320), fill=(90, 140, 200))  # a bowl
    d.rounded_rectangle(p(390, 250, 470, 320), radius=8 * S, fill=(210, 170, 90))  # a box
    d.rectangle(p(500, 240, 560, 320), fill=(140, 70, 60))  # books
    d.rectangle(p(565, 255, 620, 320), fill=(60, 110, 90))
    d.ellipse(p(650, 260, 710, 320), fill=(240, 210, 120))  # a clock
    d.line(p(680, 290, 680, 272), fill=(60, 60, 60), width=3 * S)
    d.line(p(680, 290, 694, 290), fill=(60, 60, 60), width=3 * S)


# name -> (top color, bottom color, motif, label, subtitle, banner color)
PICTURES: dict[str, tuple[RGB, RGB, Callable[[ImageDraw.ImageDraw], None], str, str, RGB]] = {
    "brot": ((250, 226, 180), (226, 170, 110), brot, "Frische Brötchen", "Bäckerei Schmitz · seit 1927", (110, 60, 20)),
    "stollen": ((120, 24, 36), (60, 10, 20), stollen, "Christstollen", "Nach Omas Rezept · ab 14,90 €", (40, 10, 10)),
    "pizza": ((255, 244, 222), (240, 206, 160), pizza, "Pizza & Pasta", "Ristorante Da Luigi", (90, 40, 20)),
    "buecher": ((48, 72, 120), (24, 36, 70), buecher, "Lesung im Laden", "Buchhandlung Seitenweise", (10, 20, 50)),
    "fussball": ((76, 160, 80), (50, 120, 56), fussball, "Heimspiel!", "TSV Musterstadt 1898 e. V.", (10, 50, 20)),
    "rathaus": ((150, 200, 240), (220, 236, 250), rathaus, "Aus dem Rathaus", "Stadtverwaltung Musterstadt", (30, 50, 80)),
    "kino": ((40, 30, 60), (90, 40, 70), kino, "Kinoprogramm", "Lichtspielhaus Musterstadt", (10, 5, 20)),
    "mode": ((250, 226, 236), (220, 190, 220), mode, "Wintermode", "Modehaus Becker · Sale bis -30 %", (80, 40, 70)),
    "konzert": ((24, 34, 80), (60, 40, 100), konzert, "Adventskonzert", "Musikverein Harmonie", (10, 10, 40)),
    "adventskranz": ((30, 60, 40), (14, 34, 24), adventskranz, "Adventskränze", "Gärtnerei Grünwald", (5, 20, 10)),
    "bibliothek": ((70, 150, 150), (40, 110, 120), bibliothek, "Stadtbibliothek", "Lesen, leihen, treffen", (10, 40, 45)),
    "flohmarkt": ((255, 230, 140), (250, 200, 110), flohmarkt, "Flohmarkt", "Heimatverein · Alter Marktplatz", (90, 50, 10)),
}


def render(name: str) -> Image.Image:
    top, bottom, motif, text, sub, banner = PICTURES[name]
    img = gradient(top, bottom)
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    motif(ImageDraw.Draw(layer))
    shadow = layer.split()[3].filter(ImageFilter.GaussianBlur(6 * S)).point(lambda a: a * 0.35)
    img.paste((0, 0, 0), (6 * S, 8 * S), shadow)
    img.paste(layer, (0, 0), layer)
    label(img, text, sub, bg=banner)
    return img.resize((W, H), Image.Resampling.LANCZOS)


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or sorted(PICTURES):
        target = OUT / f"{name}.jpg"
        render(name).save(target, "JPEG", quality=80, optimize=True, progressive=True)
        print(f"{target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target}"
              f"  {target.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(sys.argv[1:])
