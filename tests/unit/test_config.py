"""Configuration: the deployment guide's file loads as written; every bad input is one line and exit 78."""

from __future__ import annotations

import os
import stat

import pytest

from belabox_metrics import config
from belabox_metrics.commands import cli
from tests.support.cli import run_cli

# Copied verbatim from the deployment guide, section "Main Configuration File".
GUIDE_CONFIG = """\
device_id: "device-001"  # Unique identifier for this device

# Data collection intervals
collection_interval: 30s
upload_interval: 1m

# Remote endpoint
remote:
  url: "https://metrics.example.com/api/v1/import"
  auth_token_file: /etc/belabox-metrics/api-token  # Optional
  timeout: 30s

  # Upload tuning
  batch_size: 2500  # Max metrics per upload batch
  chunk_size: 50    # Metrics per HTTP chunk

  # Retry configuration
  retry:
    enabled: true
    max_attempts: 3
    initial_backoff: 1s
    max_backoff: 30s
    backoff_multiplier: 2.0
    jitter_percent: 20

# Local storage
storage:
  path: /var/lib/belabox-metrics/metrics.db
  wal_checkpoint_interval: 1h
  wal_checkpoint_size_mb: 64

# Health monitoring
health:
  listen_addr: ":9100"

# Monitoring
monitoring:
  clock_skew_check_interval: 5m
  clock_skew_warn_threshold_ms: 2000
  clock_skew_url: "https://metrics.example.com"  # For time sync check

# Logging
logging:
  level: info     # debug, info, warn, error
  format: json    # json, console

# Network monitoring
network:
  max_interfaces: 32

# Disk monitoring
disk:
  allowed_devices: "^(sd[a-z]|nvme[0-9]+n[0-9]+|vd[a-z])$"
"""


def test_guide_config_loads_with_the_guides_meaning():
    cfg = config.loads(GUIDE_CONFIG, source="config.yaml", environ={})
    assert cfg.device_id == "device-001"
    assert cfg.collection_interval == 30.0 and cfg.upload_interval == 60.0
    assert cfg.remote.url == "https://metrics.example.com/api/v1/import"
    assert cfg.remote.auth_token_file == "/etc/belabox-metrics/api-token"
    assert cfg.remote.timeout == 30.0
    assert (cfg.remote.batch_size, cfg.remote.chunk_size) == (2500, 50)
    r = cfg.remote.retry
    assert (r.enabled, r.max_attempts, r.initial_backoff, r.max_backoff) == (True, 3, 1.0, 30.0)
    assert (r.backoff_multiplier, r.jitter_percent) == (2.0, 20)
    assert cfg.storage.path == "/var/lib/belabox-metrics/metrics.db"
    assert cfg.storage.wal_checkpoint_interval == 3600.0 and cfg.storage.wal_checkpoint_size_mb == 64
    assert config.parse_listen_addr(cfg.health.listen_addr) == ("127.0.0.1", 9100)
    assert cfg.monitoring.clock_skew_check_interval == 300.0
    assert cfg.monitoring.clock_skew_warn_threshold_ms == 2000
    assert cfg.clock_skew_url == "https://metrics.example.com"
    assert (cfg.logging.level, cfg.logging.format) == ("info", "json")
    assert cfg.network.max_interfaces == 32
    assert cfg.disk.allowed_devices == "^(sd[a-z]|nvme[0-9]+n[0-9]+|vd[a-z])$"


def test_guide_config_passes_check_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(GUIDE_CONFIG)
    res = run_cli("check-config", "--config", str(path))
    assert res.returncode == 0, res.stderr
    assert "device_id: device-001" in res.stdout
    # The token file does not exist here: a warning, not an error (first boot creates it).
    assert "warning: token file /etc/belabox-metrics/api-token does not exist" in res.stderr
    assert "Traceback" not in res.stderr


def test_new_keys_have_safe_defaults():
    cfg = config.loads("device_id: x\n", environ={})
    assert cfg.storage.max_size_mb == 64
    assert cfg.storage.commit_interval == 120.0
    assert cfg.remote.max_bytes_per_second > 0
    assert dict(cfg.remote.extra_labels) == {}
    assert cfg.storage.fallback_path == ""
    assert cfg.remote.url == ""  # spool only until an operator sets it


def test_extra_labels_are_strings():
    cfg = config.loads("remote:\n  extra_labels:\n    site: berlin\n    rack: 7\n", environ={})
    assert dict(cfg.remote.extra_labels) == {"site": "berlin", "rack": "7"}


@pytest.mark.parametrize("name,value,expected", [
    ("BELABOX_METRICS_REMOTE_URL", "http://127.0.0.1:8428/api/v1/import",
     lambda c: c.remote.url == "http://127.0.0.1:8428/api/v1/import"),
    ("BELABOX_METRICS_DEVICE_ID", "0042", lambda c: c.device_id == "0042"),
    ("BELABOX_METRICS_REMOTE_RETRY_MAX_ATTEMPTS", "7", lambda c: c.remote.retry.max_attempts == 7),
    ("BELABOX_METRICS_COLLECTION_INTERVAL", "5s", lambda c: c.collection_interval == 5.0),
    ("BELABOX_METRICS_LOGGING_LEVEL", "debug", lambda c: c.logging.level == "debug"),
])
def test_environment_overrides(name, value, expected):
    cfg = config.loads(GUIDE_CONFIG, environ={name: value})
    assert expected(cfg)


def test_environment_override_is_validated_like_the_file():
    with pytest.raises(config.ConfigError) as e:
        config.loads(GUIDE_CONFIG, environ={"BELABOX_METRICS_REMOTE_RETRY_JITTER_PERCENT": "150"})
    assert e.value.problems == ["config.yaml: remote.retry.jitter_percent: must be between 0 and 100, got 150"
                                .replace("config.yaml", "<config>")]


def test_unknown_environment_override_is_reported():
    with pytest.raises(config.ConfigError) as e:
        config.loads(GUIDE_CONFIG, environ={"BELABOX_METRICS_REMOTE_URLL": "http://x/"})
    assert "did you mean BELABOX_METRICS_REMOTE_URL?" in e.value.problems[0]


# (file text, the key the single message must name, a fragment of the message)
MALFORMED = [
    ("remote:\n  retry:\n    jitter_percent: 150\n", "remote.retry.jitter_percent",
     "must be between 0 and 100, got 150"),
    ("remote:\n  retry:\n    jitter_percent: -1\n", "remote.retry.jitter_percent", "between 0 and 100"),
    ("remote:\n  retry:\n    backoff_multiplier: 0.5\n", "remote.retry.backoff_multiplier", "between 1 and 100"),
    ("remote:\n  retry:\n    max_attempts: 0\n", "remote.retry.max_attempts", "between 1 and 100"),
    ("remote:\n  retry:\n    enabled: maybe\n", "remote.retry.enabled", "must be true or false"),
    ("remote:\n  retry:\n    initial_backoff: 1m\n    max_backoff: 30s\n", "remote.retry.initial_backoff",
     "must not exceed max_backoff"),
    ("collection_interval: 30\n", "collection_interval", "must be a duration"),
    ("collection_interval: -5s\n", "collection_interval", "must be a duration"),
    ("collection_interval: 0s\n", "collection_interval", "greater than 0"),
    ("upload_interval: soon\n", "upload_interval", "must be a duration like 30s"),
    ("upload_interval: 1d\n", "upload_interval", "must be a duration"),
    ("storage:\n  wal_checkpoint_interval: 1x\n", "storage.wal_checkpoint_interval", "must be a duration"),
    ("storage:\n  wal_checkpoint_size_mb: big\n", "storage.wal_checkpoint_size_mb", "must be a whole number"),
    ("storage:\n  max_size_mb: 0\n", "storage.max_size_mb", "between 1 and 65536"),
    ("storage:\n  path: ''\n", "storage.path", "must not be empty"),
    ("remote:\n  batch_size: -5\n", "remote.batch_size", "between 1 and 1e+06"),
    ("remote:\n  chunk_size: 2.5\n", "remote.chunk_size", "must be a whole number"),
    ("remote:\n  url: ftp://metrics.example.com/x\n", "remote.url", "must be an http:// or https:// URL"),
    ("remote:\n  url: not a url\n", "remote.url", "must be an http:// or https:// URL"),
    ("remote:\n  timeout: [1, 2]\n", "remote.timeout", "must be a duration like 30s, 1m or 1h, got a list"),
    ("colection_interval: 30s\n", "colection_interval", "did you mean 'collection_interval'"),
    ("remote:\n  urll: http://x/\n", "remote.urll", "did you mean 'url'"),
    ("storage:\n  max_size: 10\n", "storage.max_size", "did you mean 'max_size_mb'"),
    ("disk:\n  allowed_devices: '^(sd[a-z]'\n", "disk.allowed_devices", "invalid regular expression"),
    ("logging:\n  level: verbose\n", "logging.level", "must be one of debug, info, warn, error"),
    ("logging:\n  format: xml\n", "logging.format", "must be one of json, console"),
    ("network:\n  max_interfaces: many\n", "network.max_interfaces", "must be a whole number"),
    ("health:\n  listen_addr: 9100\n", "health.listen_addr", "must be a string"),
    ("health:\n  listen_addr: localhost\n", "health.listen_addr", "must be host:port"),
    ("monitoring:\n  clock_skew_warn_threshold_ms: 0\n", "monitoring.clock_skew_warn_threshold_ms", "at least 1"),
    ("device_id: 'has spaces'\n", "device_id", "not allowed"),
    ("remote: yes\n", "remote", "must be a mapping"),
    ("remote:\n  extra_labels:\n    bad-name: x\n", "remote.extra_labels", "not a valid label name"),
    ("collectors:\n  cpu:\n    interval: 0s\n", "collectors.cpu.interval", "greater than 0"),
    ("collectors:\n  gpu:\n    enabled: true\n", "collectors.gpu", "unknown key"),
]


@pytest.mark.parametrize("text,key,fragment", MALFORMED, ids=[m[1] + ":" + m[0].split("\n")[-2][:20]
                                                             for m in MALFORMED])
def test_malformed_config_is_one_line_naming_the_key(tmp_path, capsys, text, key, fragment):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    rc = cli.main(["check-config", "--config", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 78
    assert len(err) == 1, err
    assert err[0].startswith(f"config.yaml: {key}: "), err[0]
    assert fragment in err[0]


def test_several_problems_give_one_line_each(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("collection_interval: x\nlogging:\n  level: loud\nremote:\n  batch_size: 0\n")
    assert cli.main(["check-config", "--config", str(path)]) == 78
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert {line.split(": ")[1] for line in err} == {"collection_interval", "logging.level", "remote.batch_size"}


@pytest.mark.parametrize("content,fragment", [
    ("", "file is empty"),
    ("# only a comment\n", "file is empty"),
    ("remote:\n  url: [unclosed\n", "YAML syntax error at line"),
    ("- a\n- b\n", "must be a mapping of settings"),
    ("just text\n", "must be a mapping of settings"),
])
def test_unusable_files(tmp_path, content, fragment):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    res = run_cli("check-config", "--config", str(path))
    assert res.returncode == 78
    assert res.stderr.strip().startswith("config.yaml: ") and fragment in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_missing_and_unreadable_files(tmp_path):
    res = run_cli("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert res.returncode == 78 and "nope.yaml: file not found" in res.stderr
    res = run_cli("check-config", "--config", str(tmp_path))
    assert res.returncode == 78 and "is a directory" in res.stderr
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    res = run_cli("check-config", "--config", str(binary))
    assert res.returncode == 78 and "not UTF-8 text" in res.stderr
    assert "Traceback" not in res.stderr


def test_unreadable_file_as_unprivileged_user(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(GUIDE_CONFIG)
    os.chmod(path, 0)
    os.chmod(tmp_path, stat.S_IRWXU | stat.S_IXOTH | stat.S_IROTH)
    if os.getuid() == 0:
        # root reads any file: drop to nobody in the child to see what the service user sees.
        import subprocess

        from tests.support.cli import cli_argv, cli_env
        res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cli_argv(
            "check-config", "--config", str(path))], env=cli_env(), capture_output=True, text=True, timeout=60)
    else:
        res = run_cli("check-config", "--config", str(path))
    assert res.returncode == 78, res.stderr
    assert "permission denied" in res.stderr and "Traceback" not in res.stderr


def test_token_file_checks(tmp_path):
    from belabox_metrics.platform import token_file as token
    tok = tmp_path / "api-token"
    tok.write_text("s3cret-token\n")
    os.chmod(tok, 0o600)
    cfg = config.loads(f"remote:\n  auth_token_file: {tok}\n", environ={})
    assert token.load_token(cfg, environ={}).token == "s3cret-token"
    os.chmod(tok, 0o644)
    state = token.load_token(cfg, environ={})
    assert state.token is None and "readable or writable by others" in state.problem
    assert "s3cret" not in state.problem
    # The systemd credential wins over the configured file.
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api-token").write_text("from-credential")
    os.chmod(creds / "api-token", 0o400)
    state = token.load_token(cfg, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert state.token == "from-credential" and state.source.endswith("creds/api-token")


def test_token_source_picks_up_a_token_created_later(tmp_path):
    from belabox_metrics.platform import token_file as token
    tok = tmp_path / "api-token"
    cfg = config.loads(f"remote:\n  auth_token_file: {tok}\n", environ={})
    src = token.TokenSource(cfg, environ={})
    assert src.get().token is None and "does not exist" in src.get().problem
    tok.write_text("late-token")
    os.chmod(tok, 0o600)
    assert src.get().token == "late-token"


def test_clock_url_defaults_to_the_remote_origin_without_credentials():
    cfg = config.loads("remote:\n  url: https://user:secret@vm.example.org:8428/api/v1/import\n", environ={})
    assert cfg.clock_skew_url == "https://vm.example.org:8428/"
