"""What a release requires, as a TOML file the gate reads (``npu-hil gate --policy release.toml``).

    # release.toml
    boards = ["rv1126-bench-01", "rk3588-bench-02"]      # every one must have been judged
    suites = ["connectivity", "versions", "inference", "latency", "soak", "firmware"]
    latency_tolerance = "10%,3sigma"                    # the regression rule for every latency row

A suite named here that the run did not select (the destructive firmware suite without ``--destructive``) is a
gap; without a policy it is only reported as not run. The command line's ``--boards``, ``--suites`` and
``--latency-tolerance`` override the file's values. Unknown keys are refused, so a typo cannot silently relax
a release.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from harness.errors import ConfigError
from harness.npu.latency import Tolerance
from harness.report.gate_input import first_error


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    boards: list[str] | None = None
    suites: list[str] | None = None
    latency_tolerance: str | None = None

    @field_validator("latency_tolerance")
    @classmethod
    def _tolerance(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Tolerance.parse(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def tolerance(self) -> Tolerance | None:
        return Tolerance.parse(self.latency_tolerance) if self.latency_tolerance else None


def load_policy(path: Path) -> GatePolicy:
    """The policy in ``path``; every mistake is one ConfigError line naming the file and the key."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"gate policy {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"gate policy {path}: unreadable: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"gate policy {path}: not valid TOML: {exc}") from None
    try:
        return GatePolicy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"gate policy {path}: {first_error(exc)} (keys: boards, suites, latency_tolerance)") \
            from None
