"""Golden comparison and the golden-file policies: numbers in messages, NaN rules, top-k, refusals, real files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import BoardError, ConfigError, ProductError
from harness.npu.goldens import (
    compare,
    hang_suspected,
    is_all_zero,
    judge,
    load_golden,
    save_golden,
)

RNG = np.random.default_rng(42)


def scores(n: int = 1000) -> np.ndarray:
    return RNG.standard_normal((1, n)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ compare
def test_exact_by_default_and_the_message_carries_the_numbers():
    golden = scores()
    assert compare(golden.copy(), golden).passed
    actual = golden.copy()
    actual[0, 17] += 0.53
    actual[0, 3] += 1e-6
    result = compare(actual, golden)
    assert not result.passed and result.n_mismatched == 2 and result.n_elements == 1000
    assert result.worst_index == (0, 17)
    assert result.max_abs_err == pytest.approx(0.53, abs=1e-5)
    assert result.worst_actual == pytest.approx(float(actual[0, 17]))
    message = result.message()
    assert message.startswith("output0: 2 of 1000 elements differ beyond atol=0 rtol=0: max abs err 0.53 at (0, 17)")
    assert "mean 0.00053" in message and "cosine 0.99" in message


def test_tolerance_passes_small_noise_and_fails_beyond_it():
    golden = scores()
    noisy = golden + np.float32(0.004) * np.sign(RNG.standard_normal(golden.shape)).astype(np.float32)
    assert compare(noisy, golden, atol=0.01).passed
    assert not compare(noisy, golden, atol=0.001).passed
    # rtol scales with the golden: 0.4 % noise on values >= 1 passes rtol=0.005 alone
    big = np.full((4, 4), 10.0, dtype=np.float32)
    assert compare(big * 1.004, big, rtol=0.005).passed
    assert compare(big * 1.006, big, rtol=0.005).n_mismatched == 16


def test_cosine_floor():
    golden = scores()
    flipped = golden.copy()
    flipped[0, :100] *= -1
    expected = float(np.dot(flipped.ravel().astype(np.float64), golden.ravel()) /
                     (np.linalg.norm(flipped.astype(np.float64)) * np.linalg.norm(golden.astype(np.float64))))
    result = compare(flipped, golden, atol=np.inf, min_cosine=0.99)
    assert result.cosine == pytest.approx(expected, abs=1e-9) and not result.passed
    assert compare(flipped, golden, atol=np.inf, min_cosine=0.7).passed


def test_shape_mismatch_is_reported_not_broadcast():
    result = compare(np.zeros((1, 10), np.float32), np.zeros((10,), np.float32))
    assert not result.passed
    assert result.message() == "output0: shape (1, 10) differs from the golden's (10,): not compared"
    assert not compare(np.zeros((2, 1)), np.zeros((1, 2))).passed


def test_int_vs_float_arrays_are_not_compared():
    result = compare(np.zeros(4, np.int8), np.zeros(4, np.float32), name="logits")
    assert not result.passed and "int8 (integer)" in result.message() and result.message().startswith("logits:")


def test_integer_outputs_compare_without_overflow():
    golden = np.array([-128, 0, 127], dtype=np.int8)
    actual = np.array([127, 0, 127], dtype=np.int8)
    result = compare(actual, golden, atol=1)
    assert result.n_mismatched == 1 and result.max_abs_err == 255.0


def test_nan_equals_nan_only_when_both_are_nan_and_is_counted():
    golden = np.array([1.0, np.nan, np.nan, 2.0, np.inf, -np.inf], dtype=np.float32)
    same = golden.copy()
    assert compare(same, golden).passed
    assert compare(same, golden).nan_actual == 2
    actual = golden.copy()
    actual[2] = 3.0  # NaN in the golden only
    actual[3] = np.nan  # NaN in the actual only
    actual[5] = np.inf  # the other infinity
    result = compare(actual, golden, atol=1e9)
    assert result.n_mismatched == 3 and not result.passed
    assert (result.nan_actual, result.nan_golden) == (2, 2)
    assert result.worst_index == (2,)  # the first NaN mismatch is the worst error
    assert "NaN: 2 in actual, 2 in golden" in result.message()
    assert result.max_abs_err == 0.0  # errors are measured where both sides are finite


def test_top_k_agreement_for_classifiers():
    golden = np.array([[0.1, 0.9, 0.5, 0.3, 0.7, 0.0, 0.2]], dtype=np.float32)
    same_order = golden * 2  # far outside atol but the same ranking
    result = compare(same_order, golden, atol=np.inf, top_k=3)
    assert result.passed and (result.top_k_agree, result.top_k_total, result.top1_equal) == (3, 3, True)
    swapped = golden.copy()
    swapped[0, 1], swapped[0, 4] = 0.7, 0.9  # top-1 changes, the top-3 set does not
    result = compare(swapped, golden, atol=np.inf, top_k=3)
    assert not result.passed and result.top_k_agree == 3 and result.top1_equal is False
    assert "top-3 agree 3/3, top-1 differs" in result.message()
    demoted = golden.copy()
    demoted[0, 2] = -1.0  # class 2 leaves the top-3, class 3 enters
    result = compare(demoted, golden, atol=np.inf, top_k=3)
    assert result.top_k_agree == 2 and result.top1_equal and not result.passed


def test_top_k_is_per_batch_row():
    golden = np.array([[3, 2, 1], [1, 2, 3]], dtype=np.float32)
    result = compare(golden[::-1].copy(), golden, atol=np.inf, top_k=1)
    assert (result.top_k_agree, result.top_k_total) == (0, 2)


def test_large_outputs_are_chunked_and_still_exact():
    golden = RNG.standard_normal(7 * 450_001).astype(np.float32)  # many chunks
    actual = golden.copy()
    actual[-1] += 2.0
    actual[5] += 1.0
    result = compare(actual.reshape(-1, 7), golden.reshape(-1, 7))
    assert result.n_mismatched == 2 and result.worst_index == ((golden.size - 1) // 7, 6)
    assert result.mean_abs_err == pytest.approx(3.0 / golden.size, rel=1e-4)


def test_bad_tolerances_are_config_errors():
    with pytest.raises(ConfigError):
        compare(scores(), scores(), atol=-1)
    with pytest.raises(ConfigError):
        compare(scores(), scores(), rtol=float("nan"))
    with pytest.raises(ConfigError):
        compare(scores(), scores(), top_k=0)


# ------------------------------------------------------------------------------------------------ hangs
def test_all_zero_and_the_hang_rule():
    zeros = [np.zeros((1, 10), np.float32), np.zeros(3, np.float32)]
    assert is_all_zero(zeros) and not is_all_zero([]) and not is_all_zero([np.zeros(0)])
    assert not is_all_zero([np.array([0.0, np.nan])])
    assert "4.2.13" in hang_suspected(zeros, [scores(10), np.zeros(3)])
    assert hang_suspected(zeros, [np.zeros((1, 10)), np.zeros(3)]) is None  # the golden is zero too
    assert hang_suspected([scores(10)], [scores(10)]) is None


# ------------------------------------------------------------------------------------------------ golden files
META = {"board": "sim-rk3588", "chip": "rk3588", "versions": {"runtime": "2.3.2", "driver": "0.9.8"},
        "command": "pytest suites/models --board sim-rk3588 --regen-goldens", "precision": "float16"}
CREATE = "pytest suites/models/mobilenet --board sim-rk3588 --regen-goldens"


def test_save_and_load_round_trip(tmp_path):
    outputs = [scores(10), np.arange(6, dtype=np.int8).reshape(2, 3)]
    save_golden(tmp_path / "g", outputs, META)
    loaded, meta = load_golden(tmp_path / "g")
    assert [a.dtype for a in loaded] == [np.float32, np.int8]
    assert all(np.array_equal(a, b) for a, b in zip(loaded, outputs))
    assert meta["chip"] == "rk3588" and meta["precision"] == "float16" and meta["date"]
    assert meta["outputs"][1] == {"name": "output1", "shape": [2, 3], "dtype": "int8"}
    on_disk = json.loads((tmp_path / "g" / "golden.json").read_text())
    assert on_disk["versions"] == META["versions"]
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["golden.json", "outputs.npz"]  # no temp files


def test_twelve_outputs_keep_their_order(tmp_path):
    outputs = [np.full(2, i, np.float32) for i in range(12)]
    save_golden(tmp_path, outputs, {})
    assert [int(a[0]) for a in load_golden(tmp_path)[0]] == list(range(12))


def test_missing_golden_names_the_command_that_creates_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_golden(tmp_path / "none", create_command=CREATE)
    assert CREATE in str(info.value) and "no golden at" in str(info.value)
    with pytest.raises(ConfigError, match="create it with: " + CREATE.replace(" ", r"\s")):
        judge([scores(10)], tmp_path / "none", policy="check", meta=META, create_command=CREATE)


def test_corrupt_golden_or_metadata_is_a_config_error(tmp_path):
    save_golden(tmp_path, [scores(4)], META)
    (tmp_path / "outputs.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="unreadable"):
        load_golden(tmp_path)
    with pytest.raises(ConfigError, match="not JSON"):
        save_golden(tmp_path / "x", [scores(4)], {"when": object()})


def test_judge_check_passes_and_fails_with_product_error(tmp_path):
    golden = [scores(100), scores(5)]
    save_golden(tmp_path, golden, META)
    before = (tmp_path / "outputs.npz").read_bytes(), (tmp_path / "golden.json").read_bytes()
    ok = judge([g + np.float32(1e-4) for g in golden], tmp_path, tolerances={"atol": 1e-3}, meta=META)
    assert ok.passed and len(ok.comparisons) == 2
    ok.raise_for_failure()
    per_output = {"atol": 1e-3, "per_output": {"output0": {"atol": 2}}}
    bad = judge([golden[0] + 1, golden[1]], tmp_path, tolerances=per_output, meta=META)
    assert bad.passed  # per-output tolerance lets output0 through
    bad = judge([golden[0] + 1, golden[1]], tmp_path, tolerances={"atol": 1e-3}, meta=META)
    assert not bad.passed and "output0: 100 of 100 elements differ" in bad.message()
    with pytest.raises(ProductError):
        bad.raise_for_failure()
    after = (tmp_path / "outputs.npz").read_bytes(), (tmp_path / "golden.json").read_bytes()
    assert after == before  # check never writes


def test_judge_output_count_mismatch_fails(tmp_path):
    save_golden(tmp_path, [scores(4), scores(4)], META)
    verdict = judge([scores(4)], tmp_path, tolerances={"atol": np.inf}, meta=META)
    assert not verdict.passed and "1 outputs but the golden" in verdict.message()


def test_update_rewrites_only_failing_outputs_and_fails(tmp_path):
    golden = [scores(8), scores(8)]
    save_golden(tmp_path, golden, META)
    actual = [golden[0].copy(), golden[1] + 5]
    verdict = judge(actual, tmp_path, tolerances={"atol": 0.1}, policy="update", meta=META, create_command=CREATE)
    assert not verdict.passed and verdict.rewritten == ("output1",)
    loaded, meta = load_golden(tmp_path)
    assert np.array_equal(loaded[0], golden[0]) and np.array_equal(loaded[1], actual[1])
    assert meta["updated_outputs"] == ["output1"]
    again = judge(actual, tmp_path, tolerances={"atol": 0.1}, policy="check", meta=META)
    assert again.passed


def test_update_creates_a_missing_golden_and_fails(tmp_path):
    verdict = judge([scores(3)], tmp_path / "new", policy="update", meta=META)
    assert not verdict.passed and "created from this run" in verdict.message()
    assert load_golden(tmp_path / "new")[0][0].shape == (1, 3)


def test_regen_rewrites_everything_and_passes(tmp_path):
    save_golden(tmp_path, [scores(8)], {**META, "board": "old"})
    actual = [scores(8), scores(2)]
    verdict = judge(actual, tmp_path, policy="regen", meta=META)
    assert verdict.passed and verdict.rewritten == ("output0", "output1")
    loaded, meta = load_golden(tmp_path)
    assert len(loaded) == 2 and np.array_equal(loaded[0], actual[0]) and meta["board"] == "sim-rk3588"


def test_hang_is_a_board_error_and_never_becomes_the_golden(tmp_path):
    golden = [scores(8)]
    save_golden(tmp_path, golden, META)
    zeros = [np.zeros((1, 8), np.float32)]
    for policy in ("check", "update", "regen"):
        verdict = judge(zeros, tmp_path, tolerances={"atol": 0.1}, policy=policy, meta=META)
        assert not verdict.passed and verdict.hang, policy
        with pytest.raises(BoardError, match="4.2.13"):
            verdict.raise_for_failure()
    assert np.array_equal(load_golden(tmp_path)[0][0], golden[0])


@pytest.mark.parametrize(("mine", "theirs"), [("int8", "float32"), ("float16", "uint8")])
def test_quantized_vs_float_is_refused_with_the_manual_reason(tmp_path, mine, theirs):
    save_golden(tmp_path, [scores(8)], {**META, "precision": theirs})
    with pytest.raises(ConfigError) as info:
        judge([scores(8)], tmp_path, tolerances={"atol": np.inf}, meta={**META, "precision": mine},
              create_command=CREATE)
    assert "3.1 (3)" in str(info.value) and mine in str(info.value) and CREATE in str(info.value)


def test_update_across_precisions_replaces_the_whole_set(tmp_path):
    save_golden(tmp_path, [scores(8), scores(2)], {**META, "precision": "float32"})
    actual = [scores(8), scores(2)]
    verdict = judge(actual, tmp_path, policy="update", meta={**META, "precision": "int8"})
    assert not verdict.passed and verdict.rewritten == ("output0", "output1") and "3.1 (3)" in verdict.message()
    loaded, meta = load_golden(tmp_path)
    assert meta["precision"] == "int8" and np.array_equal(loaded[1], actual[1])


def test_unknown_precision_policy_or_tolerance_key_is_a_config_error(tmp_path):
    save_golden(tmp_path, [scores(8)], META)
    with pytest.raises(ConfigError, match="unknown precision"):
        judge([scores(8)], tmp_path, meta={"precision": "int3"})
    with pytest.raises(ConfigError, match="unknown golden policy"):
        judge([scores(8)], tmp_path, policy="sometimes", meta=META)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="atl"):
        judge([scores(8)], tmp_path, tolerances={"atl": 1}, meta=META)
