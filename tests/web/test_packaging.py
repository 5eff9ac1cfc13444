"""The container packaging (Dockerfile, docker-compose.yml, .dockerignore) against the code.

Docker does not run here, so these check, with the project's own parser, app
and files, what a renamed option, a moved route or a careless ignore pattern
would only break at `docker compose up` on a school's server.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import io
import json
import os
import re
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from packaging.specifiers import SpecifierSet

from web.app import create_app
from web.cli import build_parser
from web.config import Config, add_serve_arguments, config_from_args

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ reading the files


class YamlSubsetError(ValueError):
    """docker-compose.yml uses YAML this reader does not know: keep it simple."""


def _strip_comment(line: str) -> str:
    out, quote, i = [], "", 0
    while i < len(line):
        ch = line[i]
        if quote:
            if quote == '"' and ch == "\\":
                out.append(line[i:i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
        i += 1
    return "".join(out).rstrip()


def _scalar(text: str) -> Any:
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlSubsetError(f"unclosed string: {text}")
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YamlSubsetError(f"unclosed string: {text}")
        return text[1:-1].replace("''", "'")
    if text.startswith("["):
        value = json.loads(text)  # only JSON-shaped flow sequences
        if not all(isinstance(v, str) for v in value):
            raise YamlSubsetError(f"flow sequence of non-strings: {text}")
        return value
    if text[0] in "{&*!|>%@`-?" or ": " in text or " #" in text:
        raise YamlSubsetError(f"not a plain scalar this reader knows: {text}")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    if lowered in ("yes", "no", "on", "off", "y", "n"):
        raise YamlSubsetError(f"ambiguous YAML 1.1 boolean, quote it: {text}")
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    if re.fullmatch(r"[-+.0-9_:eE]+", text) and re.search(r"[0-9]", text):
        raise YamlSubsetError(f"number-like plain scalar, quote it: {text}")
    return text


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("-") and lines[i][1][1:2] in ("", " "):
        items = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
            item = lines[i][1][1:].strip()
            if not item or not lines[i][1].startswith("- "):
                raise YamlSubsetError(f"nested block in a sequence: {lines[i][1]}")
            if re.match(r"[\w.-]+:(\s|$)", item):
                raise YamlSubsetError(f"mapping in a sequence: {item}")
            items.append(_scalar(item))
            i += 1
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        match = re.fullmatch(r"([\w.-]+):(?:\s+(.*))?", lines[i][1])
        if not match:
            raise YamlSubsetError(f"not 'key: value': {lines[i][1]}")
        key, rest = match.group(1), match.group(2)
        if key in mapping:
            raise YamlSubsetError(f"duplicate key {key}")
        i += 1
        if rest:
            mapping[key] = _scalar(rest)
        elif i < len(lines) and lines[i][0] > indent:
            mapping[key], i = _block(lines, i, lines[i][0])
        else:
            mapping[key] = None
    if i < len(lines) and lines[i][0] > indent:
        raise YamlSubsetError(f"unexpected indentation: {lines[i][1]}")
    return mapping, i


def load_yaml(text: str) -> Any:
    """Block mappings, sequences of scalars, quoted and plain scalars; anything
    else is refused rather than guessed. PyYAML, when installed, must agree."""
    lines = []
    for raw in text.splitlines():
        content = _strip_comment(raw)
        if not content.strip():
            continue
        stripped = content.lstrip(" ")
        if stripped.startswith("\t"):
            raise YamlSubsetError("tab in indentation")
        lines.append((len(content) - len(stripped), stripped))
    data, end = _block(lines, 0, 0)
    if end != len(lines):
        raise YamlSubsetError(f"unexpected line: {lines[end][1]}")
    try:
        import yaml
    except ImportError:
        return data
    assert yaml.safe_load(text) == data, "the YAML subset reader disagrees with PyYAML"
    return data


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group(1), match.group(2), match.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")
    pattern = r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}"
    assert "$" not in re.sub(pattern, "", value), f"interpolation this test does not know: {value}"
    return re.sub(pattern, one, value)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined."""
    instructions, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continuation"
    return instructions


def copy_sources() -> list[str]:
    """What the Dockerfile copies from the build context."""
    return [Path(source).as_posix() for keyword, rest in
            dockerfile_instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))
            if keyword == "COPY" and not rest.startswith("--from")
            for source in rest.split()[:-1]]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    found = [rest for kw, rest in stage if kw == keyword]
    assert found, f"no {keyword} in the Dockerfile's final stage"
    value = json.loads(found[-1])  # shell form would not be JSON: exec form only
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for pair in rest.split():
                name, sep, value = pair.partition("=")
                assert sep, f"ENV in the legacy 'NAME value' form: {rest}"
                env[name] = value
    return env


def compose_service() -> dict[str, Any]:
    compose = load_yaml((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    service: dict[str, Any] = compose["services"]["zhixing"]
    return service


def compose_environment(env: dict[str, str]) -> dict[str, str]:
    """The service's environment with a given .env (compose interpolates it)."""
    return {name: interpolate(str(value), env)
            for name, value in compose_service()["environment"].items()}


@pytest.fixture(autouse=True)
def no_zhixing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ZHIXING_"):
            monkeypatch.delenv(name)


def parse_serve(argv: list[str], env: dict[str, str] | None = None) -> tuple[
        argparse.Namespace, Config]:
    """argv (after 'zhixing') through the real parser, as `zhixing` would."""
    stderr = io.StringIO()
    with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stderr(stderr):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"zhixing {' '.join(argv)}: {stderr.getvalue().strip()}")
        assert args.command == "serve", argv
        return args, config_from_args(args)


def image_commands() -> dict[str, list[str]]:
    stage = final_stage()
    entrypoint = exec_form(stage, "ENTRYPOINT")
    command = compose_service()["command"]
    assert isinstance(command, list), "compose command: a list, like the Dockerfile's exec form"
    return {
        "Dockerfile": entrypoint + exec_form(stage, "CMD"),
        "docker-compose.yml": entrypoint + [interpolate(arg, {}) for arg in command],
    }


# ------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("source", ["Dockerfile", "docker-compose.yml"])
def test_the_container_runs_zhixing_serve_with_options_it_has(source: str) -> None:
    argv = image_commands()[source]
    assert PYPROJECT["project"]["scripts"].get(argv[0]) == "web.cli:main", argv
    assert argv[1] == "serve", argv
    _, config = parse_serve(argv[1:])
    assert config.data_dir == Path("/data")


def test_the_data_folder_is_the_volume() -> None:
    stage = final_stage()
    folders = set()
    for source, argv in image_commands().items():
        args, _ = parse_serve(argv[1:])
        assert "--data" in argv, f"{source}: give --data explicitly"
        folders.add(args.data)
    volumes = [json.loads(rest) for keyword, rest in stage if keyword == "VOLUME"]
    assert volumes == [list(folders)], "Dockerfile VOLUME is not the --data folder"
    # `docker compose exec zhixing zhixing admin …` / `archive import` read ZHIXING_DATA.
    assert image_env(stage).get("ZHIXING_DATA") in folders
    mounts = compose_service()["volumes"]
    targets = [mount.split(":")[1] for mount in mounts]
    assert targets == list(folders), "the compose volume is not mounted on the data folder"
    source = mounts[0].split(":")[0]
    compose = load_yaml((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert source.startswith((".", "/")) or source in compose["volumes"], \
        f"named volume {source} is not declared"


def test_compose_service_settings() -> None:
    service = compose_service()
    assert service["network_mode"] == "host"
    assert "ports" not in service, "ports mean nothing with host networking"
    assert service["restart"] == "unless-stopped"
    assert (ROOT / service["build"] / "Dockerfile").is_file()
    # The password comes from .env (or the shell), never from the file itself.
    assert re.fullmatch(r"\$\{ZHIXING_ADMIN_PASSWORD(:?-)?\}",
                        service["environment"]["ZHIXING_ADMIN_PASSWORD"])
    assert compose_environment({"ZHIXING_ADMIN_PASSWORD": "from-dot-env"})[
        "ZHIXING_ADMIN_PASSWORD"] == "from-dot-env"


def test_without_a_dot_env_compose_gives_the_embedded_defaults() -> None:
    argv = image_commands()["docker-compose.yml"][1:]
    _, plain = parse_serve(argv)
    _, composed = parse_serve(argv, compose_environment({}))
    assert composed == plain


def test_every_variable_the_container_sets_is_one_serve_reads() -> None:
    """Setting each ZHIXING_* variable of compose or the image changes serve's config."""
    stage = final_stage()
    names = sorted({*compose_service()["environment"],
                    *(n for n in image_env(stage) if n.startswith("ZHIXING_"))})
    # No flags here: a flag would hide its variable (the variable is what's tested).
    _, baseline = parse_serve(["serve"])
    for name in names:
        changed = False
        for value in ("12345", "127.0.0.1:9108", "6"):
            with contextlib.suppress(ValueError, argparse.ArgumentTypeError,
                                     pytest.fail.Exception):
                changed = parse_serve(["serve"], {name: value})[1] != baseline
            if changed:
                break
        assert changed, f"zhixing serve does not read {name}"


def test_the_compose_command_does_not_hide_its_variables() -> None:
    """A flag would win over the variable that .env sets and the HEALTHCHECK reads."""
    serve = argparse.ArgumentParser()
    add_serve_arguments(serve)
    flag_of = {}
    for action in serve._actions:
        for env_name in re.findall(r"env (ZHIXING_\w+)", action.help or ""):
            flag_of[env_name] = action.option_strings
    assert flag_of["ZHIXING_HOST"] == ["--host"] and flag_of["ZHIXING_PORT"] == ["--port"]
    argv = image_commands()["docker-compose.yml"]
    for name in compose_service()["environment"]:
        for flag in flag_of.get(name, []):
            assert not any(arg == flag or arg.startswith(flag + "=") for arg in argv), \
                f"{flag} in the compose command overrides {name}"


def healthcheck() -> tuple[dict[str, str], list[str]]:
    found = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    assert len(found) == 1, "one HEALTHCHECK in the final stage"
    options, sep, command = found[0].partition(" CMD ")
    assert sep, found[0]
    argv = json.loads(command)
    assert argv[0] == "python", "the image has no curl; the check runs Python"
    return dict(option.lstrip("-").split("=") for option in options.split()), argv


def test_the_healthcheck_path_is_a_route(tmp_path: Path) -> None:
    _, argv = healthcheck()
    paths = re.findall(r"'GET', '(/[^']*)'", argv[-1])
    assert len(paths) == 1, argv
    app = create_app(Config(data_dir=tmp_path))
    routes = {(route.method, route.resource.canonical)
              for route in app.router.routes() if route.resource is not None}
    assert ("GET", paths[0]) in routes


async def run_healthcheck(host: str, port: int) -> int:
    _, argv = healthcheck()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHIXING_")}
    env.update(ZHIXING_HOST=host, ZHIXING_PORT=str(port))
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv[1:], env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(process.wait(), 20)


async def test_the_healthcheck_passes_on_the_service_and_fails_without_it(
        service: Any) -> None:
    options, _ = healthcheck()
    assert set(options) <= {"interval", "timeout", "start-period", "start-interval", "retries"}
    port = urlsplit(service.base).port
    assert port is not None
    # serve's default --host 0.0.0.0: the check asks loopback.
    assert await run_healthcheck("0.0.0.0", port) == 0
    assert await run_healthcheck("127.0.0.1", port) == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    assert await run_healthcheck("127.0.0.1", closed_port) != 0
    # A server that answers, but not 200 on the path: unhealthy too.
    async with TestServer(web.Application(), host="127.0.0.1") as other:
        assert other.port is not None
        assert await run_healthcheck("127.0.0.1", other.port) != 0


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a folder above it wins."""
    parts = path.split("/")
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = "".join(
            ".*" if token == "**" else "[^/]*" if token == "*" else
            "[^/]" if token == "?" else re.escape(token)
            for token in re.split(r"(\*\*|\*|\?)", pattern))
        regex = regex.replace(".*/", "(.*/)?")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def test_dockerignore_keeps_out_local_files_and_lets_the_build_in() -> None:
    patterns = [line.strip() for line in
                (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv/bin/python", ".git/HEAD", ".env", "data/zhixing.sqlite3",
                 "data/server-secret", "test-artifacts/shot.png", "zhixing.egg-info/PKG-INFO",
                 "web/__pycache__/app.cpython-311.pyc", ".pytest_cache/README.md"):
        assert dockerignored(path, patterns), f"{path} would be sent to the build"
    needed = [f.relative_to(ROOT).as_posix() for source in copy_sources() for f in
              ([ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*"))
              if f.is_file() and "__pycache__" not in f.parts]
    assert "web/static/console.html" in needed and "pyproject.toml" in needed
    assert not [path for path in needed if dockerignored(path, patterns)]


def top_packages() -> list[str]:
    """The top-level packages pyproject.toml installs (each a folder here)."""
    names = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    top = sorted({name.split(".")[0] for name in names})
    assert top and all((ROOT / name / "__init__.py").is_file() for name in top), top
    return top


def test_the_image_builds_from_what_pip_needs() -> None:
    python = SpecifierSet(PYPROJECT["project"]["requires-python"])
    for keyword, rest in dockerfile_instructions(
            (ROOT / "Dockerfile").read_text(encoding="utf-8")):
        if keyword == "FROM":
            version = re.match(r"python:(\d+\.\d+)", rest)
            assert version and python.contains(version.group(1)), rest
    copied = copy_sources()
    for package in top_packages():
        assert package in copied, f"the Dockerfile does not copy {package}/"
    assert PYPROJECT["project"]["readme"] in copied, "pip install . reads the readme"
    user = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert user and user[-1] not in ("root", "0"), "the service must not run as root"


def test_no_ffmpeg_binary_is_run_unless_the_image_has_it() -> None:
    """The image leaves out Debian's ffmpeg: PyAV brings its own libraries."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    if re.search(r"apt-get install[^\n]*\bffmpeg\b", dockerfile):
        return
    calls = []
    for package in top_packages():
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                        and re.fullmatch(r"(ff(mpeg|probe))(\s.*)?", node.value, re.S)):
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not calls, f"runs the ffmpeg binary, which the image lacks: {calls}"
