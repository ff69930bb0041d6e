"""Inference: each model package runs on the board and its outputs match the goldens within their tolerances.

What a lab learns here (RKNN-Toolkit manual 4.2, 3.1): wrong outputs with no error (compared on raw tensors,
4.2.8; per output, with tolerances, 4.2.6), batch results matched to their own inputs (4.2.5-4.2.7), an NPU
hang caught with dmesg and the board recovered (4.2.13), models a board cannot load refused before the push
(4.1.2), and unchanged models not transferred again.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from harness.errors import ProductError
from harness.npu.deploy import remote_folder
from harness.npu.goldens import judge
from harness.report.evidence import record_golden


def test_outputs_match_goldens(model_package, npu_run, golden_policy) -> None:
    run = npu_run(model_package)
    meta = model_package.golden_meta(run.chip, run.model_sha256)
    failures = []
    for sample, outputs in run.per_sample().items():
        verdict = judge(outputs, run.golden_dir(sample), tolerances=model_package.tolerances(),
                        policy=golden_policy, meta=meta,
                        create_command=f"pytest {Path(__file__).name} --board {run.board} --regen-goldens")
        record_golden(run.board, model_package.name, verdict, sample=sample)
        if not verdict.passed:
            label = f"sample {sample}: " if sample else ""
            failures.append(label + verdict.message().replace("\n", f"\n{label}"))
    if failures:
        pytest.fail(f"{model_package.name} on {run.board} ({run.chip}, {model_package.precision}, {run.runner}) "
                    f"differs from its golden:\n" + "\n".join(failures), pytrace=False)


def test_unchanged_model_is_not_pushed_again(model_package, npu_push) -> None:
    first = npu_push(model_package)
    second = npu_push(model_package)
    assert second.pushed == (), f"pushed again although unchanged: {second.pushed}"
    assert set(second.reused) == {first.model, *first.inputs}


def test_model_for_another_chip_is_refused_before_push(board, npu_push, wrong_target_package) -> None:
    package = wrong_target_package
    chip = board.chip.name if board.chip.name in package.manifest.targets else None
    if chip is None:
        pytest.skip(f"the refused package has no file filed under {board.chip.name}")
    with pytest.raises(ProductError) as refused:
        npu_push(package)
    message = str(refused.value)
    assert "-13" in message and "4.1.2" in message and board.chip.name in message, message
    folder = remote_folder(package, chip)
    listing = board.shell(f"ls {shlex.quote(folder)} 2>/dev/null").stdout.split()
    assert package.model_file(chip).name not in listing, "the refused model reached the board"
