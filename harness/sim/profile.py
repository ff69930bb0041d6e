"""Board profiles: what a simulated board is (chip, versions, console, identity), as TOML data.

Profiles ship in ``harness/sim/profiles/``; a path to another TOML file works too. Component versions are
overridable per board, which is how a version-mismatched board is made.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

COMPONENTS = ("rknn_server", "driver", "runtime")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Strict):
    runtime_lib: str
    server_bin: str


class Versions(_Strict):
    rknn_server: str
    driver: str
    runtime: str


class VersionStrings(_Strict):
    rknn_server: str
    runtime: str


class Profile(_Strict):
    name: str
    chip: str
    npu: Literal["rknpu1", "rknpu2"]
    hostname: str
    console_baud: int
    root_password: str
    product: str
    model: str
    compatible: list[str]
    rk_version: str
    kernel: str
    cpu: str
    arch: Literal["armhf", "aarch64"]  # the machine its programs are built for (runs here under qemu-user)
    python3: bool = True  # False: a stock image without python3 (C programs only, e.g. the native runner)
    npu_speed: float = 1.0
    paths: Paths
    versions: Versions
    strings: VersionStrings
    mismatch: Versions

    def with_versions(self, overrides: dict[str, str]) -> "Profile":
        """A copy with some component versions replaced (keys: rknn_server, driver, runtime)."""
        unknown = set(overrides) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown component(s) {sorted(unknown)}; known: {', '.join(COMPONENTS)}")
        versions = self.versions.model_copy(update=overrides)
        return self.model_copy(update={"versions": versions})


class UnknownProfile(ValueError):
    """No such profile; the message lists the known ones."""


def known_profiles() -> list[str]:
    folder = resources.files("harness.sim.profiles")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str) -> Profile:
    """A shipped profile by name (``rv1126``) or a profile TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text, name = path.read_text(), path.stem
    else:
        name = name_or_path.removeprefix("sim-")
        if name not in known_profiles():
            raise UnknownProfile(f"unknown profile {name_or_path!r}; known profiles: {', '.join(known_profiles())}")
        text = resources.files("harness.sim.profiles").joinpath(f"{name}.toml").read_text()
    try:
        return Profile(name=name, **tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise UnknownProfile(f"profile {name_or_path!r} is invalid: {exc}") from None
