"""The quantization step's configuration: one frozen, typed object saved in the output card.

Example:
    >>> cfg = QuantizeConfig(max_drop=0.01, method="entropy")
    >>> cfg.model_dump()["method"]
    'entropy'
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

CONFIG_VERSION = 1


class QuantizeConfig(BaseModel):
    """How ``xcompress quantize`` builds an int8 model.

    Attributes:
        method: calibration method, one of
            :func:`xcompress.quantize.calibrate.calibrator_names`, or ``auto``: try each of
            ``auto_methods`` and keep the one whose all-int8 model agrees best with the float
            model on the hold-out (:func:`xcompress.quantize.stages.choose_calibration`).
        auto_methods: candidates of ``auto``, ``name`` or ``percentile:<p>``; None
            (default): see :meth:`auto_methods_for`.
        range_search: where the chosen all-int8 model misses the budget, each group of
            tensors (by producing op type) may switch to one of these if that lowers the
            disagreement with float; the searched model is kept if its drop is smaller
            (:func:`xcompress.quantize.stages.range_repair`). Empty: no search.
        percentile: upper percentile of each activation kept by ``method="percentile"``.
        per_channel: per-output-channel symmetric int8 weights (needs opset >= 13; upgraded).
        max_drop: largest allowed accuracy drop, absolute, as a fraction (0.005 = 0.5 point):
            rise of CER for recognizers, fall of Hmean / accuracy for detectors / classifiers.
        metric: the metric ``max_drop`` is checked on; None: the task's default
            (rec ``cer_nospace``, PaddleOCR's default; ``cer`` counts spaces too; det
            ``hmean``; cls ``accuracy``). Both CERs are reported either way.
        synth_augment: damage preset of the built-in calibration set used when no data is
            given (``xcompress.data.synth.augment.AUGMENT_PRESETS``): ``photo`` by default;
            ``default`` is the generator's lighter damage (the earlier default).
        seed: seed of the calibration / hold-out split and of sub-sampling.
        threads: intra-op threads used for latency measurements (the target's thread count).
        target: target name (``xcompress.targets``); speeds are measured on it.
        calib_limit: at most this many calibration samples feed the range statistics
            (None: 100 text lines, 12 detection pages).
        holdout: fraction of the calibration set held out to check the budget when no
            ``--eval`` set is given.
        sensitivity_samples: samples used to rank layers by sensitivity (None: 16 lines,
            3 pages).
        max_float_fraction: give up (BudgetError) rather than keep more than this fraction
            of the quantizable layers in float.
        fallback_checks: most float sets the fallback evaluates on the budget sets (each
            check is one evaluation of every budget set).
        float_weights: layers kept in float also get float weights back (larger file);
            by default they keep per-channel int8 weights and compute in float.
        op_types: op types that may be quantized; None lets the speed-based plan choose.
        plans: candidate quantization plans, timed on the target; the fastest that meets the
            budget wins (see :mod:`xcompress.quantize.plans`).
        opset: default-domain opset the model is upgraded to before quantization (20:
            the GELU fusion writes the standard Gelu op).
        latency_runs: timed runs per model in each alternating latency comparison.
        det_size: detectors are timed at 1x3x``det_size``x``det_size`` (pages themselves
            are resized as the card says, 960 px long side for PP-OCR).
        rec_width: width of the recognizer input used for timing (height from the card).
        bias_correction: correct each layer's int32 bias for the mean output shift int8
            causes (:mod:`xcompress.quantize.bias`), kept only where it lowers the
            disagreement with float (measured on PP-OCRv4: rec int8-all 0.0231 -> 0.0197, the
            budget then met by the faster plan; det 0.045 -> 0.032, held-out Hmean unchanged
            within its interval). About 1 s per layer on 100 lines or 24 pages.
        saturation_ranges: intersect each activation range with the values its readers do
            not saturate (:func:`xcompress.quantize.qdq.saturation_bounds`: ``x`` before a
            decomposed hard-swish at ``[-3, inf)``, ``x + 3`` before ``Clip(0, 6)`` at
            ``[0, 6]``), so no int8 step is spent where the next op's output is constant.
            Off by default: on PP-OCRv4 rec (defaults, int8-all) it lowered the disagreement
            with float on the synthetic hold-out (0.0197 -> 0.0184) but not the held-out
            error: CER* on degraded document English went from +0.92 to +1.95 points
            vs fp32 (Chinese documents equal, codes +0.47 -> +0.14, 200 lines each); the range
            search then picked other tensor groups.
        float_stem: the stem (each layer reading the image itself) and the depthwise convs
            reading the stem's output compute in float in every plan, so the stem's output is
            never quantized (:func:`xcompress.quantize.qdq.stem_layers`). It carries the
            image's contrast, and one per-tensor int8 range set by high-contrast calibration
            lines leaves faint text few steps. None (default):
            on for text-line models (rec, cls), off for detectors (not measured there; a
            detector's stem runs at page size). Measured on PP-OCRv4 rec: see
            :meth:`stem_in_float`.
        prefer_wider_ranges: after ``auto`` found the candidate with the least disagreement,
            take the one that clips least among those not measurably worse on the hold-out
            (:func:`xcompress.quantize.stages.widest_within_noise`). Off by default: on
            PP-OCRv4 rec defaults (AVX2 host, 2026-12-07) it took 99.999 over 99.99 for
            int8-all and 99.995 over 99.98 for int8-conv, and the shipped int8-conv model
            read held-out lines no better (CER* vs fp32 en -0.29, zh +0.31, doc-en +1.14,
            doc-zh +2.32, codes +0.99; without it -0.20, +0.21, +2.28, +1.58, +0.61): the
            range search, bias correction and float fallback that follow moved with it.
        finalists: after ``auto`` ranked the candidates by disagreement with float, this
            many of the best are bias-corrected and the one losing least on the budget
            metric is kept (:func:`xcompress.quantize.stages.finalist_stage`); 1: the least
            disagreement alone. None (default): 2 for recognizers, 1 for detectors and
            classifiers (not measured there; a few pages or a coarse accuracy are a noisier
            pick). Costs one bias correction per extra finalist (about a minute on
            PP-OCRv4 rec). Measured there on this stop's AVX2 host (2026-12-07, 200 held-out
            lines per set, CER* change vs fp32): with 1 the default run shipped int8-conv at
            percentile 99.98 (1.28x, 466 s): en -0.20, zh +0.21, doc-en +2.28, doc-zh +1.58,
            codes +0.61; with 2 the faster int8-all plan met the budget at 99.999 (1.50x,
            308 s): -0.37, -0.10, +0.40, +1.38, +0.99.
        bias_samples: calibration inputs the shifts are measured on (None: all of them).
        synth_mix: with the user's own calibration set, lines of the built-in synthetic
            set are added to the user's (up to ``calib_limit``) until they make this share
            of the calibration samples (range statistics, bias correction); the hold-out
            and budget sets stay the user's. None (default): see :meth:`synth_mix_for`.
        allow_slower: write the int8 model even when it is not faster than float on the
            target (by default that is a BudgetError and nothing is written).
        int4_weights: after the int8 model met the budget, store the weights of the Conv /
            MatMul layers that change the outputs least per weight as int4 (GPTQ; half a
            byte per weight, the same int8 kernels: :mod:`xcompress.quantize.int4`), as
            many as ``int4_max_error_rise`` and the budget allow
            (:func:`xcompress.quantize.stages.int4_stage`). Off by default: it spends
            accuracy the int8 model had kept, for a smaller file.
        int4_max_error_rise: int4 may raise the mean squared difference between the
            model's outputs and float's (on the selection hold-out) by this fraction of the
            int8 model's. 0.2: on PP-OCRv4 rec the default run took 6 layers at x1.15 (0.55
            MB) and lost up to +0.83 CER* vs fp32 on 600-line held-out sets (int8 alone
            +0.26); 10 layers at x1.33 lost up to +1.09 (``benchmarks/results/int4.md``).
        int4_min_weights: layers with fewer weights stay int8 (little to save).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = CONFIG_VERSION
    method: str = "auto"
    auto_methods: tuple[str, ...] | None = None
    range_search: tuple[str, ...] = ("minmax",)
    percentile: float = Field(default=99.999, gt=50.0, le=100.0)
    per_channel: bool = True
    max_drop: float = Field(default=0.005, ge=0.0, le=1.0)
    metric: str | None = None
    synth_augment: str = "photo"
    seed: int = 0
    threads: int = Field(default=2, ge=1)
    target: str = "host"
    calib_limit: int | None = Field(default=None, ge=1)
    holdout: float = Field(default=0.5, gt=0.0, lt=1.0)
    sensitivity_samples: int | None = Field(default=None, ge=1)
    max_float_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    fallback_checks: int = Field(default=16, ge=1)
    float_weights: bool = False
    op_types: tuple[str, ...] | None = None
    plans: tuple[str, ...] = ("int8-all", "int8-conv")
    opset: int = Field(default=20, ge=13)
    latency_runs: int = Field(default=20, ge=3)
    det_size: int = Field(default=960, ge=32)
    rec_width: int = Field(default=320, ge=16)
    bias_correction: bool = True
    saturation_ranges: bool = False
    float_stem: bool | None = None
    prefer_wider_ranges: bool = False
    finalists: int | None = Field(default=None, ge=1)
    bias_samples: int | None = Field(default=None, ge=1)
    synth_mix: float | None = Field(default=None, ge=0.0, lt=1.0)
    allow_slower: bool = False
    int4_weights: bool = False
    int4_max_error_rise: float = Field(default=0.2, ge=0.0)
    int4_min_weights: int = Field(default=4096, ge=1)

    def finalists_for(self, task: str) -> int:
        """How many candidates :func:`~xcompress.quantize.stages.finalist_stage` carries
        through bias correction for a model of ``task`` (``finalists`` resolved)."""
        return self.finalists if self.finalists is not None else (2 if task == "rec" else 1)

    def auto_methods_for(self, task: str) -> tuple[str, ...]:
        """The candidates of ``method="auto"`` for a model of ``task`` (``auto_methods``
        resolved): percentiles 99.999 and 99.995 for recognizers; also min-max, 99.99 and
        99.98 for the others (not measured this way).

        Why recognizers keep only these two: on PP-OCRv4 rec (AVX2 host, 2026-12-07; CER*
        change vs fp32 on held-out degraded lines in fonts and text the generator does not
        use, 500-600 lines per set) every int8 model that had picked 99.99 or 99.98 lost
        more than 0.5 points on document lines (five models; the recognizer of
        ``make bench-ci`` +5.75 on English documents), and every one with 99.999 or 99.995
        stayed within 0.5 on them (five models). Min-max loses 1.5-25 points on the
        hold-out, and as a finalist it was picked by the hold-out's noise: calibrated on
        the user's own lines (``synth_mix``, seed 0) it won on 250 lines (0.20 against
        0.46 points) and then lost doc-zh +2.21, codes +1.10 on unseen lines; without it
        the same run shipped 99.999 (+0.34, +0.51). Both are finalists
        (``finalists_for``): the budget metric's drop after bias correction chooses between
        them where the difference is resolved, else the agreement with float
        (:func:`xcompress.quantize.stages.finalist_stage`).
        """
        if self.auto_methods is not None:
            return self.auto_methods
        wide = ("percentile:99.999", "percentile:99.995")
        return wide if task == "rec" else ("minmax", *wide, "percentile:99.99",
                                           "percentile:99.98")

    def synth_mix_for(self, task: str) -> float:
        """The share of built-in synthetic calibration lines beside the user's own
        (``synth_mix`` resolved): 0.5 for recognizers (100 synthetic lines beside 100 of
        the user's), 0 for the others (not measured).

        Measured on PP-OCRv4 rec calibrated on the user's own lines (500 degraded held-out
        lines of five kinds: English, Chinese, document English / Chinese, codes; the budget
        on 250 of them; AVX2 host, 2026-12-07), CER* change vs fp32 on 500 other lines per
        kind (en / zh / doc-en / doc-zh / codes):

        - own lines alone (the bias correction raised the disagreement with float there
          and was left out; 99.99 picked): -0.09, +0.00, +0.29, +1.22, +0.55;
        - the same with the correction forced on: +0.44, +0.19, +2.14, +1.12, +0.24;
        - 50 own + 50 synthetic, seed 0: -0.14, +0.17, -0.60, -0.09, +0.18; seed 1:
          +0.03, +0.24, +0.22, +0.94, +0.26;
        - 100 own + 100 synthetic (this default), seed 0: -0.28, +0.26, -0.91, +0.34, +0.51;
          seed 1: -0.16, -0.09, -0.60, -0.28, +0.00 (run time 6 minutes instead of 4).

        Ranges barely differ (median per-tensor scale ratio 1.01); the synthetic lines'
        wider contrast and damage widen a few early ranges (up to 1.8x), and with them the
        bias correction lowered the disagreement instead of raising it.
        """
        if self.synth_mix is not None:
            return self.synth_mix
        return 0.5 if task == "rec" else 0.0

    def stem_in_float(self, task: str) -> bool:
        """Whether the stem stays float for a model of ``task`` (``float_stem`` resolved).

        Measured on PP-OCRv4 rec with every other choice fixed (the same ranges, only the
        stem's Q/DQ removed), space-insensitive CER change vs fp32 on held-out lines in fonts
        and text the generator does not use (benchmarks/heldout.py, 200 lines each):
        int8-all en -0.29 -> -0.14, zh +0.26 -> +0.05, degraded document English +3.07 ->
        +2.15, Chinese +2.37 -> +1.92, codes +1.13 -> +0.28; int8-conv (odd halves, 100 lines)
        Chinese documents +1.42 -> -0.71, codes +0.37 -> -0.09. On doc-zh/doc-en lines the
        stem's output was the one tensor whose Q/DQ cost most (27% of the mean KL to fp32;
        no other above 4%). The stem is about 0.2% of the recognizer's MACs. Its output is
        quantized all the same where its reader is int8; with that reader (a 3x3 depthwise
        conv) float too, the default run (int8-all, 99.999, biases corrected) went from en
        -0.37, zh -0.10, doc-en +0.40, doc-zh +1.38, codes +0.99 to -0.34, -0.10, -0.09,
        -0.35, +0.05 (AVX2 host, 2026-12-07; about 5% slower: 1.63x -> 1.53x in one
        alternating run).
        """
        return self.float_stem if self.float_stem is not None else task in ("rec", "cls")
