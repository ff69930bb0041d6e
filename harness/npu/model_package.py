"""Model packages: ``suites/models/NAME/model.toml`` plus the files it names, checked before anything runs.

Why a package and not a bare ``.rknn``: a model on a board is only testable together with what it needs
(the inputs as raw tensors, manual 4.2.8), what it must give (goldens and tolerances per output, 4.2.6 and
3.1), how fast it must be (budgets per chip; the package has one precision, so per precision too, 4.2.15),
its input layout (4.2.14) and how it is run. Everything is validated here, with errors that name the file,
the key, what was expected and what was found (as boards.toml's loader does), so a typo stops the run
before a board is touched. Input tensors are checked against their declared shape, dtype and channel
count (4.2.9: a grayscale input fed as 3 channels) before any push.

Layout of a package folder::

    model.toml
    <one .rknn per chip>            [targets.<chip>] file = "..."
    inputs/*.npy                    [[inputs]] file = "..." (or files = [...] for a batch, one per sample)
    goldens/<chip>/<precision>/     written by the golden policy "update"/"regen", read by "check"
"""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError

MANIFEST = "model.toml"
BUILTIN_RUNNERS = ("npu_hil_runner", "rknn_benchmark")
#: Placeholders a custom runner command may use ({inputs} is the '#'-joined list, as rknn_benchmark takes).
TEMPLATE_FIELDS = frozenset({"model", "inputs", "loops", "warmup", "out"})
_DTYPES = ("float32", "float16", "uint8", "int8", "int16", "int32")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_runner(value: str) -> str:
    """A built-in runner's name, or a command template using only the known placeholders (one must be {model})."""
    if value in BUILTIN_RUNNERS:
        return value
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"unreadable command template ({exc})") from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown or "model" not in fields:
        raise ValueError(f"expected {' or '.join(BUILTIN_RUNNERS)} or a command template with {{model}} and only "
                         f"{{{'}, {'.join(sorted(TEMPLATE_FIELDS))}}} (unknown: {', '.join(sorted(unknown)) or '-'})")
    return value


class Target(_Strict):
    """The model file for one chip; ``runner`` overrides the package's runner on that chip."""

    file: str
    runner: str | None = None

    @field_validator("runner")
    @classmethod
    def _runner(cls, value: str | None) -> str | None:
        return value if value is None else _check_runner(value)


class InputSpec(_Strict):
    """One model input: its full shape (batch first), dtype, layout, and the tensor(s) that feed it."""

    name: str = Field(min_length=1)
    shape: list[int] = Field(min_length=1)
    dtype: Literal[_DTYPES] = "float32"  # type: ignore[valid-type]
    layout: Literal["NHWC", "NCHW", "UNDEFINED"] = "NHWC"
    file: str | None = None
    files: list[str] | None = None  # batch models: one file per sample, concatenated on axis 0 (4.2.5)

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: list[int]) -> list[int]:
        if any(d < 1 for d in shape):
            raise ValueError("every dimension must be >= 1")
        return shape

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if (self.file is None) == (self.files is None):
            raise ValueError("give exactly one of file (one tensor) or files (one per batch sample)")
        if self.layout != "UNDEFINED" and len(self.shape) != 4:
            raise ValueError(f"layout {self.layout} needs a 4-D shape, found {self.shape} (use UNDEFINED)")
        if self.files is not None and len(self.files) != self.shape[0]:
            raise ValueError(f"files lists {len(self.files)} samples but the batch dimension is {self.shape[0]}")
        return self

    @property
    def sources(self) -> list[str]:
        return list(self.files) if self.files is not None else [str(self.file)]

    @property
    def channels(self) -> int | None:
        return {"NHWC": self.shape[-1], "NCHW": self.shape[1]}.get(self.layout)


class OutputSpec(_Strict):
    """One output and how close it must be to its golden (4.2.6: tolerances, not bit-exactness)."""

    name: str = Field(min_length=1)
    atol: float = Field(default=1e-3, ge=0)
    rtol: float = Field(default=1e-3, ge=0)
    min_cosine: float | None = Field(default=None, ge=-1, le=1)
    top_k: int | None = Field(default=None, ge=1)


class LatencyBudget(_Strict):
    """On-board latency limits for one chip, in ms (the runner's own figures, 4.2.2); unset keys are not checked."""

    mean_ms: float | None = Field(default=None, gt=0)
    p50_ms: float | None = Field(default=None, gt=0)
    p90_ms: float | None = Field(default=None, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    max_ms: float | None = Field(default=None, gt=0)
    first_run_ms: float | None = Field(default=None, gt=0)  # the lazy first run, judged apart (4.2.3)

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Manifest(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    precision: Literal["float", "int8", "uint8"]
    runner: str = "npu_hil_runner"
    loops: int = Field(default=20, ge=1, le=100000)
    warmup: int = Field(default=2, ge=0, le=1000)
    batch: int = Field(default=1, ge=1)
    targets: dict[str, Target] = Field(min_length=1)
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[OutputSpec] = Field(min_length=1)
    latency: dict[str, LatencyBudget] = Field(default_factory=dict)

    @field_validator("runner")
    @classmethod
    def _runner(cls, value: str) -> str:
        return _check_runner(value)

    @field_validator("targets", "latency")
    @classmethod
    def _lower_chips(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {k.lower(): v for k, v in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        for spec in self.inputs:
            if spec.shape[0] != self.batch:
                raise ValueError(f"input {spec.name}: batch dimension {spec.shape[0]} != batch {self.batch}")
        for kind, items in (("input", self.inputs), ("output", self.outputs)):
            names = [i.name for i in items]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names repeat: {names}")
        stray = set(self.latency) - set(self.targets)
        if stray:
            raise ValueError(f"latency budgets for chips with no target: {', '.join(sorted(stray))}")
        return self


@dataclass(frozen=True)
class ModelPackage:
    """A validated package; paths are absolute, the manifest is immutable."""

    root: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def precision(self) -> str:
        return self.manifest.precision

    @property
    def chips(self) -> list[str]:
        return sorted(self.manifest.targets)

    def target(self, chip: str) -> Target:
        try:
            return self.manifest.targets[chip.lower()]
        except KeyError:
            raise ConfigError(f"{self.root / MANIFEST}: no target for chip {chip} "
                              f"(targets: {', '.join(self.chips)})") from None

    def model_file(self, chip: str) -> Path:
        return self.root / self.target(chip).file

    def runner_for(self, chip: str) -> str:
        return self.target(chip).runner or self.manifest.runner

    def budget(self, chip: str) -> LatencyBudget | None:
        return self.manifest.latency.get(chip.lower())

    def golden_dir(self, chip: str) -> Path:
        """``goldens/<chip>/<precision>/``: quantized results are never judged against float ones (3.1)."""
        return self.root / "goldens" / chip.lower() / self.precision

    def tolerances(self) -> dict[str, Any]:
        """The outputs' tolerances in :func:`harness.npu.goldens.judge`'s form (outputs are positional there)."""
        return {"per_output": {f"output{i}": spec.model_dump(exclude={"name"}, exclude_none=True)
                               for i, spec in enumerate(self.manifest.outputs)}}

    def golden_meta(self, chip: str, model_sha256: str) -> dict[str, Any]:
        """What a golden written from a run records: precision (judge refuses cross-precision), model, layout."""
        return {"precision": self.precision, "chip": chip.lower(), "model": self.name,
                "model_file": self.target(chip).file, "model_sha256": model_sha256,
                "outputs_named": [o.name for o in self.manifest.outputs],
                "inputs": [{"name": i.name, "shape": i.shape, "dtype": i.dtype, "layout": i.layout}
                           for i in self.manifest.inputs]}

    def sample_names(self) -> list[str]:
        """One name per batch sample (the first input's file stems), so each result is matched to its input."""
        first = self.manifest.inputs[0]
        if self.manifest.batch == 1:
            return []
        return [Path(f).stem for f in first.sources]

    def load_inputs(self) -> dict[str, np.ndarray]:
        """Each input as the full tensor the model takes (samples concatenated), checked against its spec (4.2.9)."""
        arrays = {}
        for spec in self.manifest.inputs:
            parts = [self._load_npy(spec, f) for f in spec.sources]
            array = parts[0] if spec.file is not None else np.concatenate(parts, axis=0)
            self._check_input(spec, array, spec.file or ", ".join(spec.sources))
            arrays[spec.name] = array
        return arrays

    def _load_npy(self, spec: InputSpec, name: str) -> np.ndarray:
        path = self.root / name
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ConfigError(f"{self.root / MANIFEST}: inputs.{spec.name}: file {name} not found") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.root / MANIFEST}: inputs.{spec.name}: {name} is not a readable .npy "
                              f"({exc})") from None

    def _check_input(self, spec: InputSpec, array: np.ndarray, name: str) -> None:
        where = f"{self.root / MANIFEST}: inputs.{spec.name} ({name})"
        if list(array.shape) != spec.shape:
            channels = spec.channels
            found_c = ({"NHWC": array.shape[-1], "NCHW": array.shape[1]}.get(spec.layout)
                       if array.ndim == 4 else None)
            hint = ""
            if channels is not None and found_c is not None and found_c != channels:
                hint = f": {found_c} channels where the model takes {channels} (manual 4.2.9)"
            raise ConfigError(f"{where}: expected shape {spec.shape} ({spec.layout}), found "
                              f"{list(array.shape)}{hint or ' (manual 4.2.9)'}")
        if array.dtype.name != spec.dtype:
            raise ConfigError(f"{where}: expected dtype {spec.dtype}, found {array.dtype.name}")


def _format(source: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: {key}: unknown key (a typo?)")
            continue
        found = "" if err["type"] in ("missing", "value_error") else f", found {str(repr(err.get('input')))[:60]}"
        lines.append(f"{source}: {key}: {msg}{found}")
    return "\n".join(lines)


def load_package(path: str | Path) -> ModelPackage:
    """Read and check a package folder (or its model.toml): every file it names must exist and match its spec."""
    path = Path(path)
    manifest_path = path if path.name == MANIFEST else path / MANIFEST
    try:
        data = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{manifest_path}: no model package here (model.toml not found)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{manifest_path}: not valid TOML: {exc}") from None
    try:
        manifest = Manifest(**data)
    except ValidationError as exc:
        raise ConfigError(_format(manifest_path, exc)) from None
    package = ModelPackage(manifest_path.parent.resolve(), manifest)
    for chip, target in manifest.targets.items():
        if not (package.root / target.file).is_file():
            raise ConfigError(f"{manifest_path}: targets.{chip}.file: {target.file} not found")
    package.load_inputs()
    return package


def find_packages(root: str | Path) -> list[ModelPackage]:
    """Every package under ``root`` (folders holding a model.toml), sorted by name; a bad one is a ConfigError."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"model packages folder {root} does not exist")
    return sorted((load_package(p) for p in root.glob(f"*/{MANIFEST}")), key=lambda p: p.name)
