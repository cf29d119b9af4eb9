"""The paper's released training data: recipes, manifests, the `paper`/`rebuilt` config switch, `--compare`.

Fixtures (tests/fixtures/paper_data/, written by its make_fixtures.py) are tiny datasets in the layouts the
paper released (`prompt`/`response`, `source` where released) beside sources for the rebuilt recipes.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from limit_foundry.cli.data import main as data_main
from limit_foundry.config import compose_config, resolved_dict
from limit_foundry.data.build import BuildOptions, build_recipe
from limit_foundry.data.compare import first_difference, template_of
from limit_foundry.data.readers import iter_local_records
from limit_foundry.data.recipes import NAMED_RECIPES, PAPER_ROWS, parse_recipe
from limit_foundry.data.sources import BUILTIN_SOURCES, load_source
from limit_foundry.data.templates import INSTRUCT_V1_TEMPLATE, LIMA_TEST_TEMPLATE
from limit_foundry.io import sha256_tree
from limit_foundry.study.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "paper_data"
# recipe: (hub dataset, fixture directory, rows in the fixture, rows in the paper's release)
RELEASES = {
    "paper_lima": ("aditijha/processed_lima", "processed_lima", 6, 1_000),
    "paper_instruct_v1_5k": ("aditijha/instruct_v1_5k", "instruct_v1_5k", 8, 5_000),
    "paper_instruct_v1_5k_lima": ("aditijha/instruct_v1_5k_and_lima", "instruct_v1_5k_and_lima", 14, 6_000),
    "paper_instruct_v3_1k": ("aditijha/instruct_v3_subset", "instruct_v3_subset", 6, 1_000),
    "paper_instruct_v3_1k_lima": (
        "aditijha/instruct_control_and_lima",
        "instruct_control_and_lima",
        12,
        2_000,
    ),
}
# run file: (paper recipe, rebuilt recipe)
RUNS = {
    "mpt7b_lima": ("paper_lima", "lima"),
    "mpt7b_instruct": ("instruct_v1", "instruct_v1"),
    "mpt7b_instruct_subset": ("paper_instruct_v1_5k", "instruct_v1_5k"),
    "mpt7b_mix": ("paper_instruct_v1_5k_lima", "instruct_v1_5k_lima"),
    "mpt30b_lima": ("paper_lima", "lima"),
    "mpt30b_instruct": ("instruct_v3", "instruct_v3"),
    "mpt30b_instruct_subset": ("paper_instruct_v3_1k", "instruct_v3_1k"),
    "mpt30b_mix": ("paper_instruct_v3_1k_lima", "instruct_v3_1k_lima"),
}


def fixture_path(recipe: str) -> Path:
    return FIXTURES / RELEASES[recipe][1]


def fixture_rows(recipe: str) -> list[dict]:
    return [rec.data for rec in iter_local_records(fixture_path(recipe), "train")]


def test_paper_recipes_read_the_released_datasets() -> None:
    for recipe, (hf_id, _, _, paper_rows) in RELEASES.items():
        parsed = parse_recipe(recipe)
        assert parsed.is_named and parsed.dirname == recipe and NAMED_RECIPES[recipe] == f"{recipe}:all"
        assert parsed.sources == [recipe] and BUILTIN_SOURCES[recipe].hf_id == hf_id
        assert PAPER_ROWS[recipe] == paper_rows
    # the released mixtures are the released subsets plus the released LIMA rows
    assert (
        PAPER_ROWS["paper_instruct_v1_5k_lima"]
        == PAPER_ROWS["paper_instruct_v1_5k"] + PAPER_ROWS["paper_lima"]
    )
    assert (
        PAPER_ROWS["paper_instruct_v3_1k_lima"]
        == PAPER_ROWS["paper_instruct_v3_1k"] + PAPER_ROWS["paper_lima"]
    )


@pytest.mark.parametrize("recipe", sorted(RELEASES))
def test_paper_recipe_builds_from_a_local_copy_with_its_id_in_the_manifest(
    recipe: str, tmp_path: Path
) -> None:
    hf_id, _, rows, paper_rows = RELEASES[recipe]
    path = fixture_path(recipe)
    options = BuildOptions(source_paths={recipe: str(path)})
    result = build_recipe(recipe, tmp_path / "data", options)
    manifest = result.manifest
    assert result.path == tmp_path / "data" / recipe
    assert manifest["recipe"]["name"] == recipe and manifest["splits"]["train"]["rows"] == rows
    assert (manifest["paper_rows"], manifest["matches_paper_rows"]) == (paper_rows, False)
    source = manifest["sources"][recipe]
    files = sorted(p for p in path.iterdir() if p.name.startswith("train"))
    assert source["dataset_id"] == hf_id
    assert source["fingerprint"] == sha256_tree(files)
    assert source["revision"] == f"sha256:{sha256_tree(files)}"  # a local copy: its sha256
    assert source["published_rows"] == paper_rows and source["template"] == "{instruction}"
    on_disk = json.loads((result.path / "manifest.json").read_text())
    assert on_disk["sources"][recipe]["dataset_id"] == hf_id


@pytest.mark.parametrize("recipe", sorted(RELEASES))
def test_released_rows_pass_through_unchanged(recipe: str) -> None:
    loaded = load_source(BUILTIN_SOURCES[recipe], path=fixture_path(recipe))
    released = fixture_rows(recipe)
    assert [row.example() for row in loaded.rows] == [
        {"prompt": r["prompt"], "response": r["response"]} for r in released
    ]
    assert [row.stratum for row in loaded.rows] == [r.get("source") for r in released]


def test_the_instruct_v3_subset_keeps_its_source_column() -> None:
    loaded = load_source(BUILTIN_SOURCES["paper_instruct_v3_1k"], path=fixture_path("paper_instruct_v3_1k"))
    assert [row.stratum for row in loaded.rows] == [
        *["dolly_hhrlhf"] * 3,
        *["competition_math"] * 2,
        "spider",
    ]


PARQUET = FIXTURES / "instruct_v1_5k" / "train-00000-of-00001.parquet"
COMMIT = "c0ffee" + "0" * 34


class _ReleaseHub(http.server.BaseHTTPRequestHandler):
    """A stand-in for the Hugging Face hub holding aditijha/instruct_v1_5k at one commit: the dataset's info
    (its commit and files) and its files at that commit, with the hub's own headers."""

    requests: list[str] = []
    repo = "aditijha/instruct_v1_5k"

    def _answer(self) -> None:
        self.requests.append(self.path)
        route = self.path.split("?")[0]
        if route in (f"/api/datasets/{self.repo}", f"/api/datasets/{self.repo}/revision/main"):
            files = [
                ".gitattributes",
                "README.md",
                "data/train-00000-of-00001.parquet",
                "data/test-0.parquet",
            ]
            body = json.dumps({"id": self.repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            body = body.encode()
        elif route == f"/datasets/{self.repo}/resolve/{COMMIT}/data/train-00000-of-00001.parquet":
            body = PARQUET.read_bytes()
            self.send_response(200)
            self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
            self.send_header("X-Repo-Commit", COMMIT)
        else:
            body = json.dumps({"error": "Repository not found"}).encode()
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


def _load_from_hub(source: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`load_source(source)` in a child whose HF_ENDPOINT (read at import time) is the local stand-in hub."""
    handler = type("Serving", (_ReleaseHub,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": "hf_secret_test_token",
    }
    code = (
        "import json; from limit_foundry.data.sources import BUILTIN_SOURCES, load_source; "
        f"s = load_source(BUILTIN_SOURCES[{source!r}]); e = s.manifest_entry(); "
        "print(json.dumps({k: e[k] for k in ('origin', 'dataset_id', 'revision', 'fingerprint')} | "
        "{'rows': [r.example() for r in s.rows]}))"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        server.shutdown()
    return result, handler.requests


def test_a_release_is_read_from_the_hub_at_one_commit_which_the_manifest_records(tmp_path: Path) -> None:
    result, requests = _load_from_hub("paper_instruct_v1_5k", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout)
    assert loaded["dataset_id"] == "aditijha/instruct_v1_5k"
    assert loaded["revision"] == COMMIT and loaded["origin"] == f"hf:aditijha/instruct_v1_5k@{COMMIT}"
    assert loaded["fingerprint"] == sha256_tree([PARQUET])  # the same bytes as a local copy of the file
    assert loaded["rows"] == [
        {"prompt": r["prompt"], "response": r["response"]} for r in fixture_rows("paper_instruct_v1_5k")
    ]
    downloads = [p for p in requests if "/resolve/" in p]
    assert downloads and all(
        f"/resolve/{COMMIT}/" in p for p in downloads
    )  # every file at the resolved commit
    assert not any("test-0" in p for p in requests)  # only the train split's files
    assert "hf_secret_test_token" not in result.stdout + result.stderr


def test_a_missing_release_says_which_dataset(tmp_path: Path) -> None:
    result, _ = _load_from_hub("paper_lima", tmp_path)  # the stand-in hub holds only aditijha/instruct_v1_5k
    assert result.returncode != 0
    assert "aditijha/processed_lima: no such dataset on the Hugging Face hub" in result.stderr
    assert "--source-path" in result.stderr and "hf_secret_test_token" not in result.stderr


@pytest.mark.parametrize("run", sorted(RUNS))
def test_training_configs_pick_paper_data_by_default_and_rebuilt_on_request(run: str) -> None:
    paper, rebuilt = RUNS[run]
    config = REPO / "yamls" / f"{run}.yaml"
    default = resolved_dict(compose_config(config))
    assert default["variables"]["data"] == "paper"
    assert default["variables"]["recipe"] == default["train_loader"]["dataset"]["recipe"] == paper
    for choice, recipe in (("paper", paper), ("rebuilt", rebuilt)):
        composed = resolved_dict(compose_config(config, [f"variables.data={choice}"]))
        assert composed["train_loader"]["dataset"]["recipe"] == recipe
        parse_recipe(recipe)  # a recipe `limit-foundry data` knows
        without = {k: v for k, v in composed.items() if k not in ("variables", "train_loader")}
        assert without == {k: v for k, v in default.items() if k not in ("variables", "train_loader")}


def test_config_show_and_validate_with_both_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from limit_foundry.cli import main

    config = str(REPO / "yamls" / "mpt7b_mix.yaml")
    for choice, recipe in (("paper", "paper_instruct_v1_5k_lima"), ("rebuilt", "instruct_v1_5k_lima")):
        assert main(["config", "show", config, f"variables.data={choice}"]) == 0
        assert f"  recipe: {recipe}\n" in capsys.readouterr().out
    # paper data built from a local copy: validation finds it; rebuilt data is not built here
    options = BuildOptions(
        source_paths={"paper_instruct_v1_5k_lima": str(fixture_path("paper_instruct_v1_5k_lima"))}
    )
    build_recipe("paper_instruct_v1_5k_lima", tmp_path / "data", options)
    assert main(["config", "validate", config, f"variables.data_root={tmp_path / 'data'}"]) == 0
    assert capsys.readouterr().out.strip() == f"{config}: valid"
    rebuilt = [config, "variables.data=rebuilt", f"variables.data_root={tmp_path / 'data'}"]
    assert main(["config", "validate", "--no-path-checks", *rebuilt]) == 0
    assert main(["config", "show", config, "variables.data=neither"]) == 2
    assert "variables.recipes.neither" in capsys.readouterr().err


@pytest.mark.parametrize(("spec", "size"), [("limit_7b", "mpt7b"), ("limit_30b", "mpt30b")])
def test_paper_study_specs_say_they_train_on_the_papers_data(spec: str, size: str) -> None:
    loaded = load_spec(REPO / "yamls" / "studies" / f"{spec}.yaml")
    assert "variables.data=paper" in loaded.train_overrides
    assert {name: run.recipe for name, run in loaded.runs.items()} == {
        run: RUNS[f"{size}_{run}"][0] for run in ("lima", "instruct", "instruct_subset", "mix")
    }


def test_template_of_keeps_whitespace_and_first_difference_shows_it() -> None:
    v1 = INSTRUCT_V1_TEMPLATE.format(instruction="Why?")
    lima = LIMA_TEST_TEMPLATE.format(instruction="Why?")
    assert template_of(v1) == INSTRUCT_V1_TEMPLATE and template_of(lima) == LIMA_TEST_TEMPLATE
    assert template_of("just a question") == "{instruction}"
    diff = first_difference(INSTRUCT_V1_TEMPLATE, LIMA_TEST_TEMPLATE)
    assert diff is not None and diff["index"] == INSTRUCT_V1_TEMPLATE.index("\n\n### Instruction") + 1
    assert diff["a"].endswith(r"\n### Instruction:\n{instr'") and diff["b"].endswith(
        r"### Instruction:\n{instru'"
    )
    assert r"request.\n\n###" in diff["a"] and r"request.\n###" in diff["b"]
    assert first_difference("same", "same") is None


def _compare_args(*recipes: str) -> list[str]:
    paths = {
        "paper_lima": fixture_path("paper_lima"),
        "paper_instruct_v1_5k": fixture_path("paper_instruct_v1_5k"),
        "lima": FIXTURES / "gair_lima",
        "instruct_v1": FIXTURES / "dolly_hhrlhf",
    }
    return [
        "--compare",
        *recipes,
        "--quiet",
        *(a for n, p in paths.items() for a in ("--source-path", f"{n}={p}")),
    ]


def test_compare_counts_shared_rows_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "compare.json"
    assert data_main([*_compare_args("paper_instruct_v1_5k", "instruct_v1:all"), "--out", str(out)]) == 0
    markdown = capsys.readouterr().out
    report = json.loads(out.read_text())
    # the released 5k fixture: 5 rows also in the Instruct-v1 fixture, 3 that are not; Instruct-v1 has 12
    assert report["shared_rows"] == {
        "exact": 5,
        "only_in_a": 3,
        "only_in_b": 7,
        "ignoring_template": 5,
        "distinct_a": 8,
        "distinct_b": 12,
    }
    assert (report["a"]["rows"], report["b"]["rows"]) == (8, 12)
    assert report["a"]["per_source"] == {"paper_instruct_v1_5k": 8}
    assert report["b"]["per_source"] == {"instruct_v1": 12}
    assert report["a"]["sources"]["paper_instruct_v1_5k"]["dataset_id"] == "aditijha/instruct_v1_5k"
    assert report["templates"] == {"same_main_template": True, "first_difference": None}
    assert report["a"]["response_chars"]["rows"] == 8
    assert "# `paper_instruct_v1_5k` vs `instruct_v1:all`" in markdown
    assert "identical prompt and response (content hash): **5** distinct rows" in markdown
    assert "the most common templates are identical" in markdown


def test_compare_shows_a_whitespace_template_difference(capsys: pytest.CaptureFixture[str]) -> None:
    """The released LIMA rows use blank lines; the rebuilt ones LIMIT's single-newline LIMA test layout."""
    assert data_main(_compare_args("paper_lima", "lima")) == 0
    markdown = capsys.readouterr().out
    assert "identical prompt and response (content hash): **0** distinct rows" in markdown
    assert "same instruction and response once the templates are removed: **6**" in markdown
    assert f"`{INSTRUCT_V1_TEMPLATE!r}`" in markdown and f"`{LIMA_TEST_TEMPLATE!r}`" in markdown
    at = INSTRUCT_V1_TEMPLATE.index("\n\n### Instruction") + 1
    assert (
        f"first differ at character {at}: paper_lima `' completes the request.\\n\\n### Instruction"
        in markdown
    )
    assert "vs lima `' completes the request.\\n### Instruction" in markdown
    assert "| wikihow | 0 | 6 |" in markdown  # GAIR/lima's own `source` column; the released rows have none


def test_compare_needs_two_recipes_and_no_build(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["--recipe", "lima", "--compare", "paper_lima", "lima"], ["--compare", "lima"]):
        with pytest.raises(SystemExit) as exit_info:
            data_main(argv)
        assert exit_info.value.code == 2
    assert "--compare" in capsys.readouterr().err


def test_build_datasets_script_compares_too(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "data_prep" / "build_datasets.py"),
            *_compare_args("paper_lima", "lima"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text())["shared_rows"]["ignoring_template"] == 6
    assert "# `paper_lima` vs `lima`" in result.stdout
