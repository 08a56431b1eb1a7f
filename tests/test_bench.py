"""The benchmark runs end to end and writes what the report reads; timings themselves are not judged."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torchvision

from gradcam_tutorial import CAM_METHODS, GradCAM
from gradcam_tutorial.evaluation import cost as bench

import bench as bench_script  # benchmarks/bench.py, on pytest's pythonpath


@pytest.fixture(scope="module")
def results():
    # One round on 64-pixel inputs, one thread: a smoke test of the machinery (about 35 passes).
    # The variants at an early block (24 channels): Score-CAM's one pass per channel stays cheap.
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(bench.VARIANT_LAYERS, "efficientnet_lite0", "_blocks.2")
        return bench.run_benchmark(("efficientnet_lite0",), repeats=1, warmup=0, threads=1, input_size=64)


@pytest.mark.slow
def test_every_variant_is_timed_against_the_forward_pass_and_pytorch_grad_cam(results):
    entry = results["efficientnet_lite0"]
    assert list(entry["variants"]) == list(CAM_METHODS)
    for name, row in entry["variants"].items():
        assert set(row) == set(bench.VARIANT_KEYS), name
        assert all(isinstance(value, float) and value > 0 for value in row.values()), name
        if name != "scorecam":
            assert entry["ratios"][f"{name}_9/forward"] == pytest.approx(row["ours_9_ms"] / entry["forward_ms"])
    assert "scorecam_9/forward" not in entry["ratios"]
    table = bench.format_table(results)
    assert all(f"  {name} " in table for name in CAM_METHODS)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variants"):
        bench.run_benchmark(("efficientnet_lite0",), variants=("eigencam",))


def test_results_have_every_timing_ratio_and_goal(results):
    assert list(results) == ["efficientnet_lite0"]
    entry = results["efficientnet_lite0"]
    assert set(bench.TIMING_KEYS) <= set(entry)
    assert all(isinstance(entry[key], float) and entry[key] > 0 for key in bench.TIMING_KEYS)
    assert set(entry["ratios"]) == set(bench.GOALS) == set(entry["goals"])
    assert all(value > 0 for value in entry["ratios"].values())
    assert entry["ratios"]["naive_9/ours_9"] == pytest.approx(entry["naive_9_ms"] / entry["ours_9_ms"])
    assert all(isinstance(met, bool) for met in entry["goals"].values())


def test_table_names_every_method_and_goal(results):
    table = bench.format_table(results)
    for key in bench.TIMING_KEYS:
        assert f" {key.removesuffix('_ms')} " in table
    assert table.count("goal ") == len(bench.GOALS)
    plain = bench.format_table(results, goals=False)
    assert "goal" not in plain and not re.search(r"\b(met|MISSED)\b", plain)
    assert all(f" {key.removesuffix('_ms')} " in plain for key in bench.TIMING_KEYS)


def test_naive_version_computes_grad_cam():
    """The naive baseline is only a fair comparison if it computes the same maps as ours."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with GradCAM(model, "layer3") as cam:
        ours = cam.compute(x, 285).maps[:, 0]
    naive = bench.naive_gradcam(model, model.layer3, x, 285)
    assert ours.abs().max() > 0
    torch.testing.assert_close(naive, ours, rtol=1e-4, atol=1e-5 * float(ours.abs().max()))
    assert model.fc.weight.grad is not None, "the naive way fills parameter gradients, as the post's did"


def test_command_line_writes_json(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(models, repeats, warmup, threads, variants, score_cam_repeats):
        calls.append((tuple(models), repeats, warmup, threads, tuple(variants), score_cam_repeats))
        return {"resnet18": {**dict.fromkeys(bench.TIMING_KEYS, 1.0), "ratios": {}, "goals": {}}}

    monkeypatch.setattr(bench_script, "run_benchmark", fake_run)
    monkeypatch.setattr(bench_script, "format_table", lambda results: "TABLE")
    out = tmp_path / "sub" / "bench.json"
    assert bench_script.main(["--out", str(out), "--repeats", "3", "--models", "resnet18"]) == 0
    assert calls == [(("resnet18",), 3, 2, 2, tuple(CAM_METHODS), 1)]
    assert bench_script.main(["--out", str(out), "--variants", "hirescam", "--score-cam-repeats", "2"]) == 0
    assert calls[-1][4:] == (("hirescam",), 2)
    assert json.loads(out.read_text())["resnet18"]["forward_ms"] == 1.0
    assert "TABLE" in capsys.readouterr().out


@pytest.mark.slow
def test_the_road_benchmark_compares_two_orderings_on_the_same_masks(monkeypatch, tmp_path):
    import bench_road  # benchmarks/bench_road.py, on pytest's pythonpath
    from gradcam_tutorial.evaluation import road

    monkeypatch.setattr(bench_road, "PERCENTAGES", (30.0,))  # 32 masks: a smoke test, not a timing
    cache = road._FACTORISATIONS
    result = bench_road.run(rounds=1)
    assert road._FACTORISATIONS is cache  # the benchmark keeps no factors of its own in ROAD's cache
    assert result["masks"] == 8 * 2 * 2  # demo photos and mirrors, Grad-CAM and random, two orders
    assert set(result["ms_per_mask"]) == {"dissection", "superlu_mmd"}
    assert all(value > 0 for value in result["ms_per_mask"].values())
    assert result["mmd_over_dissection"] == pytest.approx(
        result["ms_per_mask"]["superlu_mmd"] / result["ms_per_mask"]["dissection"]
    )
    assert 0 <= result["max_abs_difference"] < 1e-9  # two orderings: equal to rounding, not bit for bit
    assert result["solver"].startswith("SuperLU (scipy ")
    assert bench_road.main(["--rounds", "1", "--out", str(tmp_path / "road.json")]) == 0
    assert json.loads((tmp_path / "road.json").read_text())["masks"] == 32


@pytest.mark.slow
def test_the_every_class_benchmark_times_each_way_against_the_forward_pass(tmp_path, capsys):
    import bench_every_class  # benchmarks/, on pytest's pythonpath

    out = tmp_path / "every.json"
    argv = ["--models", "efficientnet_lite0", "--rounds", "1", "--slow-rounds", "1", "--warmup", "0"]
    assert bench_every_class.main([*argv, "--threads", "1", "--input-size", "64", "--out", str(out)]) == 0
    (entry,) = json.loads(out.read_text())
    keys = {"weights", "forward_mode", "per_class", "forward_mode_earlier", "per_class_earlier"}
    assert set(entry["per_forward"]) == keys and set(entry["ms"]) == keys | {"forward"}
    for key in ("weights", "forward_mode", "per_class"):  # the slow rows have a forward pass of their own
        assert entry["per_forward"][key] == pytest.approx(entry["ms"][key] / entry["ms"]["forward"])
    assert all(entry["per_forward"][key] > 0 for key in keys)
    printed = capsys.readouterr().out
    assert "`_blocks.14`, forward mode" in printed and "goal: all classes at `features` within 2.0 x" in printed
