"""A chest and upper-abdomen phantom in Hounsfield units: the anatomy behind the synthetic CT series.

Coordinates are DICOM patient coordinates (LPS) in millimetres: x towards the patient's left,
y towards the back, z towards the head. `depth` is millimetres below the first (top) slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AIR, FAT, SOFT_TISSUE, MUSCLE, BLOOD, LIVER, LUNG = -1000.0, -100.0, 40.0, 50.0, 45.0, 60.0, -850.0
CORTICAL_BONE, CANCELLOUS_BONE, DISC = 900.0, 250.0, 80.0
NODULE = 30.0


@dataclass(frozen=True)
class Nodule:
    """A solid pulmonary nodule: centre (x, y in mm; depth below the top slice) and diameter."""

    x: float
    y: float
    depth: float
    diameter: float


# Posterior right lower lobe, above the right hemidiaphragm: what the dictation describes.
RIGHT_LOWER_LOBE_NODULE = Nodule(x=-88.0, y=40.0, depth=185.0, diameter=20.0)

_BODY_CENTRE_Y = 5.0
_CAVITY_DEPTH = 26.0  # skin + subcutaneous fat + chest wall muscle + ribs, in mm
_RIGHT_DOME, _LEFT_DOME = 205.0, 222.0  # depth of each hemidiaphragm's top
_HILA = ((-38.0, 5.0, 105.0), (38.0, 5.0, 100.0))  # where the pulmonary vessels fan out from


@dataclass(frozen=True)
class Vessel:
    start: tuple[float, float, float]  # (x, y, depth) at the hilum
    end: tuple[float, float, float]
    radius: float


def pulmonary_vessels(seed: int) -> tuple[Vessel, ...]:
    """Straight vessel segments from each hilum out towards the periphery, tapering by generation."""
    rng = np.random.default_rng([seed, 17])
    vessels = []
    for side, (hx, hy, hd) in zip((-1.0, 1.0), _HILA, strict=True):
        for _ in range(34):
            end = (side * rng.uniform(45, 120), rng.uniform(-70, 95), hd + rng.uniform(-85, 130))
            vessels.append(Vessel((hx, hy, hd), end, rng.uniform(2.0, 4.5)))
            # A branch from part-way along, thinner, bending off in its own direction.
            fraction = rng.uniform(0.3, 0.6)
            jx, jy, jd = (a + fraction * (b - a) for a, b in zip((hx, hy, hd), end, strict=True))
            twig = (jx + side * rng.uniform(10, 40), jy + rng.uniform(-40, 40), jd + rng.uniform(-40, 40))
            vessels.append(Vessel((jx, jy, jd), twig, rng.uniform(1.0, 2.0)))
    return tuple(vessels)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _ramp(value: float, start: float, end: float) -> float:
    return float(np.clip((value - start) / (end - start), 0.0, 1.0))


def _draw_vessels(hu: np.ndarray, lung: np.ndarray, x: np.ndarray, y: np.ndarray, depth: float,
                  thickness: float, vessels: tuple[Vessel, ...]) -> None:
    """Paint the part of each vessel inside this slice's slab, as a capsule, where there is lung."""
    spacing = float(x[0, 1] - x[0, 0])
    for vessel in vessels:
        (x0, y0, d0), (x1, y1, d1) = vessel.start, vessel.end
        # Parameter range of the segment whose depth lies within the slab.
        if abs(d1 - d0) < 1e-6:
            if abs(d0 - depth) > thickness / 2:
                continue
            t_a, t_b = 0.0, 1.0
        else:
            top, bottom = (depth - thickness / 2 - d0) / (d1 - d0), (depth + thickness / 2 - d0) / (d1 - d0)
            t_a, t_b = max(min(top, bottom), 0.0), min(max(top, bottom), 1.0)
            if t_a > t_b:
                continue
        ax, ay = x0 + t_a * (x1 - x0), y0 + t_a * (y1 - y0)
        bx, by = x0 + t_b * (x1 - x0), y0 + t_b * (y1 - y0)
        radius = vessel.radius * (1.0 - 0.6 * (t_a + t_b) / 2)
        # Work only in the capsule's bounding box: a full-slice distance map per vessel is slow.
        col0 = max(int((min(ax, bx) - radius - x[0, 0]) / spacing) - 1, 0)
        col1 = min(int((max(ax, bx) + radius - x[0, 0]) / spacing) + 2, x.shape[1])
        row0 = max(int((min(ay, by) - radius - y[0, 0]) / spacing) - 1, 0)
        row1 = min(int((max(ay, by) + radius - y[0, 0]) / spacing) + 2, y.shape[0])
        if col0 >= col1 or row0 >= row1:
            continue
        px, py = x[row0:row1, col0:col1], y[row0:row1, col0:col1]
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / length2, 0, 1) if length2 > 0 else 0.0
        inside = np.hypot(px - (ax + t * dx), py - (ay + t * dy)) <= radius
        window = hu[row0:row1, col0:col1]
        window[inside & lung[row0:row1, col0:col1]] = BLOOD


def axial_slice(x: np.ndarray, y: np.ndarray, depth: float, *, thickness: float,
                vessels: tuple[Vessel, ...], nodule: Nodule = RIGHT_LOWER_LOBE_NODULE) -> np.ndarray:
    """Noise-free HU of the slab `thickness` mm thick centred `depth` mm below the top slice."""
    hu = np.full(x.shape, AIR, dtype=np.float32)
    growth = _ramp(depth, 0, 110)  # the thorax widens from the thoracic inlet down
    half_width, half_height = 145.0 + 25.0 * growth, 105.0 + 15.0 * growth
    yb = y - _BODY_CENTRE_Y
    r = np.hypot(x, yb)
    theta = np.arctan2(yb, x)
    edge = 1.0 / np.sqrt((np.cos(theta) / half_width) ** 2 + (np.sin(theta) / half_height) ** 2)
    inward = edge - r  # mm inside the skin along the ray from the body centre
    body = inward >= 0
    fat_thickness = 10.0 + 6.0 * np.clip(np.sin(theta), 0, 1)  # more subcutaneous fat at the back
    hu[body] = SOFT_TISSUE
    hu[body & (inward > 2.0) & (inward <= 2.0 + fat_thickness)] = FAT
    hu[body & (inward > 2.0 + fat_thickness) & (inward <= 12.0 + fat_thickness)] = MUSCLE
    cavity = inward > _CAVITY_DEPTH

    # Mediastinum: central soft tissue, heart (with its rim of epicardial fat), great vessels, spine.
    spine_body = _ellipse(x, y, 0, 62, 19, 17)
    canal = _ellipse(x, y, 0, 90, 8, 8)
    posterior_elements = _ellipse(x, y, 0, 103, 20, 6) | _ellipse(x, y, 0, 113, 4, 9)
    heart_extent = np.sin(np.pi * _ramp(depth, 115, _RIGHT_DOME + 8))
    has_heart = heart_extent > 0.05
    size = max(heart_extent, 0.05)  # never a zero-sized ellipse: that would divide by zero
    heart = _ellipse(x, y, 22, -28, 68 * size, 52 * size) & has_heart
    heart_fat = _ellipse(x, y, 22, -28, 3 + 68 * size, 3 + 52 * size) & ~heart & has_heart
    aorta = np.zeros_like(body)
    if depth > 62:
        aorta |= _ellipse(x, y, 24, 48, 13, 13)  # descending
    if 72 <= depth <= 135:
        aorta |= _ellipse(x, y, 6, -32, 16, 16)  # ascending
    if 55 <= depth < 72:  # the arch, running from front right to back left
        t = np.clip(((x - 6) * 18 + (y + 32) * 80) / (18**2 + 80**2), 0, 1)
        aorta |= np.hypot(x - (6 + 18 * t), y - (-32 + 80 * t)) <= 14
    thoracic = depth < _LEFT_DOME + 5
    mediastinum = (np.abs(x - 4) < 26 + 8 * heart_extent) & (y > -half_height + 10) & (y < 75) & thoracic
    mediastinum |= heart_fat | heart | aorta | spine_body | canal | posterior_elements
    mediastinum |= _ellipse(x, y, 0, 60, 46, 34)  # paravertebral soft tissue and crura

    # Lungs: above each hemidiaphragm, whose dome is highest centrally and dips to the recesses.
    apex = np.sqrt(_ramp(depth, 12, 95))
    right_dome = _RIGHT_DOME + 55 * (((x + 70) / 75) ** 2 + ((y - 5) / 95) ** 2)
    left_dome = _LEFT_DOME + 55 * (((x - 70) / 75) ** 2 + ((y - 5) / 95) ** 2)
    right = _ellipse(x, y, -78, 12, 8 + 60 * apex, 8 + 88 * apex) & (depth < right_dome)
    left = _ellipse(x, y, 80, 12, 8 + 58 * apex, 8 + 88 * apex) & (depth < left_dome)
    lung = (right | left) & cavity & ~mediastinum
    # Dependent (posterior) lung is a little denser, as in any supine patient.
    hu[lung] = (LUNG + 0.35 * (y[lung] - 12)).astype(np.float32)
    _draw_vessels(hu, lung, x, y, depth, thickness, vessels)
    if abs(depth - nodule.depth) < nodule.diameter / 2:
        radius = np.sqrt((nodule.diameter / 2) ** 2 - (depth - nodule.depth) ** 2)
        hu[_ellipse(x, y, nodule.x, nodule.y, radius, radius) & cavity] = NODULE

    # Mediastinal fat outlines the heart, great vessels, oesophagus and airway, as on any chest CT.
    hu[mediastinum & cavity & ~spine_body & ~canal & ~posterior_elements & (y < 45) & thoracic] = FAT + 30
    hu[heart_fat & cavity] = FAT
    hu[heart & cavity] = BLOOD - 5.0
    hu[aorta] = BLOOD
    hu[_ellipse(x, y, -2, 34, 8, 6)] = SOFT_TISSUE  # oesophagus
    if depth < 92:
        hu[_ellipse(x, y, 0, 14, 9, 8)] = AIR + 20  # trachea
    elif depth < 115:  # main bronchi, diverging below the carina
        spread = 10 + 0.8 * (depth - 92)
        hu[_ellipse(x, y, -spread, 16, 6, 5) | _ellipse(x, y, spread, 16, 5.5, 5)] = AIR + 20

    # Upper abdomen under the domes: liver on the right, stomach (with its gas) and spleen on the left.
    abdomen = cavity & ~mediastinum & ~aorta
    below_right = (depth >= right_dome) & (x < 35) & abdomen
    below_left = (depth >= left_dome) & (x >= 35) & abdomen
    hu[below_right] = LIVER
    hu[below_left] = 30.0
    hu[below_left & _ellipse(x, y, 95, 55, 40, 45)] = 48.0  # spleen
    hu[below_left & _ellipse(x, y, 70, -45, 35, 22) & (depth < left_dome + 60)] = AIR + 100  # gastric air

    # Skeleton: vertebrae with discs between them, ribs in the chest wall, sternum in front.
    vertebra = (depth % 30.0) < 25.0
    if vertebra:
        hu[spine_body] = CANCELLOUS_BONE
        hu[spine_body & ~_ellipse(x, y, 0, 62, 16.5, 14.5)] = CORTICAL_BONE
        hu[posterior_elements] = CORTICAL_BONE - 150
    else:
        hu[spine_body] = DISC
    hu[canal] = 10.0
    # Each rib slopes down from the spine to the front; phase says where along its 24 mm pitch
    # this slice crosses it.
    posterior_angle = np.arccos(np.clip(np.sin(theta), -1, 1))  # 0 at the back, pi in front
    phase = (depth - 18.0 - 110.0 * np.sin(posterior_angle / 2) ** 2) % 24.0
    shell = (inward > _CAVITY_DEPTH - 11) & (inward <= _CAVITY_DEPTH - 1)
    rib = shell & (phase < 10.0) & (np.abs(x) > 22) & (depth < 250)
    hu[rib] = CANCELLOUS_BONE + 50
    rib_edge = (phase < 1.8) | (phase > 8.2) | (inward < _CAVITY_DEPTH - 9) | (inward > _CAVITY_DEPTH - 3)
    rib_cortex = rib & rib_edge
    hu[rib_cortex] = CORTICAL_BONE - 100
    # Scapulae: bony plates in the muscles of the upper back, behind the ribs.
    in_upper_back = (depth < 150) & (posterior_angle > 0.45) & (posterior_angle < 1.2)
    scapula = in_upper_back & (np.abs(inward - 9.0 - fat_thickness) < 2.0)
    hu[scapula] = CORTICAL_BONE - 200
    if 25 <= depth <= 200:
        sternum = _ellipse(x, y, 0, _BODY_CENTRE_Y - half_height + 20, 17, 7)
        hu[sternum] = CORTICAL_BONE - 100
        hu[_ellipse(x, y, 0, _BODY_CENTRE_Y - half_height + 20, 14, 4.5)] = CANCELLOUS_BONE
    return hu
