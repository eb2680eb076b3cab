"""Procedural pedestrians seen by procedural cameras: the drawing behind the synthetic data set.

A :class:`Person` is a set of appearance attributes (clothing colours and pattern, sleeves, lower garment,
hair, hat, shoes, bag, body proportions). Colours are drawn with real-world frequencies (dark and neutral
clothes dominate), so many identities share their coarse colours and differ by finer cues: a stripe
period, a logo seen only from the front, a backpack seen from behind, a bag on one side, long hair, a hat,
the shoes, the build.

A :class:`Camera` changes what real cameras change: white balance (per-channel gains), exposure, contrast,
saturation, gamma, a side light, its own scene behind people, the viewpoints it sees (front / back / left
/ right, so the same bag or logo is visible in one camera and not in another), scale and framing, blur,
sensor noise, resolution (a low-resolution camera) and occluders (poles, barriers, passers-by).

Everything is drawn with PIL at twice the output size and reduced (anti-aliasing), then the camera model is
applied in numpy. Every random choice comes from the ``numpy.random.Generator`` passed in, so an image is
a pure function of its seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]

# (name, rgb, weight): weights follow what pedestrians wear, dark and neutral first.
UPPER_COLOURS = (("black", (32, 32, 34), 18), ("white", (228, 228, 222), 13), ("grey", (128, 128, 132), 12),
                 ("navy", (36, 46, 92), 9), ("blue", (52, 92, 172), 8), ("red", (172, 36, 42), 8),
                 ("beige", (196, 176, 138), 7), ("green", (52, 112, 62), 6), ("brown", (112, 76, 50), 6),
                 ("yellow", (218, 192, 62), 5), ("pink", (218, 142, 168), 4), ("purple", (106, 62, 130), 4))
LOWER_COLOURS = (("black", (30, 30, 32), 26), ("denim", (62, 82, 124), 22), ("grey", (110, 110, 114), 14),
                 ("navy", (34, 42, 80), 12), ("khaki", (168, 152, 112), 10), ("brown", (96, 66, 44), 6),
                 ("white", (222, 222, 216), 5), ("red", (150, 40, 44), 3), ("green", (60, 90, 56), 2))
HAIR_COLOURS = (("black", (22, 20, 20), 45), ("dark brown", (58, 40, 28), 25), ("brown", (104, 72, 46), 14),
                ("blonde", (204, 172, 112), 8), ("grey", (156, 156, 152), 6), ("auburn", (128, 52, 30), 2))
SHOE_COLOURS = (("black", (26, 26, 28), 40), ("white", (232, 232, 228), 25), ("brown", (96, 62, 36), 12),
                ("grey", (120, 120, 124), 10), ("red", (180, 40, 40), 7), ("blue", (50, 80, 170), 6))
ACCESSORY_COLOURS = (("black", (28, 28, 30), 30), ("brown", (110, 70, 40), 15), ("grey", (116, 116, 120), 12),
                     ("navy", (36, 46, 92), 10), ("red", (176, 38, 44), 10), ("beige", (196, 176, 138), 8),
                     ("green", (54, 110, 60), 8), ("yellow", (220, 190, 60), 7))
SKIN_TONES = ((241, 208, 184), (226, 182, 152), (198, 152, 116), (156, 110, 78), (104, 72, 52))

PATTERNS = (("plain", 30), ("hstripes", 14), ("vstripes", 9), ("checks", 9), ("logo", 22), ("jacket", 16))
LOGO_SHAPES = ("circle", "square", "triangle", "bar")
LOWER_TYPES = (("trousers", 70), ("shorts", 15), ("skirt", 15))
BAGS = (("none", 38), ("backpack", 26), ("shoulder", 20), ("handbag", 16))
VIEWS = ("front", "back", "left", "right")
WALLS = ("brick", "foliage", "shops", "glass", "plain")
FLOORS = ("tiles", "road", "plain")
# Scene colours: muted urban colours (concrete, stone, brick, foliage, asphalt); signs and awnings add
# saturated colours that clothes also wear.
SCENE_COLOURS = ((150, 146, 140), (96, 92, 88), (176, 160, 130), (120, 128, 136), (84, 100, 70), (150, 92, 72),
                 (200, 196, 186), (62, 66, 72), (128, 140, 104), (110, 96, 80), (170, 164, 150), (84, 90, 110))
FLOOR_COLOURS = ((92, 92, 94), (150, 148, 144), (178, 172, 160), (122, 116, 106))  # asphalt, concrete, paving
SIGN_COLOURS = ((176, 62, 54), (62, 92, 150), (206, 178, 84), (60, 130, 80), (220, 220, 215), (30, 30, 32))


def _pick(rng: np.random.Generator, table):
    """One ``(name, value)`` entry of a ``(name, value, weight)`` table, drawn by weight."""
    weights = np.array([row[-1] for row in table], dtype=float)
    row = table[rng.choice(len(table), p=weights / weights.sum())]
    return row[:-1] if len(row) > 2 else row[0]


def _shade(rng: np.random.Generator, rgb: RGB, spread: float = 9.0) -> RGB:
    """A personal shade of a named colour (a fine cue that camera colour casts easily hide)."""
    return tuple(int(v) for v in np.clip(np.asarray(rgb) + rng.normal(0.0, spread, 3), 0, 255))


@dataclass(frozen=True)
class Person:
    """Appearance attributes of one identity (colours RGB; lengths as fractions of body height)."""

    upper: RGB
    pattern: str
    pattern_colour: RGB
    stripe_period: float
    logo_shape: str
    short_sleeves: bool
    lower: RGB
    lower_type: str
    hair: RGB
    long_hair: bool
    hat: RGB | None
    skin: RGB
    shoes: RGB
    bag: str
    bag_colour: RGB
    bag_side: str          # the person's own "left" or "right"
    height: float          # relative stature, ~0.88..1
    build: float           # shoulder width / body height
    torso: float           # torso length / body height
    key: tuple             # the named (coarse) attributes: two identities never share all of them


def draw_person(rng: np.random.Generator) -> Person:
    """Sample an identity's attributes."""
    upper_name, upper = _pick(rng, UPPER_COLOURS)
    pattern = _pick(rng, PATTERNS)
    second_name, second = _pick(rng, [row for row in UPPER_COLOURS if row[0] != upper_name])
    lower_name, lower = _pick(rng, LOWER_COLOURS)
    lower_type = _pick(rng, LOWER_TYPES)
    hair_name, hair = _pick(rng, HAIR_COLOURS)
    shoe_name, shoes = _pick(rng, SHOE_COLOURS)
    bag = _pick(rng, BAGS)
    bag_name, bag_colour = _pick(rng, ACCESSORY_COLOURS)
    hat_name, hat = _pick(rng, ACCESSORY_COLOURS) if rng.random() < 0.15 else ("none", None)
    long_hair = bool(rng.random() < 0.35)
    short_sleeves = bool(rng.random() < 0.3)
    period = float(rng.choice([0.045, 0.065, 0.09]))
    logo = LOGO_SHAPES[rng.integers(len(LOGO_SHAPES))]
    side = "left" if rng.random() < 0.5 else "right"
    key = (upper_name, pattern, second_name if pattern != "plain" else "", period if "stripes" in pattern else 0,
           logo if pattern == "logo" else "", short_sleeves, lower_name, lower_type, hair_name, long_hair,
           hat_name, shoe_name, bag, bag_name if bag != "none" else "", side if bag in ("shoulder", "handbag") else "")
    return Person(
        upper=_shade(rng, upper), pattern=pattern, pattern_colour=_shade(rng, second), stripe_period=period,
        logo_shape=logo, short_sleeves=short_sleeves, lower=_shade(rng, lower), lower_type=lower_type,
        hair=_shade(rng, hair, 6), long_hair=long_hair, hat=None if hat is None else _shade(rng, hat),
        skin=_shade(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 6), shoes=_shade(rng, shoes, 6),
        bag=bag, bag_colour=_shade(rng, bag_colour), bag_side=side,
        height=float(rng.uniform(0.88, 1.0)), build=float(rng.uniform(0.28, 0.36)),
        torso=float(rng.uniform(0.31, 0.37)), key=key)


def draw_people(rng: np.random.Generator, count: int, taken: set | None = None) -> list[Person]:
    """``count`` identities whose named attributes all differ from each other and from ``taken``."""
    taken = set() if taken is None else taken
    people = []
    while len(people) < count:
        person = draw_person(rng)
        if person.key not in taken:
            taken.add(person.key)
            people.append(person)
    return people


@dataclass(frozen=True)
class Camera:
    """One camera's imaging conditions; ``difficulty`` 0 gives a neutral camera."""

    gains: tuple[float, float, float]   # white balance, per channel
    exposure: float
    contrast: float
    saturation: float
    gamma: float
    light: float                        # strength of a left-right light gradient (signed)
    blur: float                         # Gaussian sigma, output pixels
    noise: float                        # std of sensor noise, 0-255 scale
    resolution: float                   # 1: full; < 1: a low-resolution camera (down- then up-sampled)
    occlusion: float                    # probability that an occluder hides part of the person
    views: tuple[float, float, float, float]  # probabilities of front, back, left, right
    scale: float                        # person height / image height
    horizon: float                      # wall / ground boundary, fraction of the image height
    walls: tuple[str, str]              # the two kinds of scenery behind people
    floor: str
    scene_colours: tuple[RGB, ...]      # the camera's palette: wall, floor, accents


def draw_camera(rng: np.random.Generator, index: int, difficulty: float) -> Camera:
    d = float(difficulty)
    gains = np.exp(rng.normal(0.0, 0.035 * d, 3))
    preferred = (index + int(rng.integers(4))) % 4
    views = np.full(4, 0.25) * (1 - min(0.75, 0.5 * d))
    views[preferred] += 1 - views.sum()
    low_res = rng.random() < 0.35
    colours = [SCENE_COLOURS[i] for i in rng.choice(len(SCENE_COLOURS), size=3, replace=False)]
    colours.insert(1, FLOOR_COLOURS[int(rng.integers(len(FLOOR_COLOURS)))])
    walls = rng.choice(len(WALLS), size=2, replace=False)
    return Camera(
        gains=tuple(float(g) for g in gains / np.exp(np.log(gains).mean())),
        exposure=float(np.exp(rng.normal(0.0, 0.06 * d))),
        contrast=float(np.exp(rng.normal(0.0, 0.05 * d))),
        saturation=float(np.exp(rng.normal(0.0, 0.08 * d))),
        gamma=float(np.exp(rng.normal(0.0, 0.05 * d))),
        light=float(rng.normal(0.0, 0.12 * d)),
        blur=float(rng.uniform(0.0, 0.8 * d)),
        noise=float(rng.uniform(1.0, 1.0 + 3.0 * d)),
        resolution=float(1.0 - rng.uniform(0.3, 0.45) * min(d, 1.0)) if low_res else 1.0,
        occlusion=float(min(0.6, rng.uniform(0.05, 0.25) * d)),
        views=tuple(float(v) for v in views),
        scale=float(rng.uniform(0.84, 0.95)),
        horizon=float(rng.uniform(0.35, 0.75)),
        walls=(WALLS[walls[0]], WALLS[walls[1]]),
        floor=FLOORS[int(rng.integers(len(FLOORS)))],
        scene_colours=tuple(colours),
    )


# --------------------------------------------------------------------------------------------- scenes

def _draw_wall(draw: ImageDraw.ImageDraw, kind: str, x0: float, x1: float, horizon: int, base: RGB, accent: RGB,
               unit: int, rng: np.random.Generator) -> None:
    """One stretch of the scene above the horizon: a wall, foliage, a shop front or glass."""
    draw.rectangle([x0, 0, x1, horizon], fill=base)
    if kind == "brick":
        for row, y in enumerate(range(0, horizon, unit // 2 + 1)):
            for x in np.arange(x0 - (unit if row % 2 else 0), x1, 2 * unit):
                draw.rectangle([max(x, x0), y, min(x + 2 * unit - 3, x1), y + unit // 2 - 1], fill=accent)
    elif kind == "foliage":
        for _ in range(int((x1 - x0) * horizon / (unit * unit) / 2)):
            x, y, r = rng.uniform(x0, x1), rng.uniform(0, horizon), rng.uniform(0.5, 1.5) * unit
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_shade(rng, accent if rng.random() < 0.5 else base, 14))
    elif kind == "shops":
        sign = SIGN_COLOURS[int(rng.integers(len(SIGN_COLOURS)))]
        draw.rectangle([x0 + unit // 2, unit, x1 - unit // 2, 2 * unit], fill=_shade(rng, sign, 16))
        draw.rectangle([x0 + unit, 3 * unit, x1 - unit, horizon - unit], fill=_shade(rng, base, 30))
    elif kind == "glass":
        for x in np.arange(x0, x1, 3 * unit):
            draw.rectangle([x, 0, x + unit // 3, horizon], fill=accent)


def render_scene(camera: Camera, rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A wide background for one camera (images crop it at random offsets): a floor, and above the
    horizon stretches of the camera's two wall kinds in shades of its palette."""
    palette = camera.scene_colours
    image = Image.new("RGB", (width, height), palette[0])
    draw = ImageDraw.Draw(image)
    horizon = int(camera.horizon * height)
    unit = max(4, height // 16)
    draw.rectangle([0, horizon, width, height], fill=palette[1])
    if camera.floor == "tiles":
        for row, y in enumerate(range(horizon, height, unit)):
            for x in range(-unit + (unit if row % 2 else 0), width, 2 * unit):
                draw.rectangle([x, y, x + unit - 1, y + unit - 1], fill=palette[2])
    elif camera.floor == "road":
        y = horizon + (height - horizon) // 2
        for x in range(0, width, 4 * unit):
            draw.rectangle([x, y, x + 2 * unit, y + unit // 3], fill=palette[2])
    x = 0.0
    while x < width:
        stretch = rng.uniform(0.4, 1.2) * height
        pool = palette if rng.random() < 0.3 else SCENE_COLOURS  # the street is not one colour
        colours = [_shade(rng, pool[int(i)], 16) for i in rng.choice(len(pool), size=2, replace=False)]
        _draw_wall(draw, camera.walls[int(rng.integers(2))], x, x + stretch, horizon, *colours, unit, rng)
        x += stretch
    array = np.asarray(image, dtype=np.float32) + rng.normal(0.0, 6.0, (height, width, 3))  # surface texture
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _clutter(canvas: Image.Image, rng: np.random.Generator) -> None:
    """Objects of the street behind the person (a sign, a bin, a parked bike's frame)."""
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 3))):
        w, h = rng.uniform(0.15, 0.5) * width, rng.uniform(0.08, 0.3) * height
        x, y = rng.uniform(-w / 2, width - w / 2), rng.uniform(0, height - h)
        pool = SIGN_COLOURS if rng.random() < 0.5 else SCENE_COLOURS
        colour = _shade(rng, pool[int(rng.integers(len(pool)))], 20) + (255,)
        (draw.rectangle if rng.random() < 0.6 else draw.ellipse)([x, y, x + w, y + h], fill=colour)


# --------------------------------------------------------------------------------------------- people

@dataclass(frozen=True)
class Pose:
    view: str        # front, back, left, right
    stride: float    # -1..1: leg and arm swing
    cx: float        # body centre, canvas pixels
    top: float       # top of the head
    height: float    # body height, canvas pixels


def _side_sign(person_side: str, view: str) -> int:
    """Where the person's own left/right side appears: -1 image left, +1 image right, 0 near side (profile),
    2 hidden (far side in profile)."""
    if view == "front":
        return 1 if person_side == "left" else -1
    if view == "back":
        return -1 if person_side == "left" else 1
    near = "left" if view == "left" else "right"  # facing image-left, the camera sees the person's left
    return 0 if person_side == near else 2


def _limb(draw: ImageDraw.ImageDraw, start, end, width: float, fill) -> None:
    """A thick segment from ``start`` to ``end`` drawn as a quadrilateral."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    norm = max(np.hypot(dx, dy), 1e-6)
    nx, ny = -dy / norm * width / 2, dx / norm * width / 2
    draw.polygon([(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)], fill=fill)


def _torso_fill(person: Person, view: str, box, ph: float, size) -> Image.Image:
    """The upper garment's pattern over the torso box (front-only patterns are plain elsewhere)."""
    x0, y0, x1, y1 = box
    layer = Image.new("RGB", size, person.upper)
    draw = ImageDraw.Draw(layer)
    period = person.stripe_period * ph
    colour = person.pattern_colour
    if person.pattern in ("hstripes", "checks"):
        for y in np.arange(y0, y1, period):
            draw.rectangle([x0, y, x1, y + period / 2], fill=colour)
    if person.pattern in ("vstripes", "checks"):
        for x in np.arange(x0, x1, period):
            if person.pattern == "checks":
                for y in np.arange(y0, y1, period):
                    draw.rectangle([x, y + period / 2, x + period / 2, y + period], fill=colour)
            else:
                draw.rectangle([x, y0, x + period / 2, y1], fill=colour)
    if view == "front" and person.pattern == "jacket":
        cx, half = (x0 + x1) / 2, (x1 - x0) * 0.17
        draw.rectangle([cx - half, y0, cx + half, y1], fill=colour)
    if view == "front" and person.pattern == "logo":
        cx, cy, r = (x0 + x1) / 2, y0 + 0.09 * ph, 0.045 * ph
        shape = person.logo_shape
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif shape == "square":
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
        else:
            draw.rectangle([cx - 1.6 * r, cy - r / 2, cx + 1.6 * r, cy + r / 2], fill=colour)
    return layer


@dataclass(frozen=True)
class _Frame:
    """Where the parts of one figure go (pixels): the pose's height ``ph``, centre ``cx`` and ``top``, the view, the
    stride, and the body's lines (shoulders, hips, feet) and widths derived from the person's build."""
    ph: float
    cx: float
    top: float
    view: str
    stride: float
    head_r: float
    y_sh: float
    y_hip: float
    y_foot: float
    tw: float
    hip_w: float
    leg_w: float
    arm_w: float
    bag_at: int

    @property
    def profile(self) -> bool:
        return self.view in ("left", "right")

    @property
    def facing(self) -> int:
        return -1 if self.view == "left" else 1

    @property
    def hand_y(self) -> float:
        return self.y_hip + 0.05 * self.ph


def _frame(person: Person, pose: Pose) -> _Frame:
    ph, view = pose.height, pose.view
    profile = view in ("left", "right")
    y_sh = pose.top + 0.15 * ph
    tw = person.build * ph * (0.65 if profile else 1.0)
    hip_w = tw * (1.0 if profile else 0.86)
    return _Frame(ph=ph, cx=pose.cx, top=pose.top, view=view, stride=pose.stride, head_r=0.07 * ph, y_sh=y_sh,
                  y_hip=y_sh + person.torso * ph, y_foot=pose.top + ph - 0.03 * ph, tw=tw, hip_w=hip_w,
                  leg_w=hip_w * (0.58 if profile else 0.48), arm_w=0.075 * ph, bag_at=_side_sign(person.bag_side, view))


def draw_figure(canvas: Image.Image, person: Person, pose: Pose) -> None:
    """Draw ``person`` in ``pose`` onto an RGBA ``canvas``, back to front: what is behind the body, legs, torso,
    arms, bags in front, head."""
    draw, f = ImageDraw.Draw(canvas), _frame(person, pose)
    _draw_behind(draw, person, f)
    _draw_legs(draw, person, f)
    _draw_torso(canvas, person, f)
    _draw_arms(draw, person, f)
    _draw_front_bags(draw, person, f)
    _draw_head(draw, person, f)


def _draw_behind(draw: ImageDraw.ImageDraw, person: Person, f: _Frame) -> None:
    """Long hair (front view) and a backpack (profile) behind the body."""
    ph, cx = f.ph, f.cx
    if person.long_hair and f.view == "front":
        draw.rectangle([cx - f.head_r * 1.1, f.top + f.head_r, cx + f.head_r * 1.1, f.y_sh + 0.06 * ph],
                       fill=person.hair)
    if person.bag == "backpack" and f.profile:
        back_x, depth = cx - f.facing * f.tw / 2, f.facing * 0.12 * ph
        draw.rectangle([min(back_x, back_x - depth), f.y_sh + 0.02 * ph, max(back_x, back_x - depth),
                        f.y_hip - 0.03 * ph], fill=person.bag_colour)


def _draw_legs(draw: ImageDraw.ImageDraw, person: Person, f: _Frame) -> None:
    """Legs (trousers or skin, shorts to the knee), shoes, a skirt."""
    ph, cx, y_hip, y_foot, hip_w = f.ph, f.cx, f.y_hip, f.y_foot, f.hip_w
    if f.profile:
        feet = [(cx + f.stride * 0.16 * ph, y_foot), (cx - f.stride * 0.16 * ph, y_foot)]
        hips = [(cx, y_hip), (cx, y_hip)]
    else:
        spread = 0.03 * ph * abs(f.stride)
        hips = [(cx - hip_w / 4, y_hip), (cx + hip_w / 4, y_hip)]
        feet = [(cx - hip_w / 4 - spread, y_foot), (cx + hip_w / 4 + spread, y_foot)]
    leg_colour = person.lower if person.lower_type == "trousers" else person.skin
    for hip, foot in zip(hips, feet):
        _limb(draw, hip, foot, f.leg_w, leg_colour)
        if person.lower_type == "shorts":
            knee = (hip[0] + 0.45 * (foot[0] - hip[0]), hip[1] + 0.45 * (foot[1] - hip[1]))
            _limb(draw, hip, knee, f.leg_w * 1.1, person.lower)
        sx = 0.07 * ph if f.profile else 0.045 * ph
        x_shoe = foot[0] + (f.facing * 0.02 * ph if f.profile else 0.0)
        draw.ellipse([x_shoe - sx, foot[1] - 0.025 * ph, x_shoe + sx, foot[1] + 0.025 * ph], fill=person.shoes)
    if person.lower_type == "skirt":
        flare = 0.06 * ph
        draw.polygon([(cx - hip_w / 2, y_hip - 0.01 * ph), (cx + hip_w / 2, y_hip - 0.01 * ph),
                      (cx + hip_w / 2 + flare, y_hip + 0.2 * ph), (cx - hip_w / 2 - flare, y_hip + 0.2 * ph)],
                     fill=person.lower)


def _draw_torso(canvas: Image.Image, person: Person, f: _Frame) -> None:
    """The torso, filled with the person's pattern through a mask."""
    cx, tw = f.cx, f.tw
    torso = [(cx - tw / 2, f.y_sh), (cx + tw / 2, f.y_sh), (cx + f.hip_w / 2, f.y_hip), (cx - f.hip_w / 2, f.y_hip)]
    mask = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(mask).polygon(torso, fill=255)
    canvas.paste(_torso_fill(person, f.view, (cx - tw / 2, f.y_sh, cx + tw / 2, f.y_hip), f.ph, canvas.size), (0, 0),
                 mask)


def _draw_arms(draw: ImageDraw.ImageDraw, person: Person, f: _Frame) -> None:
    """Arms: front / back at both sides; in profile one arm swinging against the near leg."""
    ph, cx, tw, arm_w, hand_y = f.ph, f.cx, f.tw, f.arm_w, f.hand_y
    if f.profile:
        arms = [((cx, f.y_sh + 0.02 * ph), (cx - f.stride * 0.1 * ph, hand_y))]
    else:
        arms = [((cx + s * (tw / 2 + arm_w / 2 - 2), f.y_sh + 0.02 * ph), (cx + s * (tw / 2 + arm_w * 0.8), hand_y))
                for s in (-1, 1)]
    for shoulder, hand in arms:
        elbow = ((shoulder[0] + hand[0]) / 2, (shoulder[1] + hand[1]) / 2)
        _limb(draw, shoulder, hand, arm_w, person.skin if person.short_sleeves else person.upper)
        if person.short_sleeves:
            _limb(draw, shoulder, elbow, arm_w * 1.15, person.upper)
        draw.ellipse([hand[0] - arm_w / 2, hand[1] - arm_w / 2, hand[0] + arm_w / 2, hand[1] + arm_w / 2],
                     fill=person.skin)


def _draw_front_bags(draw: ImageDraw.ImageDraw, person: Person, f: _Frame) -> None:
    """A backpack seen from the back, its straps from the front, a shoulder bag or a handbag on the near side."""
    ph, cx, tw, y_sh, bag_at = f.ph, f.cx, f.tw, f.y_sh, f.bag_at
    if person.bag == "backpack" and f.view == "back":
        draw.rounded_rectangle([cx - tw * 0.36, y_sh + 0.02 * ph, cx + tw * 0.36, f.y_hip - 0.04 * ph],
                               radius=0.02 * ph, fill=person.bag_colour)
    elif person.bag == "backpack" and f.view == "front":
        for s in (-1, 1):
            draw.rectangle([cx + s * tw * 0.3 - 0.012 * ph, y_sh, cx + s * tw * 0.3 + 0.012 * ph, y_sh + 0.16 * ph],
                           fill=person.bag_colour)
    elif person.bag in ("shoulder", "handbag") and bag_at != 2:
        x_bag = cx if bag_at == 0 else cx + bag_at * (tw / 2 + f.arm_w * 0.9)
        if person.bag == "shoulder":
            y_bag, w_bag, h_bag = f.y_hip - 0.02 * ph, 0.07 * ph, 0.1 * ph
            draw.line([(cx - (bag_at or f.facing) * tw * 0.35, y_sh), (x_bag, y_bag)], fill=person.bag_colour,
                      width=max(1, int(0.018 * ph)))
        else:
            y_bag, w_bag, h_bag = f.hand_y + 0.07 * ph, 0.06 * ph, 0.08 * ph
        draw.rectangle([x_bag - w_bag / 2, y_bag, x_bag + w_bag / 2, y_bag + h_bag], fill=person.bag_colour)


def _draw_head(draw: ImageDraw.ImageDraw, person: Person, f: _Frame) -> None:
    """The head: face from the front, hair from behind, half and half in profile; long hair, a hat."""
    ph, cx, top, head_r, view, facing = f.ph, f.cx, f.top, f.head_r, f.view, f.facing
    head = [cx - head_r, top, cx + head_r, top + 2 * head_r]
    draw.ellipse(head, fill=person.hair if view == "back" else person.skin)
    if view == "front":
        draw.pieslice(head, 180, 360, fill=person.hair)
    elif f.profile:
        draw.pieslice(head, 90 if facing > 0 else -90, 270 if facing > 0 else 90, fill=person.hair)
        draw.pieslice(head, 180, 360, fill=person.hair)
    if person.long_hair and view != "front":
        x_from = cx - head_r if view == "back" else cx - facing * head_r
        x_to = cx + head_r if view == "back" else cx
        draw.rectangle([min(x_from, x_to), top + head_r, max(x_from, x_to), f.y_sh + 0.08 * ph], fill=person.hair)
    if person.hat is not None:
        draw.chord([cx - head_r * 1.05, top - 0.01 * ph, cx + head_r * 1.05, top + 1.4 * head_r], 180, 360,
                   fill=person.hat)
        if f.profile:
            draw.rectangle([cx + min(0, facing) * head_r * 1.8, top + 0.6 * head_r,
                            cx + max(0, facing) * head_r * 1.8, top + 0.75 * head_r], fill=person.hat)


def _occlude(canvas: Image.Image, rng: np.random.Generator, camera: Camera) -> None:
    """A pole, a barrier across the legs, or a passer-by at one side of the box."""
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)
    kind = rng.integers(3)
    colour = _shade(rng, camera.scene_colours[int(rng.integers(len(camera.scene_colours)))], 25) + (255,)
    if kind == 0:
        x, w = rng.uniform(0, width), rng.uniform(0.08, 0.2) * width
        draw.rectangle([x - w / 2, 0, x + w / 2, height], fill=colour)
    elif kind == 1:
        draw.rectangle([0, height * rng.uniform(0.6, 0.8), width, height], fill=colour)
    else:
        passer = draw_person(rng)
        side = -1 if rng.random() < 0.5 else 1
        draw_figure(canvas, passer, Pose(VIEWS[rng.integers(4)], float(rng.uniform(-1, 1)),
                                         width / 2 + side * rng.uniform(0.55, 0.75) * width,
                                         height * 0.06, height * 0.9))


def _apply_camera(image: Image.Image, camera: Camera, rng: np.random.Generator) -> Image.Image:
    """White balance, exposure, light gradient, saturation, contrast, gamma, resolution, blur, noise."""
    x = np.asarray(image, dtype=np.float32) / 255.0
    width = x.shape[1]
    ramp = 1.0 + camera.light * (np.arange(width, dtype=np.float32) / max(width - 1, 1) - 0.5)
    x = x * ramp[None, :, None] * np.asarray(camera.gains, np.float32) * camera.exposure * np.exp(rng.normal(0, 0.07))
    grey = x.mean(axis=2, keepdims=True)
    x = grey + camera.saturation * (x - grey)
    x = np.clip(0.5 + camera.contrast * (x - 0.5), 0.0, 1.0) ** camera.gamma
    out = Image.fromarray((x * 255.0 + 0.5).astype(np.uint8))
    if camera.resolution < 1.0:
        small = (max(1, round(out.width * camera.resolution)), max(1, round(out.height * camera.resolution)))
        out = out.resize(small, Image.Resampling.BILINEAR).resize(image.size, Image.Resampling.BILINEAR)
    if camera.blur > 0.15:
        out = out.filter(ImageFilter.GaussianBlur(camera.blur))
    noisy = np.asarray(out, dtype=np.float32) + rng.normal(0.0, camera.noise, (out.height, out.width, 3))
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))


def render(person: Person | None, camera: Camera, scene: Image.Image, rng: np.random.Generator,
           height: int, width: int, junk: bool = False) -> Image.Image:
    """One ``height x width`` RGB image of ``person`` (``None``: background only) seen by ``camera``.

    ``junk`` frames the person badly (mostly outside the box), as a detector's junk boxes.
    ``scene`` is the camera's background texture at twice the output size.
    """
    h2, w2 = 2 * height, 2 * width
    x0 = int(rng.integers(0, scene.width - w2 + 1))
    canvas = scene.crop((x0, 0, x0 + w2, h2)).convert("RGBA")
    if rng.random() < 0.5:
        _clutter(canvas, rng)
    if person is not None:
        body = camera.scale * person.height * float(np.exp(rng.normal(0.0, 0.04))) * h2
        cx = w2 / 2 + rng.normal(0.0, 0.05) * w2
        top = (h2 - body) / 2 + rng.normal(0.0, 0.025) * h2
        if junk:
            cx += (1 if rng.random() < 0.5 else -1) * rng.uniform(0.5, 0.8) * w2
            top += rng.uniform(-0.4, 0.4) * h2
        view = VIEWS[rng.choice(4, p=camera.views)]
        draw_figure(canvas, person, Pose(view, float(rng.uniform(-1, 1)), cx, top, body))
    if rng.random() < camera.occlusion:
        _occlude(canvas, rng, camera)
    image = canvas.convert("RGB").resize((width, height), Image.Resampling.BOX)
    return _apply_camera(image, camera, rng)
