"""requirements.txt (what a Space installs) against pyproject.toml, and the Space's README front matter."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
SCRIPT = ROOT / "scripts" / "write_requirements.py"


def _script():
    spec = importlib.util.spec_from_file_location("write_requirements", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_requirements = _script()


def _parse(lines: list[str], where: str) -> dict[str, Requirement]:
    parsed: dict[str, Requirement] = {}
    for number, line in enumerate(lines, 1):
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            pytest.fail(f"{where} line {number} is not a requirement: {line!r} ({error})")
        name = canonicalize_name(requirement.name)
        assert name not in parsed, f"{where} names {requirement.name} twice (line {number}: {line!r})"
        parsed[name] = requirement
    return parsed


def test_requirements_txt_has_every_runtime_dependency_and_nothing_else():
    needed = _parse(write_requirements.runtime_dependencies(), "pyproject.toml [project] dependencies")
    have = _parse(REQUIREMENTS.read_text().splitlines(), "requirements.txt")
    allowed_extra = {canonicalize_name(name) for name in write_requirements.SPACES_ONLY}
    problems = []
    for name, requirement in needed.items():
        line = have.get(name)
        if line is None:
            problems.append(f"missing from requirements.txt: {requirement}")
        elif (line.specifier, line.marker, line.extras) != (requirement.specifier, requirement.marker,
                                                           requirement.extras):
            problems.append(f"requirements.txt has {line}, pyproject.toml has {requirement}")
    for name, line in have.items():
        if name not in needed and name not in allowed_extra:
            problems.append(f"in requirements.txt but not a dependency in pyproject.toml: {line}")
    assert not problems, ("requirements.txt does not match pyproject.toml (regenerate it with "
                          "`python scripts/write_requirements.py`):\n  " + "\n  ".join(problems))


def test_requirements_txt_is_what_the_script_writes():
    expected = write_requirements.render()
    assert REQUIREMENTS.read_text() == expected, (
        "requirements.txt is out of date with pyproject.toml: run `python scripts/write_requirements.py` and commit it")
    assert write_requirements.main(["--check"]) == 0


def test_the_script_follows_pyproject(tmp_path: Path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["alpha>=1,<2", "beta[fast]; python_version >= \'3.11\'"]\n')
    text = write_requirements.render(pyproject)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["alpha>=1,<2", "beta[fast]; python_version >= '3.11'", *write_requirements.SPACES_ONLY]


def _front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with the Space's YAML front matter between --- lines"
    return yaml.safe_load(match.group(1))


def test_space_front_matter():
    config = _front_matter()
    assert config["sdk"] == "gradio"
    assert config["app_file"] == "app.py" and (ROOT / config["app_file"]).is_file()
    assert config["hf_oauth"] is True
    assert isinstance(config["python_version"], str) and config["python_version"].startswith("3.")
    assert len(config["short_description"]) <= 60
    assert config["colorFrom"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert config["colorTo"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert config["suggested_hardware"] in {"t4-small", "t4-medium", "l4x1", "l4x4", "a10g-small", "a10g-large",
                                            "a10g-largex2", "a10g-largex4", "a100-large"}
    # The pinned Gradio is one that pyproject.toml (and so requirements.txt) accepts.
    gradio = _parse(write_requirements.runtime_dependencies(), "pyproject.toml")["gradio"]
    pinned = str(config["sdk_version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"sdk_version must be an exact version, not {pinned!r}"
    assert Version(pinned) in gradio.specifier, f"sdk_version {pinned} is outside pyproject's {gradio}"


def test_preload_from_hub_names_the_default_weights():
    from pipeline.category_model import DEFAULT_CATEGORY_MODEL
    from pipeline.diffusion import models_from
    from pipeline.sam import DEFAULT_SAM_MODEL

    entries = _front_matter()["preload_from_hub"]
    preload: dict[str, list[str]] = {}
    for entry in entries:
        parts = entry.split()
        assert 1 <= len(parts) <= 3, f"preload_from_hub entry is 'repo [file,file] [commit]', not {entry!r}"
        preload[parts[0]] = parts[1].split(",") if len(parts) > 1 else []
    models = models_from("sdxl")  # the default family
    for repo in (models.base_model, models.controlnet, models.ip_adapter, models.image_encoder,
                 DEFAULT_SAM_MODEL, DEFAULT_CATEGORY_MODEL):
        assert repo in preload, f"{repo} is a default model but not in preload_from_hub"
    ip_files = preload[models.ip_adapter]
    if ip_files:
        assert f"{models.ip_adapter_subfolder}/{models.ip_adapter_weight_name}" in ip_files
        assert f"{models.image_encoder_subfolder}/model.safetensors" in ip_files
