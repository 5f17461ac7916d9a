"""The command line and the configuration, as an administrator meets them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from conftest import ROOT, echo, free_port, wait_for
from telerad.cli import main
from telerad.config import ConfigError, load_config
from pacs_node.index import Study
from telerad.db import make_engine, make_session_factory
from telerad.provisioning import prepare
from telerad.sites import Site
from telerad.users import User, user_for_token


def _run(config_path: Path, *arguments: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["--config", str(config_path), *arguments], input=stdin, env=env)


@pytest.fixture
def config_file(tmp_path: Path, database_url: str) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["service"]["data_dir"] = str(tmp_path / "var")
    raw["database"]["url"] = database_url
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dicom": {"port": "eleven"}}, "dicom.port: Input should be a valid integer"),
        ({"dicom": {"prot": 104}}, "dicom.prot: unknown key"),
        ({"sites": [{"code": "P", "name": "p", "level": "province", "ae_titles": ["CT*1"]}]}, "AE title 'CT*1' must be"),
        ({"sites": [{"code": "X", "name": "x"}]}, "sites.0.level: required key is missing"),
        ({"sites": [{"code": "V", "name": "v", "level": "village", "parent": "NOPE"}]}, "unknown site code 'NOPE'"),
        (
            {"sites": [{"code": "P", "name": "p", "level": "province", "ae_titles": ["A"]},
                       {"code": "C", "name": "c", "level": "county", "parent": "P", "ae_titles": ["A"]}]},
            "'A' is already registered to 'P'",
        ),
    ],
)
def test_wrong_configuration_names_the_key(tmp_path: Path, change: dict, message: str):
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    for section, value in change.items():
        raw[section] = {**raw[section], **value} if isinstance(value, dict) else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, {})
    result = _run(path, "db", "upgrade")
    assert result.exit_code != 0 and message in result.output


def test_environment_overrides_every_key():
    config = load_config(
        ROOT / "config.yaml",
        {"TELERAD_DICOM_PORT": "2104", "TELERAD_DATABASE_URL": "postgresql://db/x", "TELERAD_SERVICE_LANGUAGE": "en"},
    )
    assert (config.dicom.port, config.database_url, config.service.language) == (2104, "postgresql://db/x", "en")
    with pytest.raises(ConfigError, match=r"dicom\.stable_seconds: Input should be greater than 0"):
        load_config(ROOT / "config.yaml", {"TELERAD_DICOM_STABLE_SECONDS": "0"})


def test_user_add_and_token_create(config_file: Path, database_url: str):
    assert _run(config_file, "db", "upgrade").exit_code == 0
    # Sites come from the configuration at start-up; the CLI's own setup path syncs them too.
    config = load_config(config_file, {})
    sessions = make_session_factory(make_engine(config.database_url))
    prepare(config, sessions)

    added = _run(config_file, "user", "add", "li", "--role", "reader", "--site", "CNTY",
                 "--modalities", "ct,dx", "--password-stdin", stdin="correct horse battery\n")
    assert added.exit_code == 0, added.output
    with sessions() as session:
        li = session.scalar(select(User).where(User.name == "li"))
        assert li.modalities == ("CT", "DX") and li.site.code == "CNTY"
        assert li.password_hash.startswith("$argon2id$") and "correct horse" not in li.password_hash
        assert li.check_password("correct horse battery") and not li.check_password("wrong")

    for arguments, message in [
        (("li", "--role", "reader", "--site", "CNTY"), "a user named 'li' already exists"),
        (("wu", "--role", "reader", "--site", "NOWHERE"), "unknown site code 'NOWHERE'"),
        (("wu", "--role", "reader", "--site", "CNTY", "--modalities", "MR"), "unknown modality 'MR'"),
        (("wu", "--role", "station", "--site", "VIL-LIJIA"), "at least 8 characters"),
    ]:
        stdin = "short\n" if "station" in arguments else "long enough password\n"
        failed = _run(config_file, "user", "add", *arguments, "--password-stdin", stdin=stdin)
        assert failed.exit_code != 0 and message in failed.output

    issued = _run(config_file, "token", "create", "li")
    assert issued.exit_code == 0
    token = issued.output.strip()
    with sessions() as session:
        assert user_for_token(session, token).name == "li"
        assert user_for_token(session, token + "x") is None
    assert "no user named 'nobody'" in _run(config_file, "token", "create", "nobody").output


@pytest.mark.parametrize("command", [[], ["serve"], ["dicom"], ["web"], ["worker"], ["db", "upgrade"], ["user", "add"], ["token", "create"]])
def test_every_command_explains_itself(command: list[str]):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and len(result.output.splitlines()) > 3


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return json.load(response)["status"] == "ok"
    except OSError:
        return False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_runs_everything_on_embedded_defaults(config_file: Path, tmp_path: Path, database_url: str):
    dicom_port, web_port = free_port(), free_port()
    environment = {**os.environ, "TELERAD_DICOM_PORT": str(dicom_port), "TELERAD_WEB_PORT": str(web_port),
                   "TELERAD_DICOM_HOST": "127.0.0.1", "TELERAD_REDIS_URL": ""}
    serve = subprocess.Popen(
        [sys.executable, "-m", "telerad", "--config", str(config_file), "serve"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        printed = []
        for line in serve.stdout:  # type: ignore[union-attr]
            printed.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        text = "".join(printed)
        assert f"TELERAD@127.0.0.1:{dicom_port}" in text and f"http://127.0.0.1:{web_port}/" in text
        assert "embedded Redis" in text and "reader-ct" in text
        assert "sample studies loaded: 3" in text
        assert (tmp_path / "var/demo-passwords.txt").stat().st_mode & 0o077 == 0
        wait_for(lambda: echo(dicom_port), serve, "the DICOM node answering")
        wait_for(lambda: _healthy(web_port), serve, "the web application answering")
        with make_session_factory(make_engine(database_url))() as session:
            sent = dict(session.execute(select(Study.modalities, Site.code).join(Site, Site.id == Study.site_id)).all())
        assert sent == {"CT": "TS-DONGGUAN", "ECG": "VIL-LIJIA", "CR": "VIL-ZHAOZHUANG"}
    finally:
        serve.terminate()
        serve.wait(30)
