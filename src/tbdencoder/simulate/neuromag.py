"""A 306-channel Neuromag Vectorview-style sensor array as an `mne.Info`.

The 102 sensor locations take their channel names and 2-D positions from MNE's shipped
'Vectorview-all' layout and are mapped onto a spherical helmet: the layout's centre becomes the
vertex, the layout's outline (convex hull) the helmet rim at HELMET_RIM_DEG from the vertex, with
polar angle growing linearly in between. Device coordinates: x right, y anterior, z up, metres,
origin at the helmet's centre. Each location holds a magnetometer (MEGxxx1) and two orthogonal planar
gradiometers (MEGxxx2 along the azimuthal tangent, MEGxxx3 along the tangent toward the vertex).
"""

from __future__ import annotations

import functools

import mne
import numpy as np
from mne.io.constants import FIFF
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation

LAYOUT_NAME = "Vectorview-all"
HELMET_RADIUS_M = 0.12
HELMET_RIM_DEG = 105.0
STIM_CHANNEL = "STI101"
DEVICE_ORIGIN_IN_HEAD_M = (0.0, -0.01, 0.04)  # helmet centre in head coordinates before subject jitter
# The sds of the per-subject head translation (mm, per axis) and rotation (deg, about each axis) are settings,
# simulate.meg.head_shift_mm and head_rotation_deg (schema defaults 3 mm and 2 deg; 0 and 0 = the nominal head).
_DEV_HEAD_STREAM = 20  # RNG stream tag (simulate.scenes uses 1, simulate.fmri 0, 2, 3)


@functools.lru_cache(maxsize=1)
def sensor_geometry() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(306 channel names in layout order, (306, 3) positions in device metres, (306, 3, 3) rows ex, ey, ez)."""
    layout = mne.channels.read_layout(LAYOUT_NAME)
    names = tuple(name.replace(" ", "") for name in layout.names)
    if len(names) != 306 or any(not (n.startswith("MEG") and n[-1] in "123") for n in names):
        raise ValueError(f"layout {LAYOUT_NAME!r}: expected 306 channels named MEGxxx1/2/3, got {len(names)}")
    centres = layout.pos[:, :2] + layout.pos[:, 2:] / 2.0
    location = np.array([name[:-1] for name in names])
    _, group, counts = np.unique(location, return_inverse=True, return_counts=True)
    if counts.size != 102 or np.any(counts != 3):
        raise ValueError(f"layout {LAYOUT_NAME!r}: expected 102 locations of 3 channels each")
    sites = np.stack([centres[group == k].mean(axis=0) for k in range(counts.size)])
    offset = sites - sites.mean(axis=0)
    phi = np.arctan2(offset[:, 1], offset[:, 0])
    theta = np.radians(HELMET_RIM_DEG) * np.linalg.norm(offset, axis=1) / _hull_radius(offset, phi)
    normal = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=1)
    azimuthal = np.stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)], axis=1)
    toward_vertex = np.cross(normal, azimuthal)
    positions = HELMET_RADIUS_M * normal[group]
    frames = np.empty((len(names), 3, 3))
    for index, name in enumerate(names):
        k = group[index]
        if name.endswith("3"):
            frames[index] = (toward_vertex[k], -azimuthal[k], normal[k])
        else:
            frames[index] = (azimuthal[k], toward_vertex[k], normal[k])
    positions.setflags(write=False)  # cached: shared by every caller
    frames.setflags(write=False)
    return names, positions, frames


def _hull_radius(offset: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Distance from the origin to the convex hull of `offset` along each direction `phi`."""
    hull = ConvexHull(offset)
    start = offset[hull.simplices[:, 0]]
    edge = offset[hull.simplices[:, 1]] - start
    direction = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    radius = np.full(phi.size, np.inf)
    for a, e in zip(start, edge):
        # solve t * direction = a + s * e for (t, s)
        det = direction[:, 0] * -e[1] + e[0] * direction[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (a[0] * -e[1] + e[0] * a[1]) / det
            s = (direction[:, 0] * a[1] - direction[:, 1] * a[0]) / det
        hit = np.isfinite(t) & (t > 0) & (s >= -1e-9) & (s <= 1 + 1e-9)
        radius[hit] = np.minimum(radius[hit], t[hit])
    return radius


def nominal_dev_head_t() -> np.ndarray:
    """(4, 4) device->head transform of an average head: a shift by DEVICE_ORIGIN_IN_HEAD_M."""
    transform = np.eye(4)
    transform[:3, 3] = DEVICE_ORIGIN_IN_HEAD_M
    return transform


def subject_head_offset(seed: int, subject: int, *, shift_mm: float, rotation_deg: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """One subject's head position relative to the nominal one: (3,) rotation vector in radians (axis times
    angle, device x, y, z) and (3,) translation in metres, drawn with sds rotation_deg and shift_mm per axis
    from a (seed, subject) RNG stream (so they do not depend on the other subjects; 0 sd gives zeros)."""
    if shift_mm < 0 or rotation_deg < 0:
        raise ValueError(f"shift_mm={shift_mm}, rotation_deg={rotation_deg}: sds must be >= 0")
    rng = np.random.default_rng([seed, _DEV_HEAD_STREAM, subject])
    rotation_rad = rng.normal(0.0, np.radians(rotation_deg), 3)
    translation_m = rng.normal(0.0, shift_mm / 1000.0, 3)
    return rotation_rad, translation_m


def subject_dev_head_t(seed: int, subject: int, *, shift_mm: float, rotation_deg: float) -> np.ndarray:
    """(4, 4) device->head transform of one subject: the nominal one rotated and shifted by its
    subject_head_offset; exactly nominal_dev_head_t() when both sds are 0."""
    rotation_rad, translation_m = subject_head_offset(seed, subject, shift_mm=shift_mm, rotation_deg=rotation_deg)
    transform = nominal_dev_head_t()
    if np.any(rotation_rad):
        transform[:3, :3] = Rotation.from_rotvec(rotation_rad).as_matrix()
    transform[:3, 3] += translation_m
    return transform


def vectorview_info(sfreq_hz: float, dev_head_t: np.ndarray, line_freq_hz: float | None = None) -> mne.Info:
    """Info of the 306 MEG channels (layout order) plus STI101, with the given (4, 4) device->head transform."""
    names, positions, frames = sensor_geometry()
    types = ["mag" if name.endswith("1") else "grad" for name in names]
    info = mne.create_info(list(names) + [STIM_CHANNEL], sfreq_hz, types + ["stim"])
    for channel, position, frame, kind in zip(info["chs"], positions, frames, types):
        channel["loc"] = np.concatenate([position, frame.ravel()]).astype(np.float64)
        channel["coil_type"] = FIFF.FIFFV_COIL_VV_MAG_T3 if kind == "mag" else FIFF.FIFFV_COIL_VV_PLANAR_T1
        channel["coord_frame"] = FIFF.FIFFV_COORD_DEVICE
    info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.asarray(dev_head_t, dtype=np.float64))
    info["line_freq"] = line_freq_hz
    return info
