"""The report's five answers, written from the full run's results so that they cannot drift from it.

Every comparison word is read from a paired 95 % interval: "better" or "worse" only where the interval
excludes 0, "no different from" where it contains it. Layer names, photo counts and numbers all come
from the results dictionary (``results/report-full.json``); nothing here knows the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .stats import reading
from .variants import MEASURE_LABELS, MEASURES, flat_after_randomisation, verdicts

QUESTIONS = (
    "Does the map localise the object?",
    "Is it faithful to what the network uses?",
    "Does it pass the sanity check?",
    "Which variant of Grad-CAM to use?",
    "What does it cost?",
)


def compared_with(interval: Sequence[float], other: str, higher_is_better: bool = True) -> str:
    """The phrase that sets a against ``other`` by the paired interval of (a - b)."""
    word = reading(interval, higher_is_better)
    return f"no different from {other}" if word == "same" else f"{word} than {other}"


def against_level(entry: dict[str, Any], level: float, name: str = "chance") -> str:
    """A mean with its interval set against a fixed level (a chance level, not a paired estimate):
    above or below it only where the whole interval is."""
    low, high = entry["ci95"]
    word = {"better": "above", "worse": "below", "same": "no different from"}[reading((low - level, high - level))]
    return f"{estimate(entry)}, {word} {name} ({level:.3f})"


def span(interval: Sequence[float]) -> str:
    """An interval as the report prints it, three decimals."""
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def signed_span(interval: Sequence[float]) -> str:
    """A paired difference's interval with its signs, so its side of 0 shows at a glance."""
    return f"{interval[0]:+.3f} to {interval[1]:+.3f}"


def estimate(entry: dict[str, Any]) -> str:
    """A mean with its 95 % interval."""
    return f"{entry['mean']:.3f} {span(entry['ci95'])}"


# --- the sanity check's verdict --------------------------------------------------------------------


@dataclass(frozen=True)
class SanityVerdict:
    """One method's reading of the cascading randomisation by the report's single criterion."""

    method: str
    reference: float  # mean |Spearman| between the trained model's maps of two unrelated photos
    curve: tuple[float, ...]  # mean |Spearman| to the trained map, stage by stage from the top
    reached: int | None  # index of the first stage whose mean |Spearman| is at or below the reference
    stages: tuple[str, ...]

    @property
    def passes(self) -> bool:
        """The map has become as different as another photo's while the lower stages still hold
        trained weights; a map that gets there only when every stage is random says nothing about
        what the network learned, since nothing learned is left."""
        return self.reached is not None and self.reached < len(self.stages) - 1

    @property
    def stage(self) -> str | None:
        """The stage at which the map first reached the reference level (None: never)."""
        return None if self.reached is None else self.stages[self.reached]


def sanity_verdicts(sanity: dict[str, Any]) -> dict[str, SanityVerdict]:
    """Each method's verdict from the stored curves, with the same criterion for every method."""
    stages = tuple(sanity["stages"])
    out = {}
    for method, curve in sanity["curve_abs_spearman"].items():
        reference = float(sanity["reference_abs_spearman_by_method"][method])
        reached = next((i for i, value in enumerate(curve) if value <= reference), None)
        out[method] = SanityVerdict(method, reference, tuple(curve), reached, stages)
    return out


def describe_sanity(verdict: SanityVerdict, depth: int) -> str:
    """Where the method's map reached its reference level, and whether that passes (without its name)."""
    if verdict.stage is None:
        where = f"never reaches its reference level ({verdict.reference:.3f}), not even with all {depth} stages random"
    elif not verdict.passes:
        where = (
            f"reaches its reference level ({verdict.reference:.3f}) only when all {depth} stages are random "
            f"({verdict.curve[verdict.reached or 0]:.3f})"
        )
    else:
        where = (
            f"is at or below its reference level ({verdict.reference:.3f}) already when randomised down to "
            f"`{verdict.stage}` ({verdict.curve[verdict.reached or 0]:.3f})"
        )
    return f"{where}: {'passes' if verdict.passes else 'fails'}"


# --- the five answers ------------------------------------------------------------------------------


def answer_localisation(full: dict[str, Any]) -> str:
    """Energy and pointing of the default layer against the centre prior, on all photos and small ones."""
    loc = full["localisation"]
    layer = loc["default_layer"]
    small = loc["small_objects"]
    energy, pointing = loc["energy_diff_vs_center_ci95"], loc["pointing_diff_vs_center_ci95"]
    words = {reading(energy), reading(pointing)}
    opening = "Yes" if words == {"better"} else ("Partly" if "better" in words else "No")
    return (
        f"{opening}. At `{layer}`, on {loc['n_photos']} photos, {estimate(loc[layer]['energy'])} of the map's mass "
        f"lies in the boxes ({compared_with(energy, 'the centre prior')}, paired {signed_span(energy)}) and its peak "
        f"hits a box on {estimate(loc[layer]['pointing'])} of them "
        f"({compared_with(pointing, 'the centre prior')}, paired {signed_span(pointing)}). On the "
        f"{small['n_photos']} photos whose boxes cover under {small['max_box_coverage']:.0%} of the photo, energy is "
        f"{estimate(small[layer]['energy'])} against a chance level of {small['chance_energy']:.3f} "
        f"({compared_with(small['energy_diff_vs_center_ci95'], 'the centre prior')}, "
        f"paired {signed_span(small['energy_diff_vs_center_ci95'])})."
    )


def answer_faithfulness(full: dict[str, Any]) -> str:
    """Insertion, deletion and ROAD of Grad-CAM against the centre prior, paired."""
    road = full["faithfulness"]["road"]
    checks = [
        ("insertion AUC", full["insertion_auc"], full["insertion_diff_vs_center_ci95"], True),
        ("deletion AUC", full["deletion_auc"], full["deletion_diff_vs_center_ci95"], False),
        ("ROAD gap", {m: road[m]["gap"] for m in ("gradcam", "center")}, road["gap_diff_vs_center_ci95"], True),
    ]
    words = {reading(diff, higher) for *_, diff, higher in checks}
    opening = "Yes" if words == {"better"} else ("Partly" if "better" in words else "No")
    parts = [
        f"{name} {estimate(table['gradcam'])}, {compared_with(diff, 'the centre prior', higher)} "
        f"({table['center']['mean']:.3f}; paired {signed_span(diff)})"
        for name, table, diff, higher in checks
    ]
    random = signed_span(road["gap_diff_vs_random_ci95"])
    return (
        f"{opening}. On {full['n_photos']} photos, removing or restoring pixels in the order of Grad-CAM's map: "
        + "; ".join(parts)
        + f". Against the random map, the ROAD gap's paired difference is {random}."
    )


def answer_sanity(full: dict[str, Any]) -> str:
    """The verdict of every method by the one criterion."""
    sanity = full["sanity"]
    read = sanity_verdicts(sanity)
    gradcam = read["gradcam"]
    others = "; ".join(f"{m} {describe_sanity(v, sanity['depth'])}" for m, v in read.items() if m != "gradcam")
    return (
        f"{'Yes' if gradcam.passes else 'No'}. On {sanity['n_photos']} photos, a method passes when its map, as the "
        f"weights are randomised from the top, becomes as different from the trained map as another photo's map "
        f"is while lower stages are still trained: Grad-CAM {describe_sanity(gradcam, sanity['depth'])}. "
        f"The controls: {others}."
    )


def variant_findings(block: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """Per variant, the measures on which its paired interval says better and worse than Grad-CAM."""
    read = verdicts(block)
    out: dict[str, dict[str, list[str]]] = {}
    for variant, by_measure in read.items():
        found: dict[str, list[str]] = {"better": [], "worse": []}
        for measure in MEASURES:
            word = by_measure[measure]
            if word == "better" and measure == "sanity_final_abs_spearman" and flat_after_randomisation(block[variant]):
                continue
            if word in found:
                found[word].append(measure)
        out[variant] = found
    return out


def _list(measures: Sequence[str]) -> str:
    return ", ".join(MEASURE_LABELS[m] for m in measures)


def _gain(variant: str, entry: dict[str, Any], measures: Sequence[str]) -> str:
    """A variant's gains over Grad-CAM, with the paired interval of the first and its photo count."""
    first = entry[measures[0]]
    which = f" on {MEASURE_LABELS[measures[0]]}" if len(measures) > 1 else ""
    return (
        f"{variant} on {_list(measures)} (paired {signed_span(first['diff_vs_gradcam_ci95'])}{which}, "
        f"{first['n_photos']} photos)"
    )


def _layer_sentence(layer: str, block: dict[str, Any]) -> str:
    """Which variants beat or lose to Grad-CAM at one layer, with the photos each was paired on."""
    found = variant_findings(block)
    same_maps = [v for v in found if block[v]["same_map_as_gradcam"]]
    better = [_gain(v, block[v], f["better"]) for v, f in found.items() if f["better"]]
    worse = [f"{v} on {_list(f['worse'])}" for v, f in found.items() if f["worse"]]
    none = "no variant is better than Grad-CAM on any measure"
    text = f"at `{layer}`, " + ("better than Grad-CAM: " + "; ".join(better) if better else none)
    if same_maps:
        text += f" ({' and '.join(same_maps)} give Grad-CAM's own maps)"
    if worse:
        text += "; worse: " + "; ".join(worse)
    return text


def answer_variant(full: dict[str, Any]) -> str:
    """The variant to use at the default layer, and what the other layers show."""
    by_layer = full["variants_by_layer"]
    default = full["localisation"]["default_layer"]
    found = variant_findings(by_layer[default])
    winners = [v for v, f in found.items() if f["better"] and not f["worse"]]
    choice = " or ".join(winners) if winners else "Grad-CAM"
    others = "; ".join(_layer_sentence(layer, block) for layer, block in by_layer.items() if layer != default)
    here = _layer_sentence(default, by_layer[default])
    return (
        f"{choice} at the default layer. Paired with Grad-CAM on the same photos, {here}. Inside the network, {others}."
    )


def answer_cost(full: dict[str, Any]) -> str:
    """What a map is made of, and what the full run's stages took (wall time on the recorded CPU).

    The seconds of one heatmap depend on the machine more than on the code, so they are timed live
    in the report's cost section rather than quoted from a run made elsewhere.
    """
    cost, config = full["cost"], full["config"]
    stages = cost["stage_seconds"]
    longest = max(stages, key=stages.__getitem__)
    return (
        "One forward pass and one backward pass down to the layer per Grad-CAM map, whatever the layer "
        "(the cost section times one on this machine); Score-CAM costs one forward pass per channel of its "
        "layer that varies over the map. "
        f"The whole evaluation took {cost['seconds'] / 60:.1f} minutes on {config['threads']} cores of an "
        f"{config['cpu']['model']} ({cost['seconds_per_photo']:.2f} s per validation photo), the longest stage "
        f"being {longest.replace('_', ' ')} ({stages[longest] / 60:.1f} minutes)."
    )


def answers(full: dict[str, Any]) -> list[tuple[str, str]]:
    """The five (question, answer) pairs, each answer written from ``full`` alone."""
    writers = (answer_localisation, answer_faithfulness, answer_sanity, answer_variant, answer_cost)
    return [(question, write(full)) for question, write in zip(QUESTIONS, writers, strict=True)]


def render_markdown(pairs: Sequence[tuple[str, str]]) -> str:
    """The answers as a numbered Markdown list, each question in bold."""
    return "\n".join(f"{k}. **{question}** {answer}" for k, (question, answer) in enumerate(pairs, start=1))
