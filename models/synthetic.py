"""Procedural action clips, deterministic from a numpy Generator.

Used by the synthetic training-set writer (models/synthetic_set.py) and by the
live SyntheticCamera. Everything is numpy + OpenCV drawing on small frames.

Design notes:
- Three reversed pairs: the second class of each pair is literally the first
  class's frame sequence played backwards (same rng draws), so single frames
  cannot tell the pair apart and only the temporal order can.
- What changes over time inside a pair is the *amount* of visible stuff (area of
  a shape, contrast of a texture, number of blobs). That survives ResNet's global
  average pooling, unlike rotation direction or left/right position.
- Each change is linear over the whole clip whatever its length, so any window of
  consecutive frames shows a monotone change.
- Objects stay inside a central square "stage" (70% of the short side) because a
  center crop of ~75% of the short side is applied downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

ACTIVITIES: tuple[str, ...] = (
    "GrowShape",
    "ShrinkShape",
    "FadeIn",
    "FadeOut",
    "Assemble",
    "Disperse",
    "BounceBall",
    "SwingStripes",
)

# (forward, reversed): the reversed class shows the forward class's frames in opposite order.
REVERSED_PAIRS: tuple[tuple[str, str], ...] = (
    ("GrowShape", "ShrinkShape"),
    ("FadeIn", "FadeOut"),
    ("Assemble", "Disperse"),
)

_JITTER_PAD = 2  # canvas margin in pixels, so a jittered crop never leaves the background
_STAGE_FRACTION = 0.70  # side of the central square holding the objects, as a fraction of the short side
_SUBPIXEL_SHIFT = 4  # OpenCV fixed-point bits: smooth sub-pixel motion and growth
_SUBPIXEL_SCALE = 1 << _SUBPIXEL_SHIFT
_MIN_SIDE = 32


@dataclass
class _Scene:
    """Per-clip random backdrop, camera jitter and the output array being filled."""

    width: int
    height: int
    background: np.ndarray  # uint8 [height + 2*pad, width + 2*pad, 3], canvas coordinates
    background_colour: np.ndarray  # float [3], mean BGR of the background
    offsets: np.ndarray  # int [n_frames, 2], camera (dx, dy) per frame
    clip: np.ndarray  # uint8 [n_frames, height, width, 3]

    @property
    def n_frames(self) -> int:
        return self.clip.shape[0]

    @property
    def stage_centre(self) -> tuple[float, float]:
        return (_JITTER_PAD + self.width / 2.0, _JITTER_PAD + self.height / 2.0)

    @property
    def stage_size(self) -> float:
        return _STAGE_FRACTION * min(self.width, self.height)

    def new_canvas(self) -> np.ndarray:
        return self.background.copy()

    def capture(self, t: int, canvas: np.ndarray) -> None:
        """Store frame t as the canvas seen through the jittered camera."""
        dx, dy = self.offsets[t]
        top, left = _JITTER_PAD + dy, _JITTER_PAD + dx
        self.clip[t] = canvas[top : top + self.height, left : left + self.width]


def render_clip(
    activity: str, n_frames: int, rng: np.random.Generator, width: int = 160, height: int = 120
) -> np.ndarray:
    """Render one clip of `activity` as uint8 BGR frames [n_frames, height, width, 3].

    Consumes draws from `rng`, so the same generator state always gives the same clip. Raises ValueError
    for an unknown activity, n_frames < 1 or frames smaller than 32x32.
    """
    _check_activity(activity)
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    _check_frame_size(width, height)
    forward = _FORWARD_OF_REVERSED.get(activity)
    if forward is not None:
        return np.ascontiguousarray(render_clip(forward, n_frames, rng, width, height)[::-1])
    scene = _new_scene(rng, n_frames, width, height)
    _FORWARD_RENDERERS[activity](scene, rng)
    _add_noise(scene.clip, rng)
    return scene.clip


class SyntheticCamera:
    """Endless synthetic video: a new random activity segment every `segment_frames` frames."""

    def __init__(
        self,
        seed: int = 0,
        width: int = 160,
        height: int = 120,
        segment_frames: int = 96,
        activities: tuple[str, ...] | None = None,
    ) -> None:
        self._activities = tuple(ACTIVITIES if activities is None else activities)
        if not self._activities:
            raise ValueError("activities must not be empty")
        for activity in self._activities:
            _check_activity(activity)
        if segment_frames < 1:
            raise ValueError(f"segment_frames must be at least 1, got {segment_frames}")
        _check_frame_size(width, height)
        self.width = width
        self.height = height
        self.segment_frames = segment_frames
        self._rng = np.random.default_rng(seed)
        self._frame_index = 0
        self._segment: np.ndarray | None = None
        self._segment_start = 0
        self._activity: str | None = None

    def next_frame(self) -> tuple[np.ndarray, str, int]:
        """Return (frame BGR uint8 [H, W, 3], ground-truth activity, frame index where its segment began).

        Each returned frame is its own memory (never reused by the camera), so callers may draw on it.
        """
        if self._segment is None or self._frame_index - self._segment_start >= self.segment_frames:
            self._start_segment()
        assert self._segment is not None and self._activity is not None
        frame = self._segment[self._frame_index - self._segment_start]
        self._frame_index += 1
        return frame, self._activity, self._segment_start

    def _start_segment(self) -> None:
        self._activity = self._pick_next_activity()
        self._segment_start = self._frame_index
        self._segment = render_clip(self._activity, self.segment_frames, self._rng, self.width, self.height)

    def _pick_next_activity(self) -> str:
        # A different activity each segment; with a single allowed activity it simply repeats.
        choices = [a for a in self._activities if a != self._activity] or list(self._activities)
        return choices[int(self._rng.integers(len(choices)))]


# ---------------------------------------------------------------------------
# Shared scene pieces: background, jitter, noise, colours, timing.


def _check_activity(activity: str) -> None:
    if activity not in ACTIVITIES:
        raise ValueError(f"unknown activity {activity!r}; valid activities: {', '.join(ACTIVITIES)}")


def _check_frame_size(width: int, height: int) -> None:
    if width < _MIN_SIDE or height < _MIN_SIDE:
        raise ValueError(f"frames must be at least {_MIN_SIDE}x{_MIN_SIDE}, got {width}x{height}")


def _new_scene(rng: np.random.Generator, n_frames: int, width: int, height: int) -> _Scene:
    background = _random_background(rng, width + 2 * _JITTER_PAD, height + 2 * _JITTER_PAD)
    return _Scene(
        width=width,
        height=height,
        background=background,
        background_colour=background.reshape(-1, 3).mean(axis=0),
        offsets=_camera_jitter(rng, n_frames),
        clip=np.empty((n_frames, height, width, 3), dtype=np.uint8),
    )


def _random_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth linear gradient between two nearby random colours plus low-frequency texture."""
    base = rng.uniform(30, 225, size=3)
    # Keep the gradient moderate so one contrasting object colour works everywhere in the frame.
    end = np.clip(base + rng.uniform(-60, 60, size=3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    gradient = base + ramp[..., None] * (end - base)

    grid = rng.uniform(-1, 1, size=(int(rng.integers(3, 7)), int(rng.integers(4, 9)), 3)).astype(np.float32)
    texture = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    amplitude = rng.uniform(8, 28)
    return np.clip(gradient + amplitude * texture, 0, 255).astype(np.uint8)


def _camera_jitter(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    amplitude = int(rng.integers(1, _JITTER_PAD + 1))
    return rng.integers(-amplitude, amplitude + 1, size=(n_frames, 2))


def _add_noise(clip: np.ndarray, rng: np.random.Generator) -> None:
    """Per-pixel uniform noise, in place (uniform integers are ~6x cheaper than Gaussian draws)."""
    amplitude = int(rng.integers(2, 7))
    noisy = rng.integers(-amplitude, amplitude + 1, size=clip.shape, dtype=np.int16)
    noisy += clip
    np.clip(noisy, 0, 255, out=noisy)
    clip[...] = noisy


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> tuple[int, int, int]:
    """A random colour guaranteed to stand out from `against` (mean background colour)."""
    colour = rng.integers(0, 256, size=3)
    if np.linalg.norm(colour - against) < 110:
        colour = (colour + 128) % 256  # moves every channel by 128: far from anything close to the original
    return tuple(int(c) for c in colour)  # type: ignore[return-value]


def _progress(n_frames: int) -> np.ndarray:
    """0 at the first frame to 1 at the last, so changes span the whole clip whatever its length."""
    return np.linspace(0.0, 1.0, n_frames)


def _fixed_point(points: np.ndarray) -> np.ndarray:
    return np.round(points * _SUBPIXEL_SCALE).astype(np.int32)


def _point(xy: tuple[float, float] | np.ndarray) -> tuple[int, int]:
    return (int(round(xy[0] * _SUBPIXEL_SCALE)), int(round(xy[1] * _SUBPIXEL_SCALE)))


def _fill_circle(canvas: np.ndarray, centre: tuple[float, float], radius: float, colour: tuple[int, ...]) -> None:
    cv2.circle(
        canvas, _point(centre), int(round(radius * _SUBPIXEL_SCALE)), colour, -1, cv2.LINE_AA, _SUBPIXEL_SHIFT
    )


# ---------------------------------------------------------------------------
# Forward renderers. Each draws its own random parameters from rng and fills scene.clip.


def _render_grow_shape(scene: _Scene, rng: np.random.Generator) -> None:
    """A filled polygon whose area grows linearly; its extent goes from ~10-18% to ~85-97% of the stage."""
    colour = _contrasting_colour(rng, scene.background_colour)
    outline = _random_unit_polygon(rng)
    start_size = rng.uniform(0.10, 0.18) * scene.stage_size
    end_size = rng.uniform(0.85, 0.97) * scene.stage_size
    slack = (scene.stage_size - end_size) / 2  # room to move the centre while the final shape still fits
    cx, cy = np.array(scene.stage_centre) + rng.uniform(-slack, slack, size=2)
    # Linear in area, i.e. in the amount of pixels that pooling sees.
    sizes = np.sqrt(start_size**2 + _progress(scene.n_frames) * (end_size**2 - start_size**2))
    canvas = scene.new_canvas()
    for t, size in enumerate(sizes):
        np.copyto(canvas, scene.background)
        vertices = _fixed_point(outline * (size / 2) + (cx, cy))
        cv2.fillPoly(canvas, [vertices], colour, cv2.LINE_AA, _SUBPIXEL_SHIFT)
        scene.capture(t, canvas)


def _random_unit_polygon(rng: np.random.Generator) -> np.ndarray:
    """Vertices [k, 2] of a randomly rotated triangle/square/pentagon/hexagon/star.

    Normalised so its bounding box is centred and its longer side spans [-1, 1]: `size` then means extent on screen.
    """
    corners = int(rng.choice([3, 4, 5, 6, 10]))
    rotation = rng.uniform(0, 2 * np.pi)
    angles = rotation + np.arange(corners) * (2 * np.pi / corners)
    radii = np.ones(corners)
    if corners == 10:  # five-pointed star: alternate outer and inner vertices
        radii[1::2] = 0.45
    vertices = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    return (vertices - (low + high) / 2) / (np.max(high - low) / 2)


def _render_fade_in(scene: _Scene, rng: np.random.Generator) -> None:
    """A striped or checkered object whose contrast against the background rises linearly from 0 to full."""
    size = int(round(rng.uniform(0.6, 0.9) * scene.stage_size))
    slack = (scene.stage_size - size) / 2
    cx, cy = np.array(scene.stage_centre) + rng.uniform(-slack, slack, size=2)
    left, top = int(round(cx - size / 2)), int(round(cy - size / 2))
    region = (slice(top, top + size), slice(left, left + size))

    texture = _random_texture(rng, size, scene.background_colour)
    mask = _random_object_mask(rng, size)
    backdrop = scene.background[region].astype(np.float32)
    towards_object = (texture - backdrop) * mask

    canvas = scene.new_canvas()
    for t, alpha in enumerate(_progress(scene.n_frames)):
        canvas[region] = backdrop + np.float32(alpha) * towards_object
        scene.capture(t, canvas)


def _random_texture(rng: np.random.Generator, size: int, background_colour: np.ndarray) -> np.ndarray:
    """float32 [size, size, 3]: two contrasting colours in stripes or a checkerboard at a random angle."""
    first = np.array(_contrasting_colour(rng, background_colour), dtype=np.float32)
    second = np.array(_contrasting_colour(rng, first), dtype=np.float32)
    period = rng.uniform(5, 12)
    angle = rng.uniform(0, np.pi)
    checkered = bool(rng.integers(2))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (xs * np.cos(angle) + ys * np.sin(angle)) / period
    v = (-xs * np.sin(angle) + ys * np.cos(angle)) / period
    pattern = np.floor(u).astype(np.int32)
    if checkered:
        pattern += np.floor(v).astype(np.int32)
    use_first = (pattern % 2 == 0)[..., None]
    return np.where(use_first, first, second).astype(np.float32)


def _random_object_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 1] in 0..1: an antialiased ellipse or rounded-off rectangle filling the box."""
    mask = np.zeros((size, size), dtype=np.uint8)
    half = (size - 1) / 2
    if rng.integers(2):
        cv2.ellipse(mask, _point((half, half)), _point((half, half)), 0, 0, 360, 255, -1, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    else:
        inset = int(rng.integers(0, max(1, size // 8)))
        mask[inset : size - inset, inset : size - inset] = 255
    return (mask.astype(np.float32) / 255.0)[..., None]


def _render_assemble(scene: _Scene, rng: np.random.Generator) -> None:
    """Blobs appear one at a time, at a constant rate over the clip, until 24-40 are on stage."""
    count = int(rng.integers(24, 41))
    palette = [_contrasting_colour(rng, scene.background_colour) for _ in range(int(rng.integers(1, 4)))]
    radii = rng.uniform(0.045, 0.085, size=count) * scene.stage_size
    room = (scene.stage_size / 2 - radii)[:, None]
    centres = np.array(scene.stage_centre) + rng.uniform(-1, 1, size=(count, 2)) * room
    colour_choices = rng.integers(len(palette), size=count)
    visible = np.round(1 + _progress(scene.n_frames) * (count - 1)).astype(int)

    # Blobs only accumulate, so draw each once onto a persistent canvas.
    canvas = scene.new_canvas()
    drawn = 0
    for t, target in enumerate(visible):
        for i in range(drawn, target):
            _fill_circle(canvas, tuple(centres[i]), radii[i], palette[colour_choices[i]])
        drawn = target
        scene.capture(t, canvas)


def _render_bounce_ball(scene: _Scene, rng: np.random.Generator) -> None:
    """A shaded ball bouncing along a floor line, drifting sideways between the stage walls."""
    stage = scene.stage_size
    cx, cy = scene.stage_centre
    radius = rng.uniform(0.07, 0.12) * stage
    ball_colour = _contrasting_colour(rng, scene.background_colour)
    highlight = tuple(int(c + (255 - c) * 0.6) for c in ball_colour)
    floor_colour = _contrasting_colour(rng, scene.background_colour)
    floor_y = cy + stage / 2 - 4  # keeps the 3-pixel line and its antialiasing inside the stage
    bounce_height = rng.uniform(0.45, 0.8) * (stage - 2 * radius)
    bounce_period = rng.uniform(14, 30)
    bounce_phase = rng.uniform(0, 1)
    left_wall, right_wall = cx - stage / 2 + radius, cx + stage / 2 - radius
    x_start = rng.uniform(left_wall, right_wall)
    x_speed = rng.uniform(0.006, 0.018) * stage * rng.choice([-1.0, 1.0])

    backdrop = scene.new_canvas()
    floor_ends = np.array([[cx - stage / 2 + 2, floor_y], [cx + stage / 2 - 2, floor_y]])  # minus the line caps
    cv2.line(backdrop, _point(floor_ends[0]), _point(floor_ends[1]), floor_colour, 3, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    canvas = backdrop.copy()
    for t in range(scene.n_frames):
        np.copyto(canvas, backdrop)
        x = _bounce_between(x_start + x_speed * t, left_wall, right_wall)
        y = floor_y - 1 - radius - bounce_height * abs(np.sin(np.pi * (t / bounce_period + bounce_phase)))
        _fill_circle(canvas, (x, y), radius, ball_colour)
        _fill_circle(canvas, (x - 0.35 * radius, y - 0.35 * radius), 0.3 * radius, highlight)
        scene.capture(t, canvas)


def _bounce_between(x: float, low: float, high: float) -> float:
    """Reflect an unbounded coordinate back and forth inside [low, high] (triangle wave)."""
    span = high - low
    if span <= 0:
        return low
    phase = (x - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


def _render_swing_stripes(scene: _Scene, rng: np.random.Generator) -> None:
    """A bar with alternating coloured stripes swinging like a pendulum from a pivot at the top of the stage."""
    stage = scene.stage_size
    cx, cy = scene.stage_centre
    half_width = rng.uniform(0.05, 0.09) * stage
    pivot_radius = 1.3 * half_width
    pivot_shift = rng.uniform(-0.05, 0.05) * stage
    pivot = np.array([cx + pivot_shift, cy - stage / 2 + pivot_radius])
    amplitude = np.radians(rng.uniform(20, 45))
    # The bar must stay inside the stage at the extremes of the swing.
    sideways_room = stage / 2 - abs(pivot_shift) - half_width
    length = min(rng.uniform(0.6, 0.8) * stage, sideways_room / np.sin(amplitude))
    stripes = int(rng.integers(4, 9))
    first = _contrasting_colour(rng, scene.background_colour)
    second = _contrasting_colour(rng, np.array(first, dtype=float))
    period = rng.uniform(20, 40)
    phase = rng.uniform(0, 2 * np.pi)
    pivot_colour = _contrasting_colour(rng, scene.background_colour)

    fractions = np.linspace(0.0, 1.0, stripes + 1)
    canvas = scene.new_canvas()
    for t in range(scene.n_frames):
        np.copyto(canvas, scene.background)
        angle = amplitude * np.sin(2 * np.pi * t / period + phase)
        along = np.array([np.sin(angle), np.cos(angle)])  # angle 0 hangs straight down
        across = np.array([along[1], -along[0]]) * half_width
        for k in range(stripes):
            near, far = pivot + along * length * fractions[k], pivot + along * length * fractions[k + 1]
            quad = _fixed_point(np.stack([near - across, far - across, far + across, near + across]))
            cv2.fillConvexPoly(canvas, quad, first if k % 2 == 0 else second, cv2.LINE_AA, _SUBPIXEL_SHIFT)
        _fill_circle(canvas, tuple(pivot), pivot_radius, pivot_colour)
        scene.capture(t, canvas)


_FORWARD_RENDERERS: dict[str, Callable[[_Scene, np.random.Generator], None]] = {
    "GrowShape": _render_grow_shape,
    "FadeIn": _render_fade_in,
    "Assemble": _render_assemble,
    "BounceBall": _render_bounce_ball,
    "SwingStripes": _render_swing_stripes,
}
_FORWARD_OF_REVERSED: dict[str, str] = {backward: forward for forward, backward in REVERSED_PAIRS}

assert set(_FORWARD_RENDERERS) | set(_FORWARD_OF_REVERSED) == set(ACTIVITIES), "every activity needs a renderer"
assert all(forward in _FORWARD_RENDERERS for forward, _ in REVERSED_PAIRS)
