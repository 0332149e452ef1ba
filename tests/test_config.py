"""One configuration object: file < environment < flags."""

from __future__ import annotations

import pytest

from wes_arvados.config import Config, load_config
from wes_arvados.errors import ConfigError


def test_flags_beat_environment_which_beats_the_file(tmp_path):
    cfg = tmp_path / "wes.yaml"
    cfg.write_text("port: 9000\nworkers: 3\nmax-concurrent-runs: 5\nstate_dir: /tmp/from-file\n")
    env = {"WES_ARVADOS_WORKERS": "4", "WES_ARVADOS_MAX_CONCURRENT_RUNS": "6"}
    config = load_config(str(cfg), {"max_concurrent_runs": 7, "host": None}, environ=env)
    assert (config.port, config.workers, config.max_concurrent_runs) == (9000, 4, 7)
    assert config.host == "127.0.0.1"
    assert config.state_dir == "/tmp/from-file"


def test_config_file_named_by_the_environment(tmp_path):
    cfg = tmp_path / "wes.yaml"
    cfg.write_text("allowed_dirs: [/data]\n")
    config = load_config(environ={"WES_ARVADOS_CONFIG": str(cfg), "WES_ARVADOS_PORT": "8181"})
    assert config.allowed_dirs == ["/data"] and config.port == 8181


@pytest.mark.parametrize("text,message", [
    ("bogus: 1\n", "unknown settings"),
    ("- a\n", "must hold a mapping"),
    ("port: [\n", "not valid YAML"),
    ("backend: slurm\n", "backend must be one of"),
    ("port: 0\n", "port must be a positive integer"),
    ("log_format: xml\n", "log_format must be one of text, json"),
    ("workers: many\n", "invalid setting"),
    ("images: [a]\n", "'images' must hold a mapping"),
    ("images:\n  mirror: [x]\n", "unknown settings .* under images: mirror"),
    ("images:\n  runtime: lxc\n", "images.runtime must be one of"),
    ("images:\n  mirrors: [docker.io]\n", "images.mirrors: registry mirror 'docker.io': expected REGISTRY=URL"),
    ("images:\n  pull_jobs: 0\n", "pull_jobs must be a positive integer"),
])
def test_invalid_configuration_is_reported_clearly(tmp_path, text, message):
    cfg = tmp_path / "wes.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(cfg), environ={})


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "absent.yaml"), environ={})


def test_resolved_config_round_trips_to_child_processes():
    config = Config(port=1234, allowed_dirs=["/x"]).validate()
    again = load_config(environ={"WES_ARVADOS_RESOLVED_CONFIG": config.to_json()})
    assert again == config


def test_serve_refuses_a_bad_config_with_exit_status_2(tmp_path, capsys):
    from wes_arvados.cli.main import main

    assert main(["serve", "--port", "0", "--state-dir", str(tmp_path)]) == 2
    assert "port must be a positive integer" in capsys.readouterr().err


def test_the_images_section_comes_from_the_file_the_environment_and_flags(tmp_path):
    cfg = tmp_path / "wes.yaml"
    cfg.write_text("images:\n  deny: [quay.io/*]\n  platform: linux/arm64\n  registry-config: /etc/c.json\n")
    env = {"WES_ARVADOS_IMAGES_PLATFORM": "linux/amd64", "WES_ARVADOS_IMAGES_INSECURE_REGISTRIES": "a:1,b:2"}
    config = load_config(str(cfg), {"images": {"mirrors": ["docker.io=http://127.0.0.1:5000"], "allow": None}},
                         environ=env)
    images = config.images
    assert images.deny == ["quay.io/*"] and images.registry_config == "/etc/c.json"
    assert images.platform == "linux/amd64" and images.insecure_registries == ["a:1", "b:2"]
    assert images.mirrors == ["docker.io=http://127.0.0.1:5000"] and images.allow == []
    assert load_config(environ={"WES_ARVADOS_RESOLVED_CONFIG": config.to_json()}) == config


def test_the_arvados_section_comes_from_the_file_the_environment_and_the_usual_arvados_variables(tmp_path):
    cfg = tmp_path / "wes.yaml"
    cfg.write_text("arvados:\n  project-uuid: zzzzz-j7d0g-0123456789abcde\n  runner_image: arvados/jobs:3.2.1\n")
    config = load_config(str(cfg), environ={"ARVADOS_API_HOST": "zzzzz.example.org",
                                            "ARVADOS_API_HOST_INSECURE": "true"})
    arv = config.arvados
    assert (arv.api_host, arv.api_host_insecure) == ("zzzzz.example.org", True)
    assert (arv.project_uuid, arv.runner_image) == ("zzzzz-j7d0g-0123456789abcde", "arvados/jobs:3.2.1")
    mine = load_config(str(cfg), environ={"ARVADOS_API_HOST": "zzzzz.example.org",
                                          "WES_ARVADOS_ARVADOS_API_HOST": "other.example.org:8443"})
    assert (mine.arvados.api_host, mine.arvados.api_host_insecure) == ("other.example.org:8443", False)
    assert Config.from_json(mine.to_json()) == mine
    cfg.write_text("arvados:\n  token: secret\n")  # tokens are the callers', never the server's
    with pytest.raises(ConfigError, match="unknown settings .* under arvados: token"):
        load_config(str(cfg), environ={})
