"""A training config as a MosaicML platform run: the mcli run YAML and its submission.

The paper trained on 8x A100-80GB on the MosaicML platform (Jha et al. 2023). mcli mounts a run's
`parameters` at /mnt/config/parameters.yaml, so the run carries the COMPOSED config (inheritance merged,
overrides applied, interpolations resolved): what trains is exactly what `limit-foundry config show`
prints here. The llm-foundry images ship dependencies only, so the run clones llm-foundry at the release
this package pins and the user's project (a checkout of limit-foundry or a project holding its configs) at
one commit. Secrets never enter the run YAML: the platform injects them from `mcli create secret`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from limit_foundry import config
from limit_foundry.errors import ConfigError, PlatformError
from limit_foundry.provenance import git_commit

DEFAULT_IMAGE = "mosaicml/llm-foundry:2.7.0_cu128-latest"
FOUNDRY_REPO = "mosaicml/llm-foundry"
FOUNDRY_REF = "v0.22.0"
PARAMETERS_PATH = "/mnt/config/parameters.yaml"
REPO_CLONE_PATH = "/workspace/limit-foundry"
FOUNDRY_CLONE_PATH = "/workspace/llm-foundry"
# Names that look like credentials; they belong in platform secrets, never in a run YAML.
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
_GITHUB_REMOTE = re.compile(r"github\.com[:/](?P<slug>[^/\s]+/[^/\s]+?)(?:\.git)?/?$")


@dataclass
class PlatformTarget:
    """Where and how the run executes on the platform."""

    cluster: str
    gpus: int
    gpu_type: str | None = None
    nodes: int | None = None
    image: str = DEFAULT_IMAGE
    priority: str | None = None
    max_retries: int = 0
    preemptible: bool = False
    build_data: bool = True
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class SourceRepo:
    """The user's project as the run clones it: `owner/name` on GitHub at one commit."""

    slug: str
    commit: str


def repo_slug_from_remote(url: str) -> str:
    """`owner/name` from a GitHub remote URL (ssh or https)."""
    match = _GITHUB_REMOTE.search(url.strip())
    if not match:
        raise PlatformError(f"git remote {url!r} is not a GitHub URL; pass --repo owner/name")
    return match.group("slug")


def _git(args: list[str], repo_dir: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def resolve_source_repo(repo_dir: Path, slug: str | None, commit: str | None) -> SourceRepo:
    """The repository and commit the platform clones; explicit options win over the checkout's git state."""
    if slug is None:
        remote = _git(["remote", "get-url", "origin"], repo_dir)
        if not remote:
            raise PlatformError(f"{repo_dir} has no git remote 'origin'; pass --repo owner/name")
        slug = repo_slug_from_remote(remote)
    commit = commit or git_commit(repo_dir)
    if not commit:
        raise PlatformError(f"{repo_dir} is not a git checkout with a commit; pass --commit SHA")
    return SourceRepo(slug=slug, commit=commit)


def uncommitted_changes(repo_dir: Path) -> bool:
    """True when the checkout differs from its commit: the platform would not see those changes."""
    return bool(_git(["status", "--porcelain", "--untracked-files=no"], repo_dir))


def check_env(env: dict[str, str]) -> None:
    secret_like = sorted(name for name in env if SECRET_NAME.search(name))
    if secret_like:
        raise PlatformError(
            f"environment variables {secret_like} look like credentials; store them with "
            "`mcli create secret env NAME=value` instead of putting them in the run YAML"
        )


def run_command(parameters: dict[str, Any], build_data: bool) -> str:
    """The shell the run executes: build the run's dataset (when it names a recipe), then train."""
    lines = ["set -euo pipefail", f"cd {REPO_CLONE_PATH}"]
    variables = parameters.get("variables", {})
    recipe, data_root = variables.get("recipe"), variables.get("data_root")
    if build_data and recipe and data_root:
        lines.append(
            f"python -m limit_foundry.cli data --recipe {shlex.quote(str(recipe))} --out {shlex.quote(str(data_root))}"
        )
    lines.append(f"composer -m limit_foundry.cli.train {PARAMETERS_PATH}")
    return "\n".join(lines) + "\n"


def build_run(parameters: dict[str, Any], target: PlatformTarget, source: SourceRepo) -> dict[str, Any]:
    """The mcli run YAML (as a dict) that trains `parameters`, a resolved training config."""
    check_env(target.env)
    if target.gpus < 1:
        raise PlatformError(f"--gpus must be at least 1, got {target.gpus}")
    compute: dict[str, Any] = {"cluster": target.cluster, "gpus": target.gpus}
    if target.gpu_type:
        compute["gpu_type"] = target.gpu_type
    if target.nodes:
        compute["nodes"] = target.nodes
    scheduling: dict[str, Any] = {
        "resumable": True,  # the configs autoresume from save_folder
        "preemptible": target.preemptible,
        "max_retries": target.max_retries,
    }
    if target.priority:
        scheduling["priority"] = target.priority
    return {
        "name": str(parameters.get("run_name") or "limit-foundry-run"),
        "image": target.image,
        "compute": compute,
        "scheduling": scheduling,
        "integrations": [
            {
                "integration_type": "git_repo",
                "git_repo": FOUNDRY_REPO,
                "git_branch": FOUNDRY_REF,
                "path": FOUNDRY_CLONE_PATH,
                "pip_install": "-e .[gpu]",
                "ssh_clone": False,
            },
            {
                "integration_type": "git_repo",
                "git_repo": source.slug,
                "git_commit": source.commit,
                "path": REPO_CLONE_PATH,
                "pip_install": "-e .",
                "ssh_clone": False,
            },
        ],
        "env_variables": dict(target.env),
        "command": run_command(parameters, target.build_data),
        "parameters": parameters,
    }


class _RunYamlDumper(yaml.SafeDumper):
    """Writes multi-line strings (the run's command) as literal blocks, as hand-written mcli YAMLs do."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_RunYamlDumper.add_representer(str, _represent_str)


def run_yaml(run: dict[str, Any]) -> str:
    return yaml.dump(run, Dumper=_RunYamlDumper, sort_keys=False, default_flow_style=False)


def to_run_config(run: dict[str, Any]):
    """mcli's own RunConfig, finalised (mcli validates the name, image and fields here)."""
    from mcli import RunConfig
    from mcli.api.exceptions import MCLIRunConfigValidationError
    from mcli.models.run_config import FinalRunConfig

    config = RunConfig.from_dict(run)
    try:
        FinalRunConfig.finalize_config(RunConfig.from_dict(run))
    except MCLIRunConfigValidationError as err:
        raise PlatformError(f"mcli rejects the run: {err}") from err
    return config


def platform_credentials_present() -> bool:
    """Whether mcli has an API key (MOSAICML_API_KEY or `mcli set api-key`), checked before any work."""
    from mcli.config import MCLIConfig

    return bool(MCLIConfig.load_config().get_api_key())


def submit_run(run: dict[str, Any]):
    """Create the run on the platform; returns mcli's Run."""
    import mcli

    if not platform_credentials_present():
        raise PlatformError("no MosaicML API key: set MOSAICML_API_KEY or run `mcli set api-key`")
    return mcli.create_run(to_run_config(run))


@dataclass
class SubmitOptions:
    """One training config to run on the platform, as `limit-foundry submit` takes it."""

    config: str
    target: PlatformTarget
    overrides: list[str] = field(default_factory=list)
    project_dir: Path = Path(".")  # the git checkout whose commit the run clones
    repo: str | None = None  # owner/name on GitHub; default: the checkout's `origin`
    commit: str | None = None  # default: the checkout's HEAD
    dry_run: bool = False


@dataclass
class Submission:
    """What `submit` did: the run YAML it built, the run mcli created (None on a dry run), and warnings."""

    run_yaml: str
    created: Any = None
    warnings: list[str] = field(default_factory=list)


def submit(options: SubmitOptions) -> Submission:
    """Compose and validate the config, build the run and submit it (or only build it, on a dry run).

    The config is composed here without local path checks (data and checkpoints live on the platform),
    so a bad config fails on the laptop, not after the run is queued.
    """
    try:
        parameters = config.resolved_dict(config.compose_config(options.config, options.overrides))
    except config.ConfigError as err:
        raise ConfigError(f"{options.config}: {err}") from err
    source = resolve_source_repo(options.project_dir, options.repo, options.commit)
    run = build_run(parameters, options.target, source)
    to_run_config(run)  # mcli's own validation, also on a dry run
    warnings = []
    if options.commit is None and uncommitted_changes(options.project_dir):
        warnings.append(
            f"uncommitted changes in {options.project_dir.resolve()}; the run uses commit {source.commit}"
        )
    submission = Submission(run_yaml=run_yaml(run), warnings=warnings)
    if not options.dry_run:
        submission.created = submit_run(run)
    return submission
