"""The typed ``params`` and ``result`` of each job kind, as the OpenAPI schema documents them.

A job's ``params`` and ``result`` are stored as JSON and returned as they are stored; these serializers are
their contract: field for field what the views put into ``params`` (``jobs.api.views``) and what the worker's
handlers return (``jobs.worker.handlers`` and the ``media_ops`` engines they call). ``JOB_BY_KIND`` joins them
into one job shape per kind, and the schema's ``Job`` is the union of those, discriminated by ``kind``, so a
generated client gets a typed result instead of a dict. The schemathesis test validates real results of every
kind against them (``audioseal_site/tests/test_api_schema.py``): a handler that changes its output without
changing this module fails there.
"""

from __future__ import annotations

from rest_framework import serializers

from media_ops.audio import OUTPUT_FORMATS
from media_ops.emotion.labels import LABELS

MESSAGE_PATTERN = r"^[0-9A-F]{4}$"  # what results carry: upper case (requests also take lower case)
CONFIDENCE_LABELS = ("high", "medium", "low")


def _probability(**kwargs) -> serializers.FloatField:
    return serializers.FloatField(min_value=0, max_value=1, **kwargs)


class _Bits(serializers.ListField):
    """16 bits, most significant first."""

    def __init__(self, **kwargs) -> None:
        super().__init__(child=serializers.IntegerField(min_value=0, max_value=1), min_length=16, max_length=16,
                         **kwargs)


class _BitProbabilities(serializers.ListField):
    def __init__(self, **kwargs) -> None:
        super().__init__(child=_probability(), min_length=16, max_length=16, **kwargs)


# --- params ---------------------------------------------------------------------------------------------------


def _pinned_version() -> serializers.CharField:
    return serializers.CharField(
        required=False, help_text="Present when the request pinned a model version (`model_version`)."
    )


class WatermarkEmbedParams(serializers.Serializer):
    message = serializers.RegexField(MESSAGE_PATTERN, help_text="The 16-bit message embedded (4 hex digits).")
    output_format = serializers.ChoiceField(
        choices=OUTPUT_FORMATS, required=False, help_text="Present when the request chose the output format."
    )
    model_version = _pinned_version()


class WatermarkDetectParams(serializers.Serializer):
    """Detection takes no options (only, when pinned, the model version)."""

    model_version = _pinned_version()


class EmotionParams(serializers.Serializer):
    granularity = serializers.ChoiceField(choices=("utterance", "frame"))
    extract_embedding = serializers.BooleanField()
    model_version = _pinned_version()


class BeatsyncParams(serializers.Serializer):
    trim_silence = serializers.BooleanField()
    model_version = _pinned_version()


class WatermarkReportParams(serializers.Serializer):
    message = serializers.RegexField(
        MESSAGE_PATTERN, required=False, help_text="Present when the request named the expected message."
    )


# --- watermark results ----------------------------------------------------------------------------------------


class EncodedAudio(serializers.Serializer):
    format = serializers.ChoiceField(choices=OUTPUT_FORMATS)
    sample_rate = serializers.IntegerField(min_value=1)
    channels = serializers.IntegerField(min_value=1)
    duration_seconds = serializers.FloatField(min_value=0)


class WatermarkEmbedResult(serializers.Serializer):
    message = serializers.RegexField(MESSAGE_PATTERN)
    bits = _Bits()
    snr_db = serializers.FloatField(help_text="Signal-to-noise ratio of the watermark, in dB (higher: fainter).")
    output = EncodedAudio(help_text="The watermarked file (download it from `output_url`).")


class WatermarkAlignment(serializers.Serializer):
    """How the audio had to be shifted, inverted or re-timed for the detector to read it."""

    offset_samples = serializers.IntegerField(min_value=0, help_text="Samples (16 kHz) prepended to realign.")
    polarity = serializers.ChoiceField(choices=(1, -1), help_text="-1: the audio was inverted.")
    speed = serializers.FloatField(help_text="1.0 unless the audio was played faster or slower.")


class WatermarkSegment(serializers.Serializer):
    """A region where the watermark is, decoded from its own samples."""

    start_seconds = serializers.FloatField(min_value=0)
    end_seconds = serializers.FloatField(min_value=0)
    probability = _probability(help_text="Mean watermark probability over the region.")
    confidence = serializers.ChoiceField(choices=CONFIDENCE_LABELS)
    message = serializers.RegexField(MESSAGE_PATTERN)
    bits = _Bits()
    bit_probabilities = _BitProbabilities()
    alignment = WatermarkAlignment()


class Localization(serializers.Serializer):
    hop_seconds = serializers.FloatField(help_text="Each value covers this many seconds, from the start.")
    values = serializers.ListField(child=_probability(), help_text="Watermark probability per hop.")


class WatermarkDetectResult(serializers.Serializer):
    detected = serializers.BooleanField()
    summary = serializers.CharField(help_text='For people, e.g. "Watermark found in 2 regions".')
    probability = _probability(help_text="Share of the audio above the detection threshold.")
    confidence = serializers.ChoiceField(choices=CONFIDENCE_LABELS)
    message = serializers.RegexField(MESSAGE_PATTERN, allow_null=True, help_text="The strongest region's message.")
    bits = _Bits(allow_null=True)
    bit_probabilities = _BitProbabilities()
    segments = WatermarkSegment(many=True, help_text="The regions, in time order; empty when none.")
    alignment = WatermarkAlignment(help_text="The strongest region's alignment.")
    localization = Localization()
    watermarked_seconds = serializers.FloatField(min_value=0)


# --- watermark robustness report ------------------------------------------------------------------------------


class AttackReading(serializers.Serializer):
    """What detection read after one attack (or, as `reference`, in the file as uploaded)."""

    detected = serializers.BooleanField()
    probability = _probability(help_text="Share of the attacked audio read as watermarked.")
    confidence = serializers.ChoiceField(choices=CONFIDENCE_LABELS, allow_null=True)
    message = serializers.RegexField(MESSAGE_PATTERN, allow_null=True, help_text="Decoded, when detected.")
    message_survived = serializers.BooleanField(help_text="The decoded message equals `expected_message`.")
    bit_accuracy = _probability(allow_null=True, help_text="Share of the 16 expected bits read right.")
    regions = serializers.IntegerField(min_value=0)
    alignment = WatermarkAlignment(allow_null=True)


class AttackRow(AttackReading):
    name = serializers.CharField(help_text="Stable within a battery version, e.g. `mp3_24k`.")
    family = serializers.CharField()
    description = serializers.CharField()
    error = serializers.CharField(allow_null=True, help_text="Set when the attack itself failed.")


class ReportBattery(serializers.Serializer):
    version = serializers.CharField()
    attacks = serializers.IntegerField(min_value=0)


class ReportQuality(serializers.Serializer):
    snr_db = serializers.FloatField(allow_null=True, help_text="Signal to watermark; null for identical files.")
    segmental_snr_db = serializers.FloatField(allow_null=True, help_text="Mean over 20 ms frames, clamped -10..35.")
    offset_samples = serializers.IntegerField(help_text="Delay the original was lined up by (e.g. a codec's).")
    compared_seconds = serializers.FloatField(min_value=0)


class ReportSummary(serializers.Serializer):
    attacks = serializers.IntegerField(min_value=0)
    detected = serializers.IntegerField(min_value=0)
    message_survived = serializers.IntegerField(min_value=0)
    detection_rate = _probability(allow_null=True)
    message_rate = _probability(allow_null=True)
    text = serializers.CharField()


class WatermarkReportResult(serializers.Serializer):
    battery = ReportBattery()
    expected_message = serializers.RegexField(MESSAGE_PATTERN)
    message_source = serializers.ChoiceField(choices=("given", "detected"))
    reference = AttackReading(help_text="The file as uploaded.")
    quality = ReportQuality(allow_null=True, help_text="Null when no `original` was sent.")
    summary = ReportSummary()
    attacks = AttackRow(many=True, help_text="In battery order.")
    duration_seconds = serializers.FloatField(min_value=0)
    compute_seconds = serializers.FloatField(min_value=0)


# --- emotion --------------------------------------------------------------------------------------------------


class EmotionTop(serializers.Serializer):
    label = serializers.ChoiceField(choices=LABELS)
    score = _probability()


EmotionScores = type(
    "EmotionScores", (serializers.Serializer,),
    {
        "__doc__": "The probability of each of the nine emotions (they sum to 1).",
        **{label: _probability() for label in LABELS},
    },
)


class EmotionFrames(serializers.Serializer):
    hop_seconds = serializers.FloatField(help_text="Frame i starts at i × hop_seconds.")
    labels = serializers.ListField(child=serializers.ChoiceField(choices=LABELS))
    scores = serializers.ListField(
        child=serializers.ListField(child=_probability()), help_text="Per frame, one probability per label."
    )


class ModelRef(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class EmotionResult(serializers.Serializer):
    top = EmotionTop()
    scores = EmotionScores()
    labels_raw = serializers.ListField(child=serializers.CharField(), help_text="The model's own labels.")
    granularity = serializers.ChoiceField(choices=("utterance", "frame"))
    windows = serializers.IntegerField(min_value=1, help_text="Overlapping windows the audio was analysed in.")
    duration_seconds = serializers.FloatField(min_value=0)
    model = ModelRef()
    frames = EmotionFrames(allow_null=True, help_text="Set for `granularity=frame`.")
    embedding_shape = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False,
        help_text="Present with `extract_embedding`: the shape of the .npy output.",
    )


# --- beat-sync ------------------------------------------------------------------------------------------------


class BeatsyncAlignment(serializers.Serializer):
    offset_seconds = serializers.FloatField(help_text="Music time t plays at video time t + offset_seconds.")
    confidence = _probability()
    overlap_seconds = serializers.FloatField()
    peak_ratio = serializers.FloatField()
    peak_zscore = serializers.FloatField()
    coarse_offset_seconds = serializers.FloatField()
    coarse_peak_ratio = serializers.FloatField()
    coarse_peak_zscore = serializers.FloatField()
    correlation = serializers.FloatField(min_value=-1, max_value=1)
    candidates_checked = serializers.IntegerField(min_value=0)
    video_audio_seconds = serializers.FloatField()
    music_seconds = serializers.FloatField()


class MediaInfo(serializers.Serializer):
    container = serializers.CharField(help_text="MP4, MOV, M4A, MP3, WAV or FLAC.")
    format_name = serializers.CharField()
    size_bytes = serializers.IntegerField(min_value=0)
    duration_seconds = serializers.FloatField(min_value=0)
    has_video = serializers.BooleanField()
    has_audio = serializers.BooleanField()
    video_codec = serializers.CharField(allow_null=True)
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    fps = serializers.FloatField(allow_null=True)
    audio_codec = serializers.CharField(allow_null=True)
    audio_sample_rate = serializers.IntegerField(allow_null=True)
    audio_channels = serializers.IntegerField(allow_null=True)


class RenderedVideo(serializers.Serializer):
    duration_seconds = serializers.FloatField(min_value=0)
    size_bytes = serializers.IntegerField(min_value=0)
    video_codec = serializers.CharField()
    video_copied = serializers.BooleanField(help_text="True: the picture was copied bit for bit.")
    audio_codec = serializers.CharField()
    audio_sample_rate = serializers.IntegerField()
    audio_channels = serializers.IntegerField()
    source_start_seconds = serializers.FloatField()
    source_end_seconds = serializers.FloatField()
    trimmed = serializers.BooleanField()
    silence_span_seconds = serializers.ListField(
        child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True,
        help_text="[start, end] of the recording's non-silent span, when trimming.",
    )


class BeatsyncResult(serializers.Serializer):
    offset_seconds = serializers.FloatField()
    confidence = _probability()
    overlap_seconds = serializers.FloatField()
    video_duration_seconds = serializers.FloatField()
    music_duration_seconds = serializers.FloatField()
    alignment = BeatsyncAlignment()
    video = MediaInfo()
    music = MediaInfo()
    output = RenderedVideo(help_text="The synced video (download it from `output_url`).")


# --- inputs ---------------------------------------------------------------------------------------------------


class InputFile(serializers.Serializer):
    """What the upload check found in an input file."""

    filename = serializers.CharField(allow_null=True)
    format = serializers.CharField(allow_null=True, help_text="Sniffed from the bytes, not from the name.")
    size_bytes = serializers.IntegerField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    sample_rate = serializers.IntegerField(allow_null=True)
    channels = serializers.IntegerField(allow_null=True)


class BeatsyncInput(InputFile):
    """The video; its music under ``music``."""

    music = InputFile()


class WatermarkReportInput(InputFile):
    """The watermarked file; its original under ``original`` when one was sent."""

    original = InputFile(required=False)
