"""Motion transfer between faces: a least-squares similarity fit, and the driver's motion carried to the source.

Let D0 be the driving landmarks at calibration, D the current ones and S0 the source's. A similarity (rotation R in
3-D, uniform scale s, translation t) is fitted by least squares (Umeyama 1991) over stable points that expression
barely moves (forehead, nose bridge, upper face oval, eye corners): D ≈ s R D0 + t there. The head motion is that
similarity; the expression is what it leaves, brought back into the neutral pose's frame:

    E = R^T (D - t) / s - D0                                  (per landmark, 3-D)

The source moves by the same head motion about its own centre c_S, and by the expression scaled to its face size:

    k = rms(S0 - c_S) / rms(D0 - c_D)                         (over the stable points, x and y)
    S = c_S + s R (S0 + k E - c_S) + k (s R c_D + t - c_D)

where c_D is the centre of the stable points of D0. When the source is the driver's face up to a scale and a shift,
this is exactly S - S0 = k (D - D0), the relative motion of FOMM with its adaptive scale; when the faces differ,
the source keeps its own shape. S is projected orthographically (its x and y are kept).
"""

from __future__ import annotations

import numpy as np

from live.landmarks.points import STABLE


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ s R src + t`` (Umeyama 1991), in 2-D or 3-D.

    Args:
        src: K x d points (d = 2 or 3).
        dst: K x d points, matched to ``src``.

    Returns:
        ``(s, R, t)``: scale, d x d rotation (a proper one, det +1) and translation of length d.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d  # K x d
    var_s = (xs**2).sum() / len(src)
    if var_s <= 1e-18:
        raise ValueError("similarity fit: the source points are all at one place")
    cov = xd.T @ xs / len(src)  # d x d
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(len(sig))
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = (u * sign) @ vt
    scale = float((sig * sign).sum() / var_s)
    return scale, rot, mu_d - scale * rot @ mu_s


def relative_motion(source: np.ndarray, neutral: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """Where the source's landmarks go when the driver moves from ``neutral`` to ``driving`` (see the module
    docstring): 478 x 3 float64, in the source's units.

    Args:
        source: 478 x 3 float64 source landmarks S0 (output pixels in the backend).
        neutral: 478 x 3 float64 driving landmarks at calibration, D0 (normalised).
        driving: 478 x 3 float64 current driving landmarks, D (normalised).
    """
    stable = list(STABLE)
    scale, rot, shift = similarity_fit(neutral[stable], driving[stable])
    expression = (driving - shift) @ rot / scale - neutral  # R^T (D - t) / s - D0, 478 x 3
    c_d, c_s = neutral[stable].mean(0), source[stable].mean(0)
    k = (np.sqrt(((source[stable, :2] - c_s[:2]) ** 2).sum(1).mean())
         / np.sqrt(((neutral[stable, :2] - c_d[:2]) ** 2).sum(1).mean()))
    head_shift = scale * rot @ c_d + shift - c_d
    return c_s + scale * (source + k * expression - c_s) @ rot.T + k * head_shift
