"""The search for a watermark an edit moved: the exact-sample offset (batched shifted copies), the polarity
(re-synthesis decides), optionally the speed; and the re-synthesis check that keeps false positives out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from media_ops import audio
from media_ops.watermark.messages import HOP_SECONDS, MESSAGE_THRESHOLD, MODEL_RATE
from media_ops.watermark.models import Analysis, WatermarkModels
from media_ops.watermark.regions import _Alignment, _curve, _Segment, _segments

logger = logging.getLogger(__name__)


SEARCH_HINT = 0.2  # the search excerpt stays where the plain pass's curve reaches this, if it does anywhere


POLARITY_SECONDS = 2.0  # how much of a region the check by re-synthesis re-embeds (its loudest part)


OWN_GRID_PRIOR = 1.25  # see _prior
UNCERTAIN_BIT = 0.4  # a bit read with a probability within this of 0.5 is decided by re-synthesis
UNCERTAIN_BITS_MAX = 3  # at most this many per region (2**3 re-embeddings in one batch)
CONFIRM_Z = 8.0  # the evidence (see _verify) a region needs, unless the whole-file rule already said "watermarked"


DEFAULT_SPEEDS = (0.95, 1.05)  # speed changes searched for when nothing else is found (settings may change it)


@dataclass(frozen=True)
class AlignmentSearch:
    """How far detection looks for a watermark that an edit moved: a trim, crop or splice that moved the
    detector's frame grid (the generator's 20 ms frames, 320 samples at 16 kHz), polarity inversion, and a
    speed change by resampling. The detector itself is the judge throughout; nothing here is model-specific.

    1. Offset: an excerpt of ``excerpt_frames`` frames is cut at every ``offset_step``-th shift within one frame
       (shifting the input by s samples moves the grid by s), and the copies go through the detector as one
       batch (concatenated into rows of ``segments_per_row``, ``rows_per_forward`` rows per forward pass). The
       ``2 x candidates`` shifts with the highest mean detection logit over each copy's interior are kept; the
       shifts within ``offset_step`` of each are scored again on ``refine_frames`` frames, in both polarities,
       and every candidate that reads as watermarked is analysed in full: the re-synthesis check picks among
       them (the excerpt's logit ranks grids well but not always the true one first).
    2. Polarity: when the excerpt shows a watermark, the whole file is analysed at the chosen offset as ``x``
       and as ``-x`` (one batch; at offset 0 the plain pass is the ``x`` one). An inverted watermark is
       detected almost as confidently, with every bit inverted, so the detector's confidence cannot tell the
       two readings apart reliably (measured: wrong about 1 time in 10); each region takes the polarity whose
       decoded message, re-embedded by the model's own generator, the audio contains more of (``_verify``).
    3. Speed: only when nothing was found, the same search on the audio resampled by each of ``speeds``
       (undoing a speed change by exactly that factor: measured, 0.9/0.95/1.05/1.1 are found, 1.07 is not
       found by a search for 1.05 or 1.1), in order, stopping at the first that finds a region. By default
       ±5 % (``DEFAULT_SPEEDS``, the common "sped up / slowed down" edit of short-video apps): every file in
       which nothing else was found pays one more excerpt search per speed (about 0.2 s on one CPU thread,
       whatever its length; Benchmarks in the README has the cost).
    4. More regions: up to ``rounds`` searches per file in all; after the first, each goes where the plain pass
       saw something that no region found so far explains (a second splice, off the first one's grid).
    Every region a search finds must then be confirmed by re-synthesis (``_verify``).

    Cost (measured, demo model, one CPU thread, 2 shared cores): a plain pass takes about 0.011 s per audio
    second; the offset search reads 320 x 3 + 6 x 6 frames, about 20 s of audio-equivalent, about 0.2 s
    whatever the file length; a found watermark adds a pass of ``-x`` (and one of ``x`` at a new offset). The
    demo detector needs the grid exactly (a 2-sample error loses presence, a 1-sample error inverts the
    bits), hence ``offset_step=1``; a detector that tolerates +-k samples can use a step of about 2k and pay
    that many times less.
    """

    offset_step: int = 1
    polarity: bool = True
    excerpt_frames: int = 3
    refine_frames: int = 6
    speeds: tuple[float, ...] = DEFAULT_SPEEDS
    rounds: int = 3
    candidates: int = 3
    segments_per_row: int = 64
    rows_per_forward: int = 8


SEARCH = AlignmentSearch()


@dataclass
class _Group:
    """The full passes over one signal at one offset and speed, one per polarity tried."""

    signal: np.ndarray  # what was analysed: the 16 kHz audio, or that resampled by ``speed``
    offset: int
    speed: float
    passes: dict[int, Analysis]


def _choose(
    models: WatermarkModels,
    groups: list[_Group],
    trusted: Analysis | None = None,
    taken: list[_Segment] | None = None,
) -> list[_Segment]:
    """Non-overlapping regions from several groups of passes (one group per offset tried), none overlapping
    ``taken``. Every candidate region is read in the polarity ``_verify`` picks and counts only when the
    re-synthesised watermark confirms it; where confirmed readings of different groups overlap, the one with the
    stronger evidence wins (the re-synthesis is the judge of the grid too, not only of the polarity: the
    detector can read a watermark confidently on a wrong grid, with other bits). Then, in the group of
    ``trusted`` (the plain pass of a file the whole-file rule calls watermarked), unconfirmed regions count as
    that pass reads them: what was detected before regions existed still is, and is read as before."""
    chosen: list[_Segment] = list(taken or [])
    confirmed: list[tuple[float, int, _Segment]] = []
    unconfirmed: list[_Segment] = []
    for rank, group in enumerate(groups):
        candidates = [
            seg
            for polarity, analysis in group.passes.items()
            for seg in _segments(analysis, _Alignment(group.offset, polarity, group.speed))
        ]
        mine: list[_Segment] = []  # this group's readings so far: its polarity passes overlap each other
        for seg in sorted(candidates, key=lambda s: -s.strength):  # stable: ties keep polarity +1
            if any(seg.overlaps(c) for c in chosen) or any(seg.overlaps(c) for c in mine):
                continue
            reading, z = _verify(models, group, seg)
            mine.append(reading)
            if z >= CONFIRM_Z:
                confirmed.append((z, rank, reading))
            elif trusted is not None and group.passes.get(1) is trusted:  # as read before: plain, polarity +1
                unconfirmed.append(_Segment(seg.start, seg.end, trusted, _Alignment(group.offset, 1, group.speed)))
    for _, _, reading in sorted(confirmed, key=lambda t: (-_prior(t[2]) * t[0], t[1])):
        if not any(reading.overlaps(c) for c in chosen):
            chosen.append(reading)
    for seg in unconfirmed:
        if not any(seg.overlaps(c) for c in chosen):
            chosen.append(seg)
    return sorted(chosen, key=lambda s: s.seconds()[0])


def _prior(reading: _Segment) -> float:
    """How much evidence a reading on the file's own grid (offset 0, speed 1) is worth against one on a moved
    grid: an unedited file is the common case, and the same watermark can also read, about as well confirmed,
    on a grid some frames' fraction away with other bits (measured on the demo v3 at step 1,200: evidence
    12.75 at offset 0 with the embedded message, 12.79 at offset 240 with another)."""
    own = reading.alignment.offset == 0 and reading.alignment.speed == 1.0
    return OWN_GRID_PRIOR if own else 1.0


def _verify(models: WatermarkModels, group: _Group, seg: _Segment) -> tuple[_Segment, float]:
    """The region read in the right polarity, and how surely it carries the message read there.

    Analysis by synthesis: in each polarity, decode the region's message, re-embed it with the model's own
    generator into (the loudest ``POLARITY_SECONDS`` of) the region as read in that polarity, and project the
    audio on that watermark. The true reading contains it nearly whole (projection / energy about 1, 0.75 after
    MP3); the inverted one only as far as the generator is symmetric (about 0.9 of it): the larger projection
    wins. The evidence is the projection in units of the projections on circularly shifted copies of the same
    watermark (a matched filter against its own noise floor).

    Measured on the demo model: polarity right on 120 of 120 readings (clean and MP3, 1 s to whole files),
    where the detector's own confidence (detection logit, probability, bit margins) picks the wrong one about
    1 time in 10; evidence 14-28 on watermarked regions (clean, MP3, noise at 20 dB, gain 0.3, crops, 0.5 s
    splices), at most 6.1 on the false regions the detector marks in music, noise and chirps.
    """
    if getattr(models, "generator", None) is None:
        return seg, 0.0
    frame = models.frame_samples
    lo, hi = group.offset + seg.start, group.offset + seg.end  # on the aligned signal (offset zeros first)
    length = max(frame, min(int(POLARITY_SECONDS * MODEL_RATE), hi - lo) // frame * frame)
    starts = np.arange(-(-lo // frame) * frame, max(lo, hi - length) + 1, frame)
    if len(starts) == 0:
        starts = np.array([lo // frame * frame])
    aligned = np.concatenate([np.zeros(group.offset, np.float32), group.signal.astype(np.float32)])
    aligned = np.pad(aligned, (0, max(0, int(starts.max()) + length - len(aligned))))
    energy = np.concatenate([[0.0], np.cumsum(aligned.astype(np.float64) ** 2)])
    a0 = int(starts[int(np.argmax(energy[starts + length] - energy[starts]))])
    excerpt = aligned[a0 : a0 + length].astype(np.float64)
    polarities = sorted(group.passes, reverse=True)  # +1 first: it wins ties
    readings = [
        _Segment(seg.start, seg.end, group.passes[p], _Alignment(group.offset, p, group.speed)) for p in polarities
    ]
    bits = [[int(v > MESSAGE_THRESHOLD) for v in r.bit_probs] for r in readings]
    marks = models.watermark_16k_batch([p * excerpt.astype(np.float32) for p in polarities], bits, max_batch=2)
    shifts = np.arange(1, 17) * 211  # not a multiple of any frame: the copies are off the watermark's grid
    best, evidence, projection = readings[0], 0.0, -np.inf
    for p, reading, mark in zip(polarities, readings, marks, strict=True):
        w = mark.astype(np.float64)
        proj = _projection(p * excerpt, w)
        norm = max(float(np.linalg.norm(w)), 1e-12)  # a circular shift keeps the norm: computed once
        noise = np.sqrt(np.mean([np.dot(p * excerpt, np.roll(w, k)) ** 2 for k in shifts])) / norm
        if proj > projection:
            best, projection, evidence = reading, proj, proj / max(float(noise), 1e-12)
    best.decoded = _decide_uncertain_bits(models, best, best.alignment.polarity * excerpt.astype(np.float32))
    return best, evidence


def _decide_uncertain_bits(models: WatermarkModels, reading: _Segment, excerpt: np.ndarray) -> list[int] | None:
    """The reading's bits with its uncertain ones (probability within ``UNCERTAIN_BIT`` of 0.5, at most
    ``UNCERTAIN_BITS_MAX``, the least certain first) decided by re-synthesis: every combination of them is
    re-embedded into the excerpt (one batched generator pass) and the one whose watermark the audio contains
    most wins. None when no bit is uncertain. Measured on the v3 demo model: an echo on music read bit 10 at
    0.21 (wrong); its carrier was still there, and the re-synthesis picked the embedded 1."""
    probs = np.asarray(reading.bit_probs, dtype=np.float64)
    margin = np.abs(probs - 0.5)
    uncertain = [int(i) for i in np.argsort(margin, kind="stable")[:UNCERTAIN_BITS_MAX] if margin[i] < UNCERTAIN_BIT]
    if not uncertain:
        return None
    base = [int(v > MESSAGE_THRESHOLD) for v in probs]
    candidates = []
    for combo in range(2 ** len(uncertain)):
        bits = list(base)
        for j, i in enumerate(uncertain):
            bits[i] = (combo >> j) & 1
        candidates.append(bits)
    marks = models.watermark_16k_batch([excerpt] * len(candidates), candidates, max_batch=len(candidates))
    x = excerpt.astype(np.float64)
    return candidates[int(np.argmax([_projection(x, w.astype(np.float64)) for w in marks]))]


def _projection(x: np.ndarray, w: np.ndarray) -> float:
    """How much of the watermark ``w`` the audio ``x`` contains: its projection on ``w``'s direction."""
    return float(np.dot(x, w)) / max(float(np.linalg.norm(w)), 1e-12)


def _grid_gap(a: int, b: int, frame: int) -> int:
    """Samples between two grid offsets, around the frame (offsets 1 and ``frame - 1`` are 2 apart)."""
    return min(abs(a - b), frame - abs(a - b))


def _search_center(
    y: np.ndarray, plain: Analysis | None, length: int, taken: list[_Segment] | None = None
) -> int | None:
    """Where to cut the search excerpt: the loudest part (the watermark follows the audio's level; measured,
    the loudest excerpt finds the offset far more often than the plain curve's peak), restricted to where the
    plain pass saw something when it did (an edit that moved the grid often leaves some presence, and a
    watermarked region may be a small part of the file). With ``taken`` (regions already found), only where
    the plain pass saw something outside them, and None when it saw nothing there."""
    hop = int(MODEL_RATE * HOP_SECONDS)
    energy = np.pad(y.astype(np.float64) ** 2, (0, (-len(y)) % hop)).reshape(-1, hop).sum(axis=1)
    k = max(1, min(len(energy), length // hop))
    loudness = np.convolve(energy, np.ones(k), mode="valid")
    if plain is not None and len(plain.probs):
        curve = _curve(plain.probs, hop)
        width = max(1, min(len(curve), round(0.5 / HOP_SECONDS)))
        hint = np.convolve(curve, np.ones(width) / width, mode="same")
        for seg in taken or []:
            hint[max(0, seg.start // hop - width) : seg.end // hop + width] = 0.0
        if hint.max() >= SEARCH_HINT:
            inside = np.convolve(hint >= 0.5 * hint.max(), np.ones(k), mode="valid") >= k
            if inside.any():
                loudness = np.where(inside[: len(loudness)], loudness, -1.0)
        elif taken is not None:
            return None
    return int((int(np.argmax(loudness)) + k / 2) * hop)


def _segment_scores(models: WatermarkModels, segments: np.ndarray, search: AlignmentSearch) -> np.ndarray:
    """Mean detection logit over the middle half of each segment (rows of equal-length segments)."""
    import torch

    m, length = segments.shape
    per_row = max(1, min(search.segments_per_row, m))
    rows = -(-m // per_row)
    buf = np.zeros((rows * per_row, length), dtype=np.float32)
    buf[:m] = segments
    buf = buf.reshape(rows, 1, per_row * length)
    out = []
    with torch.inference_mode():
        for i in range(0, rows, max(1, search.rows_per_forward)):
            tensor = torch.from_numpy(buf[i : i + search.rows_per_forward]).to(models.device)
            raw = models._raw(tensor if models.dtype is None else tensor.to(models.dtype))
            out.append((raw[:, 1, :].double() - raw[:, 0, :].double()).cpu().numpy())
    logits = np.concatenate(out).reshape(rows * per_row, length)[:m]
    q = length // 4
    return logits[:, q : length - q].mean(axis=1)


def _search_offset(
    models: WatermarkModels, y: np.ndarray, center: int, search: AlignmentSearch
) -> tuple[int, float]:
    """(offset, score): the shift that puts the detector's grid on the watermark's, judged on an excerpt
    around ``center`` (see ``AlignmentSearch``); score > 0 means the excerpt reads as watermarked there."""
    return _search_offsets(models, y, center, search)[0]


def _search_offsets(
    models: WatermarkModels, y: np.ndarray, center: int, search: AlignmentSearch
) -> list[tuple[int, float]]:
    """Up to ``search.candidates`` (offset, score) pairs, best first: the shifts of the ``2 x candidates`` best
    coarse scores, each refined within ``offset_step`` in both polarities, the best refined kept. The excerpt's
    detection logit
    ranks grids well but does not always put the true one first (measured on the demo v3: a crop read best
    at 256 samples with another message while the true 56 came second); the full passes at each candidate
    and the re-synthesis check (``_choose``) decide among them."""
    frame = models.frame_samples
    step = max(1, int(search.offset_step))
    length = search.excerpt_frames * frame
    longer = max(search.refine_frames, search.excerpt_frames) * frame
    before = (longer - length) // 2 // frame * frame  # whole frames: the grid stays where it was
    start = max(0, (center - length // 2) // frame * frame)  # on the file's own grid: a tie means offset 0
    front = frame + step + before
    padded = np.pad(y.astype(np.float32), (front, longer + frame + step))

    def cut(shift: int, n: int, lead: int = 0) -> np.ndarray:
        i = front + start - shift - lead
        return padded[i : i + n]

    shifts = list(range(0, frame, step))
    coarse = _segment_scores(models, np.stack([cut(s, length) for s in shifts]), search)
    tops: list[int] = []
    for i in np.argsort(-coarse, kind="stable"):  # the best shifts, at least 2 steps apart
        if all(_grid_gap(shifts[i], t, frame) > step for t in tops):
            tops.append(shifts[i])
        if len(tops) >= 2 * max(1, search.candidates):  # twice as many refined as kept: refining is cheap
            break
    polarities = (1, -1) if search.polarity else (1,)
    hyps = [
        (s, p)
        for best in tops
        for s in dict.fromkeys([best] + [(best + d) % frame for r in range(1, step + 1) for d in (-r, r)])
        for p in polarities
    ]
    fine = _segment_scores(models, np.stack([p * cut(s, longer, before) for s, p in hyps]), search)
    found: dict[int, float] = {}
    for i in np.argsort(-fine, kind="stable"):
        offset = (hyps[i][0] - start) % frame
        if all(_grid_gap(offset, o, frame) > step for o in found):
            found[offset] = float(fine[i])
    return list(found.items())[: max(1, search.candidates)]


def _shifted(y: np.ndarray, alignment: _Alignment) -> np.ndarray:
    z = np.concatenate([np.zeros(alignment.offset, dtype=np.float32), y.astype(np.float32)])
    return z if alignment.polarity > 0 else -z


def _aligned_passes(
    models: WatermarkModels, jobs: list[tuple[np.ndarray, _Alignment]], max_batch: int
) -> list[Analysis]:
    """Full analyses of several (signal, alignment) pairs, batched."""
    if not jobs:
        return []
    return models.analyse_16k_batch(
        [_shifted(y, a) for y, a in jobs], drops=[a.offset for _, a in jobs], max_batch=max_batch
    )


def _groups(
    models: WatermarkModels,
    signals: list[np.ndarray],
    plains: list[Analysis],
    offsets: list[list[int]],
    polarities: tuple[int, ...],
    max_batch: int,
) -> list[list[_Group]]:
    """For each input, one group per offset in ``offsets[i]``: its full passes in ``polarities``, all inputs'
    passes in one batch (the plain pass stands for offset 0, polarity +1)."""
    jobs = [(i, _Alignment(o, p)) for i, wanted in enumerate(offsets) for o in wanted for p in polarities]
    todo = [(i, a) for i, a in jobs if a != _Alignment()]
    done = dict(zip(todo, _aligned_passes(models, [(signals[i], a) for i, a in todo], max_batch), strict=True))
    done.update({(i, _Alignment()): plain for i, plain in enumerate(plains)})
    return [
        [_Group(signals[i], o, 1.0, {p: done[(i, _Alignment(o, p))] for p in polarities}) for o in wanted]
        for i, wanted in enumerate(offsets)
    ]


def _more_regions(
    models: WatermarkModels,
    y: np.ndarray,
    plain: Analysis,
    chosen: list[_Segment],
    tried: set[int],
    search: AlignmentSearch,
    max_batch: int,
) -> list[_Segment]:
    """Up to ``search.rounds - 1`` more searches, each where the plain pass saw something no region found so
    far explains (a second splice off the first one's grid), until one finds nothing new."""
    length = search.excerpt_frames * models.frame_samples
    polarities = (1, -1) if search.polarity else (1,)
    for _ in range(max(0, search.rounds - 1)):
        center = _search_center(y, plain, length, taken=chosen)
        if center is None:
            break
        offset, score = _search_offset(models, y, center, search)
        if score <= 0 or offset in tried:
            break
        tried.add(offset)
        alignments = [_Alignment(offset, p) for p in polarities]
        passes = _aligned_passes(models, [(y, a) for a in alignments], max_batch)
        found = _choose(models, [_Group(y, offset, 1.0, dict(zip(polarities, passes, strict=True)))], taken=chosen)
        if len(found) == len(chosen):
            break
        chosen = found
    return chosen


def _speed_search(models: WatermarkModels, y: np.ndarray, search: AlignmentSearch) -> list[_Segment]:
    """Regions found after undoing a speed change by one of ``search.speeds`` (the first that finds any)."""
    length = search.excerpt_frames * models.frame_samples
    polarities = (1, -1) if search.polarity else (1,)
    for speed in search.speeds:
        z = audio.resample(y, MODEL_RATE, int(round(MODEL_RATE * speed)))
        if len(z) == 0:
            continue
        offset, score = _search_offset(models, z, _search_center(z, None, length), search)
        if score <= 0:
            continue
        alignments = [_Alignment(offset, p, float(speed)) for p in polarities]
        passes = _aligned_passes(models, [(z, a) for a in alignments], max_batch=len(alignments))
        chosen = _choose(models, [_Group(z, offset, float(speed), dict(zip(polarities, passes, strict=True)))])
        if chosen:
            return chosen
    return []
