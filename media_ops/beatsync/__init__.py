"""Beat-sync: put the clean studio track under a phone video of a dance filmed to that track.

The phone heard the music from a speaker: late, quieter, with room echo, crowd noise and automatic gain,
sometimes a different cut. We find where the music sits in the video's own soundtrack and replace that
soundtrack with the clean music, shifted to match.

Sign convention, used everywhere (``AlignResult.offset_seconds``, ``render``, ``run``)::

    music time t plays at video time t + offset_seconds

so a positive offset means the music starts ``offset`` seconds after the first frame of the video (the
video opens on silence or chatter); a negative offset means the video starts ``-offset`` seconds into the
music (the music was already playing when recording began). Video time 0 is the presentation time of the
video stream's first frame; music time 0 is the first decoded sample of the music file (after the codec's
encoder delay, which FFmpeg strips).

Layers, each a module (callers import the names below from the package, not from the modules):

* ``probing``: ``probe_media``, ``MediaInfo`` and ``VideoLimits``, the upload-time check of a video or music
  file;
* ``streams``: opening containers and decoding their audio, placed on the video timeline;
* ``alignment``: ``align`` and ``AlignResult``, where the music sits in the video (how it decides, and its
  limits, are described there);
* ``rendering``: ``render`` and ``RenderInfo``, the MP4 with the music placed under the picture;
* ``pipeline``: ``run``, the whole job; ``progress``: the progress callbacks the stages share.
"""

from media_ops.beatsync.alignment import ANALYSIS_RATE as ANALYSIS_RATE
from media_ops.beatsync.alignment import BAND_EDGES_HZ as BAND_EDGES_HZ
from media_ops.beatsync.alignment import COARSE_CANDIDATES as COARSE_CANDIDATES
from media_ops.beatsync.alignment import ENVELOPE_HOP as ENVELOPE_HOP
from media_ops.beatsync.alignment import ENVELOPE_WINDOW as ENVELOPE_WINDOW
from media_ops.beatsync.alignment import FINE_BAND_HZ as FINE_BAND_HZ
from media_ops.beatsync.alignment import FINE_MAX_WINDOWS as FINE_MAX_WINDOWS
from media_ops.beatsync.alignment import FINE_NULL_SNR as FINE_NULL_SNR
from media_ops.beatsync.alignment import FINE_SEARCH_SECONDS as FINE_SEARCH_SECONDS
from media_ops.beatsync.alignment import FINE_WINDOW as FINE_WINDOW
from media_ops.beatsync.alignment import GOOD_FINE_RATIO as GOOD_FINE_RATIO
from media_ops.beatsync.alignment import MIN_FINE_RATIO as MIN_FINE_RATIO
from media_ops.beatsync.alignment import MIN_FINE_SNR as MIN_FINE_SNR
from media_ops.beatsync.alignment import MIN_INPUT_SECONDS as MIN_INPUT_SECONDS
from media_ops.beatsync.alignment import MIN_OVERLAP_SECONDS as MIN_OVERLAP_SECONDS
from media_ops.beatsync.alignment import PEAK_EXCLUSION_SECONDS as PEAK_EXCLUSION_SECONDS
from media_ops.beatsync.alignment import AlignResult, align
from media_ops.beatsync.pipeline import run
from media_ops.beatsync.probing import ACCEPTED_CONTAINERS, MediaInfo, VideoLimits, probe_media
from media_ops.beatsync.progress import Progress as Progress
from media_ops.beatsync.rendering import MP4_COPYABLE_VIDEO_CODECS as MP4_COPYABLE_VIDEO_CODECS
from media_ops.beatsync.rendering import OUTPUT_AUDIO_RATES as OUTPUT_AUDIO_RATES
from media_ops.beatsync.rendering import SILENCE_BELOW_PEAK_DB as SILENCE_BELOW_PEAK_DB
from media_ops.beatsync.rendering import SILENCE_BLOCK_SECONDS as SILENCE_BLOCK_SECONDS
from media_ops.beatsync.rendering import SILENCE_FLOOR_DBFS as SILENCE_FLOOR_DBFS
from media_ops.beatsync.rendering import RenderInfo, render

# The tuning constants and ``Progress`` stay reachable here (``X as X`` above), outside ``__all__`` as before.
__all__ = [
    "ACCEPTED_CONTAINERS",
    "AlignResult",
    "MediaInfo",
    "RenderInfo",
    "VideoLimits",
    "align",
    "probe_media",
    "render",
    "run",
]
