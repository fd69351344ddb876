"""Is this pair the same photo? Local features, a geometric fit, then the aligned pixels.

Global vectors only propose pairs (`retrieval.duplicates`); this module decides. Each picture
is read in grey (a copy may be grey), with its longest side scaled to WORK_SIDE (a thumbnail is
enlarged, a 40-megapixel photo shrunk, so keypoints of both sit at comparable scales). ORB
keypoints (binary, cheap to match, rotation invariant, so 90/180/270-degree turns match) are
found in the picture and in its mirror image, so a mirrored copy matches too. Matches that pass
a ratio test are fitted with a similarity transform (turn, scale, shift) by RANSAC.

Inliers alone are not enough: two different photos that share a watermark, a caption or a
phone's status bar match there, at the identity transform. So the second picture is warped
onto the first with the fitted transform and the two are compared where both have content
(margins of uniform colour, like a screenshot's, are left out): the median correlation of
4 x 4 blocks of the blurred grey pixels. A shared overlay covers few blocks; a crop, a JPEG at
quality 12 or a grey copy still correlates in nearly all of them.

The thresholds that use these numbers (`DuplicateSettings`) were chosen on edited flowers5
photos, calibration half only (benchmarks/duplicates_quality.py).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from foldervision.images import MAX_IMAGE_PIXELS

WORK_SIDE = 256
"""Longest side, in pixels, of the picture keypoints are found in."""
MAX_FEATURES = 500
ORB_PATCH = 15
"""Keypoint patch size: half OpenCV's default, so a small thumbnail still yields keypoints."""
ORB_FAST_THRESHOLD = 10
MATCH_RATIO = 0.8
"""Lowe's ratio test: a match counts when it is clearly better than the second best."""
RANSAC_PIXELS = 4.0
"""How far (in WORK_SIDE pixels) a matched keypoint may land from where the fit puts it."""
SCALE_RANGE = (0.2, 5.0)
"""A fit that shrinks or enlarges more than this is a degenerate one, not a copy."""
MAX_RANSAC_DRAWS = 2000
MISSED_FIT_CHANCE = 1e-6
"""RANSAC draws enough pairs of matches to find a fit with the least share of inliers that can
be accepted, but for this chance (`ransac_draws`)."""
MIN_ALIGNMENT_INLIERS = 4
"""Fewer inliers than this leave the transform undetermined: no pixels are compared."""
BLUR_SIGMA = 2.0
"""Blur before comparing pixels: hides JPEG blocks, resampling and a few pixels of misfit."""
BLOCKS = 4
MIN_BLOCK_COVERAGE = 0.6
MIN_BLOCK_STD = 3.0
"""A block with less contrast than this (grey levels) says nothing; it is left out."""
MIN_BLOCKS = 4
FLAT_STD = 3.0
"""A row or column of a margin: its grey levels vary by less than this."""
MIN_MARGIN = 0.03
"""Uniform rows or columns count as a margin from 3% of the side on (a screenshot's is more)."""
SIGNATURE_SIDE = 8
SIGNATURE_DECODE_SIDE = 128


@dataclass(frozen=True)
class Evidence:
    """What the comparison of two pictures found; `correlation` is 0 when none was made."""

    inliers: int
    matches: int
    """Keypoint matches that passed the ratio test; `inliers` of them fit the transform."""
    correlation: float
    mirrored: bool


@dataclass(frozen=True)
class Features:
    points: np.ndarray
    """(n, 2) float32 keypoint positions (x, y) in the WORK_SIDE picture."""
    descriptors: np.ndarray | None
    """(n, 32) uint8 ORB descriptors; None when the picture has no keypoints."""


@dataclass(frozen=True)
class Picture:
    """What verification needs of one file: its reduced grey pixels and their keypoints."""

    grey: np.ndarray
    content: tuple[int, int, int, int]
    """(top, bottom, left, right) of the part that is not a uniform margin."""
    features: Features

    @property
    def mirrored_features(self) -> Features:
        """Keypoints of the mirror image (found in it: ORB descriptors are not mirror
        symmetric). Found when first asked for: half the cost of reading a picture, and a pair
        that matches as it is never asks. Not `functools.cached_property`: on Python 3.11 it
        holds one lock for every instance, which made the checking threads take turns (the
        check at 10^4 took 1.35x the wall time of finding every mirror up front)."""
        found = self.__dict__.get("_mirrored_features")
        if found is None:  # two threads may both find it: the same keypoints, no harm
            found = _features(np.ascontiguousarray(self.grey[:, ::-1]))
            self.__dict__["_mirrored_features"] = found
        return found

    @property
    def has_mirrored_features(self) -> bool:
        return "_mirrored_features" in self.__dict__

    def keypoints(self) -> Keypoints:
        """What took longest to find here: kept when the pixels are dropped, it spares a
        picture read again its keypoint search (`read_picture`)."""
        return Keypoints(self.features, self.__dict__.get("_mirrored_features"))


@dataclass(frozen=True)
class Keypoints:
    """A picture's keypoints, and those of its mirror image where they were found."""

    features: Features
    mirrored: Features | None

    @property
    def nbytes(self) -> int:
        mirrored = 0 if self.mirrored is None else features_bytes(self.mirrored)
        return features_bytes(self.features) + mirrored


def read_grey(path: str | os.PathLike[str], side: int) -> np.ndarray | None:
    """The file in grey, EXIF orientation applied, decoded at a reduced scale where the format
    allows (JPEG decodes at 1/2 to 1/8 directly); at least `side` pixels on its longest side
    when the file has them. None for a file that cannot be read as an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    return None
                image.draft("L", (side, side))
                image.load()
                upright = ImageOps.exif_transpose(image)
                grey = upright.convert("L") if upright.mode != "L" else upright
                return np.asarray(grey, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError):  # fmt: skip
        return None


def content_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the largest block of rows, then of columns, that is not
    cut off by a uniform band at least MIN_MARGIN of the side: the photo inside a screenshot.
    The whole picture when nothing would be left but a sliver (under a quarter of a side)."""
    pixels = grey.astype(np.float32)
    top, bottom = _busy_span(pixels.std(axis=1), max(2, round(MIN_MARGIN * len(pixels))))
    columns = pixels[top:bottom].std(axis=0)
    left, right = _busy_span(columns, max(2, round(MIN_MARGIN * len(columns))))
    return top, bottom, left, right


def _busy_span(spread: np.ndarray, min_gap: int) -> tuple[int, int]:
    """The longest run of lines not separated by min_gap or more flat lines."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    last_busy = -1
    for position, is_flat in enumerate(spread < FLAT_STD):
        if not is_flat:
            if start is None:
                start = position
            last_busy = position
        elif start is not None and position - last_busy >= min_gap:
            spans.append((start, last_busy + 1))
            start = None
    if start is not None:
        spans.append((start, last_busy + 1))
    if not spans:
        return 0, len(spread)
    start, end = max(spans, key=lambda span: span[1] - span[0])
    return (start, end) if end - start >= len(spread) // 4 else (0, len(spread))


# --------------------------------------------------------------------------------------------
# Signatures: the coarse pixels that propose pairs the global vectors miss.


def signature(grey: np.ndarray) -> np.ndarray | None:
    """The content's grey levels on a SIGNATURE_SIDE^2 grid, zero mean and unit norm (blind to
    brightness, contrast and colour); None for a picture with no contrast at all."""
    top, bottom, left, right = content_box(grey)
    grid = area_resize(grey[top:bottom, left:right].astype(np.float32), SIGNATURE_SIDE)
    grid -= grid.mean()
    norm = float(np.linalg.norm(grid))
    return (grid / norm).ravel() if norm > 1e-6 else None


def signature_of_file(path: str | os.PathLike[str]) -> np.ndarray | None:
    grey = read_grey(path, SIGNATURE_DECODE_SIDE)
    return None if grey is None or min(grey.shape) < 2 else signature(grey)


def turned_signatures(signatures: np.ndarray) -> dict[str, np.ndarray]:
    """The signatures of each picture turned 90 and 180 degrees and mirrored, same layout.

    A pair (a, b) with b = a turned 270 degrees is found from b's side (b turned 90 is a), so
    these three and the signatures themselves cover the turns and the mirror image."""
    grids = signatures.reshape(-1, SIGNATURE_SIDE, SIGNATURE_SIDE)
    turned = {
        "turned 90": np.rot90(grids, 1, axes=(1, 2)),
        "turned 180": np.rot90(grids, 2, axes=(1, 2)),
        "mirrored": grids[:, :, ::-1],
    }
    return {name: np.ascontiguousarray(grid.reshape(len(signatures), -1)) for name, grid in
            turned.items()}  # fmt: skip


def best_orientation_similarity(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row by row, the cosine of `first`'s signature with `second`'s in the best of its eight
    orientations (four turns, each also mirrored): how alike two pictures are, however turned."""
    grids = second.reshape(-1, SIGNATURE_SIDE, SIGNATURE_SIDE)
    best = np.full(len(first), -1.0, dtype=np.float32)
    for mirrored in (grids, grids[:, :, ::-1]):
        for turns in range(4):
            turned = np.rot90(mirrored, turns, axes=(1, 2)).reshape(len(first), -1)
            best = np.maximum(best, np.einsum("ij,ij->i", first, turned))
    return best


def area_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Mean of each cell of a size x size grid (a picture smaller than that is enlarged)."""
    import cv2

    return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------------------------
# Pictures and their comparison.


def picture_bytes(picture: Picture | None) -> int:
    """Memory the picture's arrays take (what a cache of pictures counts)."""
    if picture is None:
        return 0
    return picture.grey.nbytes + picture.keypoints().nbytes


def features_bytes(features: Features) -> int:
    descriptors = 0 if features.descriptors is None else features.descriptors.nbytes
    return features.points.nbytes + descriptors


def read_picture(path: str | os.PathLike[str], known: Keypoints | None = None) -> Picture | None:
    """The file reduced for verification; None when it cannot be read or is too small.
    `known`: its keypoints found before (ORB finds the same ones in the same pixels)."""
    grey = read_grey(path, WORK_SIDE)
    if grey is None or min(grey.shape) < 8:
        return None
    return picture_from_grey(grey, known)


def picture_from_grey(grey: np.ndarray, known: Keypoints | None = None) -> Picture:
    import cv2

    height, width = grey.shape
    box = content_box(grey)
    scale = WORK_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    reduced = cv2.resize(grey, size, interpolation=interpolation)
    top, bottom, left, right = (round(value * scale) for value in box)
    picture = Picture(
        grey=reduced,
        content=(top, bottom, left, right),
        features=_features(reduced) if known is None else known.features,
    )
    if known is not None and known.mirrored is not None:
        picture.__dict__["_mirrored_features"] = known.mirrored
    return picture


def _features(grey: np.ndarray) -> Features:
    import cv2

    orb = cv2.ORB_create(
        nfeatures=MAX_FEATURES,
        edgeThreshold=ORB_PATCH,
        patchSize=ORB_PATCH,
        fastThreshold=ORB_FAST_THRESHOLD,
    )
    keypoints, descriptors = orb.detectAndCompute(grey, None)
    points = cv2.KeyPoint_convert(keypoints) if keypoints else np.empty((0, 2), np.float32)
    return Features(points, descriptors)


def compare(
    first: Picture,
    second: Picture,
    min_inliers: int = 0,
    min_inlier_ratio: float = 0.0,
    enough_correlation: float = np.inf,
) -> Evidence:
    """Fit `second` (as it is, and mirrored) onto `first`; correlate the aligned pixels of the
    fit with more inliers, when it has at least `min_inliers` and that share of the matches
    (the correlation is 0 otherwise: a fit that cannot be accepted needs no pixels compared).

    A fit as it is that has those inliers and correlates at `enough_correlation` or more is
    kept without trying the mirror image: the pair is a copy either way."""
    draws = ransac_draws(min_inlier_ratio)
    straight = _fit(first.features, second.features, draws)
    straight_correlation = 0.0
    if _can_accept(straight, min_inliers, min_inlier_ratio):
        straight_correlation = _correlation(first, second, straight, mirrored=False)
        if straight_correlation >= enough_correlation:
            return Evidence(straight.inliers, straight.matches, straight_correlation, False)
    mirrored = _fit(first.features, second.mirrored_features, draws)
    if mirrored.inliers <= straight.inliers:
        return Evidence(straight.inliers, straight.matches, straight_correlation, False)
    correlation = 0.0
    if _can_accept(mirrored, min_inliers, min_inlier_ratio):
        correlation = _correlation(first, second, mirrored, mirrored=True)
    return Evidence(mirrored.inliers, mirrored.matches, correlation, True)


def ransac_draws(min_inlier_ratio: float) -> int:
    """How many pairs of matches RANSAC draws: enough that a fit whose inliers are
    `min_inlier_ratio` of the matches is missed only with MISSED_FIT_CHANCE (147 draws at 0.3,
    against up to 2000 before). A pair of different photos has no such fit, and the draws
    spent looking for one were most of the fitting time; a copy's fit stops early anyway, at
    RANSAC's own confidence. MAX_RANSAC_DRAWS when any share may be accepted."""
    if min_inlier_ratio <= 0:
        return MAX_RANSAC_DRAWS
    both_inliers = min(min_inlier_ratio, 1.0) ** 2
    if both_inliers >= 1:
        return 1
    draws = math.log(MISSED_FIT_CHANCE) / math.log1p(-both_inliers)
    return min(MAX_RANSAC_DRAWS, math.ceil(draws))


def _can_accept(fit: _Fit, min_inliers: int, min_inlier_ratio: float) -> bool:
    """Whether the fit is worth correlating the pixels of."""
    enough = fit.inliers >= max(MIN_ALIGNMENT_INLIERS, min_inliers)
    return fit.transform is not None and enough and fit.inliers >= min_inlier_ratio * fit.matches


def _correlation(first: Picture, second: Picture, fit: _Fit, mirrored: bool) -> float:
    grey, mask = _content_mask(second)
    if mirrored:
        grey, mask = np.ascontiguousarray(grey[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
    first_mask = _content_mask(first)[1]
    return aligned_correlation(first.grey, first_mask, grey, mask, fit.transform)


def _content_mask(picture: Picture) -> tuple[np.ndarray, np.ndarray]:
    top, bottom, left, right = picture.content
    mask = np.zeros(picture.grey.shape, np.uint8)
    mask[top:bottom, left:right] = 1
    return picture.grey, mask


@dataclass(frozen=True)
class _Fit:
    inliers: int = 0
    matches: int = 0
    transform: np.ndarray | None = None
    """2 x 3, taking the first picture's points to the second's."""


def _fit(first: Features, second: Features, draws: int = MAX_RANSAC_DRAWS) -> _Fit:
    """The similarity transform most matches agree on (RANSAC, at most `draws` draws)."""
    import cv2

    if first.descriptors is None or second.descriptors is None:
        return _Fit()
    if len(first.descriptors) < 2 or len(second.descriptors) < 2:
        return _Fit()
    distances, nearest = _two_nearest(first.descriptors, second.descriptors)
    good = distances[:, 0] < MATCH_RATIO * distances[:, 1]
    matches = int(good.sum())
    if matches < MIN_ALIGNMENT_INLIERS:
        return _Fit(matches=matches)
    source = first.points[good]
    target = second.points[nearest[good, 0]]
    transform, inlier_mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS,
        maxIters=draws, confidence=0.995,
    )  # fmt: skip
    if transform is None or inlier_mask is None:
        return _Fit(matches=matches)
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return _Fit(matches=matches)
    return _Fit(int(inlier_mask.sum()), matches, transform)


def _two_nearest(query: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distances and indices of each query descriptor's two nearest in `train`, exact
    (FAISS's binary flat search: the same answer as OpenCV's brute-force matcher, about three
    times faster, and as arrays rather than one Python object per match)."""
    import faiss

    index = faiss.IndexBinaryFlat(train.shape[1] * 8)
    index.add(np.ascontiguousarray(train))
    distances, nearest = index.search(np.ascontiguousarray(query), 2)
    return distances.astype(np.float32), nearest


def aligned_correlation(
    first: np.ndarray,
    first_content: np.ndarray,
    second: np.ndarray,
    second_content: np.ndarray,
    transform: np.ndarray,
) -> float:
    """Median correlation of BLOCKS x BLOCKS blocks of `first` and `second` warped onto it,
    over the part where both have content; 0 when too few blocks have contrast to tell."""
    import cv2

    height, width = first.shape
    flags = cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(second.astype(np.float32), transform, (width, height),
                            flags=cv2.INTER_LINEAR | flags)  # fmt: skip
    # One warp tells both where the second picture lands (label 1 or 2; 0 outside, the border
    # value) and where its content does (2).
    labels = cv2.warpAffine(second_content + 1, transform, (width, height),
                            flags=cv2.INTER_NEAREST | flags)  # fmt: skip
    inside = cv2.erode(labels, np.ones((5, 5), np.uint8)) > 0
    both = inside & (first_content > 0) & (labels > 1)
    mask = both if both.sum() >= 0.25 * inside.sum() else inside
    if not mask.any():
        return 0.0
    first_blurred = cv2.GaussianBlur(first.astype(np.float32), (0, 0), BLUR_SIGMA)
    second_blurred = cv2.GaussianBlur(np.where(mask, warped, 0).astype(np.float32), (0, 0),
                                      BLUR_SIGMA)  # fmt: skip
    scores = _block_correlations(first_blurred, second_blurred, mask)
    return float(np.median(scores)) if len(scores) >= MIN_BLOCKS else 0.0


def _block_correlations(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> list[float]:
    """Pearson correlation of `first` and `second` over the mask, in each of BLOCKS x BLOCKS
    blocks of the mask's extent that it covers well and where both vary. Every block's sums
    come from summed-area tables (four lookups a block), which is what makes checking 10^5
    pairs cheap: 2.8x faster than summing each block's rows and columns (docs/benchmarks.md)."""
    import cv2

    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    row_edges = np.linspace(rows[0], rows[-1] + 1, BLOCKS + 1).astype(int)
    column_edges = np.linspace(columns[0], columns[-1] + 1, BLOCKS + 1).astype(int)
    if np.any(np.diff(row_edges) == 0) or np.any(np.diff(column_edges) == 0):
        row_edges, column_edges = np.unique(row_edges), np.unique(column_edges)
    a = np.where(mask, first, 0).astype(np.float64)
    b = np.where(mask, second, 0).astype(np.float64)

    def block_sums(table: np.ndarray) -> np.ndarray:
        corners = table[np.ix_(row_edges, column_edges)]
        return corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]

    sum_a, sum_aa = (block_sums(table) for table in cv2.integral2(a, sdepth=cv2.CV_64F,
                                                                  sqdepth=cv2.CV_64F))  # fmt: skip
    sum_b, sum_bb = (block_sums(table) for table in cv2.integral2(b, sdepth=cv2.CV_64F,
                                                                  sqdepth=cv2.CV_64F))  # fmt: skip
    sum_ab = block_sums(cv2.integral(a * b, sdepth=cv2.CV_64F))
    count = block_sums(cv2.integral(mask.view(np.uint8), sdepth=cv2.CV_64F))
    area = np.outer(np.diff(row_edges), np.diff(column_edges))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a, mean_b = sum_a / count, sum_b / count
        spread_a = sum_aa - count * mean_a**2
        spread_b = sum_bb - count * mean_b**2
        covariance = sum_ab - count * mean_a * mean_b
        varies = (spread_a >= count * MIN_BLOCK_STD**2) & (spread_b >= count * MIN_BLOCK_STD**2)
        usable = (count >= MIN_BLOCK_COVERAGE * area) & (count > 0) & varies
        scores = covariance / np.sqrt(spread_a * spread_b)
    return [float(score) for score in scores[usable]]
