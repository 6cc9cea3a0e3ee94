"""Hostile and unlucky config files: every one is refused with exit 78 and one line per problem,
never a traceback, never a hang, in bounded memory (issue "Reliability").

Each case runs the real command line in a child with an address-space limit, so an alias bomb
that expands would fail the test by MemoryError or the timeout instead of eating the machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from tests.support.cli import cli_argv, cli_env

MEMORY_LIMIT = 768 << 20  # the interpreter, yaml and jsonschema need ~60 MB; a bomb needs GBs
TIMEOUT_S = 20

BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

# (id, file content, text the one line must contain)
CASES = [
    ("alias-bomb", BOMB, "too many values"),
    ("alias-bomb-in-labels", "remote:\n  extra_labels:\n    x: &x [1,1,1,1,1,1,1,1,1,1]\n"
     + "".join(f"    y{i}: &y{i} [" + ",".join([f"*{'x' if i == 0 else 'y' + str(i - 1)}"] * 10) + "]\n"
               for i in range(8)), "too many values"),
    ("huge-label-map", "remote:\n  extra_labels:\n" + "".join(f"    k{i}: v{i}\n" for i in range(120_000)),
     "larger than"),
    ("huge-comment", "# " + "x" * (2 << 20) + "\nupload_interval: 1m\n", "larger than"),
    ("deep-nesting", "a: " + "[" * 200 + "]" * 200 + "\n", "nested"),
    ("duplicate-top-key", "upload_interval: 1m\ncollection_interval: 30s\nupload_interval: 2m\n",
     "duplicate key 'upload_interval' at line 3 (first at line 1)"),
    ("duplicate-nested-key", "remote:\n  url: http://a:8428/api/v1/import\n  timeout: 5s\n  url: http://b/\n",
     "duplicate key 'url' at line 4 (first at line 2)"),
    ("port-99999", "remote:\n  url: http://127.0.0.1:99999/api/v1/import\n", "port outside 1-65535"),
    ("port-0", "remote:\n  url: http://127.0.0.1:0/api/v1/import\n", "port outside 1-65535"),
    ("port-not-number", "remote:\n  url: http://127.0.0.1:abc/api/v1/import\n", "port outside 1-65535"),
    ("url-with-space", "remote:\n  url: 'http://vm host:8428/api/v1/import'\n", "spaces"),
    ("url-with-newline", 'remote:\n  url: "http://vm:8428/api/v1/\\nimport"\n', "control characters"),
    ("url-ftp", "remote:\n  url: ftp://vm/api\n", "http:// or https://"),
    ("url-no-host", "remote:\n  url: http:///api/v1/import\n", "http:// or https://"),
    ("url-not-string", "remote:\n  url: 42\n", "must be"),
    ("clock-url-bad", "monitoring:\n  clock_skew_url: 'not a url'\n", "http:// or https://"),
    ("srt-url-port", "belabox:\n  srt_stats_url: http://127.0.0.1:70000/stats\n", "port outside"),
    ("listen-unresolvable", "health:\n  listen_addr: no-such-host.invalid:9100\n", "IP address or localhost"),
    ("listen-port-big", "health:\n  listen_addr: 127.0.0.1:70000\n", "host:port"),
    ("listen-no-port", "health:\n  listen_addr: 127.0.0.1\n", "host:port"),
    ("listen-garbage", "health:\n  listen_addr: ':::'\n", "listen_addr"),
    ("duration-huge", "upload_interval: 99999999999999999999h\n", "must be at most"),
    ("duration-retry-after", "remote:\n  retry:\n    max_retry_after: 1000000000h\n", "must be at most"),
    ("duration-collection-week", "collection_interval: 200h\n", "must be at most 24h"),
    ("duration-negative", "upload_interval: -1m\n", "duration"),
    ("duration-zero", "upload_interval: 0s\n", "greater than 0"),
    ("duration-unitless", "upload_interval: 30\n", "duration"),
    ("duration-word", "collection_interval: often\n", "duration"),
    ("duration-timeout-day", "remote:\n  timeout: 48h\n", "must be at most"),
    ("duration-parked-years", "storage:\n  parked_max_age: 100000h\n", "must be at most"),
    ("duration-mmcli", "modem:\n  mmcli_timeout: 2h\n", "must be at most"),
    ("duration-collector", "collectors:\n  cpu:\n    interval: 48h\n", "must be at most 24h"),
    ("backoff-nan", "remote:\n  retry:\n    backoff_multiplier: .nan\n", "finite"),
    ("backoff-inf", "remote:\n  retry:\n    backoff_multiplier: .inf\n", "between"),
    ("backoff-zero", "remote:\n  retry:\n    backoff_multiplier: 0\n", "between"),
    ("jitter-150", "remote:\n  retry:\n    jitter_percent: 150\n", "between 0 and 100"),
    ("jitter-negative", "remote:\n  retry:\n    jitter_percent: -5\n", "between 0 and 100"),
    ("attempts-zero", "remote:\n  retry:\n    max_attempts: 0\n", "between"),
    ("attempts-huge", "remote:\n  retry:\n    max_attempts: 1000000\n", "between"),
    ("initial-over-max", "remote:\n  retry:\n    initial_backoff: 1m\n    max_backoff: 1s\n", "must not exceed"),
    ("batch-size-zero", "remote:\n  batch_size: 0\n", "between"),
    ("batch-size-huge", "remote:\n  batch_size: 100000000000\n", "between"),
    ("chunk-size-string", "remote:\n  chunk_size: lots\n", "must be"),
    ("bandwidth-negative", "remote:\n  max_bytes_per_second: -1\n", "at least 0"),
    ("max-size-zero", "storage:\n  max_size_mb: 0\n", "between"),
    ("max-size-float", "storage:\n  max_size_mb: 1.5\n", "must be"),
    ("wal-size-huge", "storage:\n  wal_checkpoint_size_mb: 10000000\n", "between"),
    ("max-interfaces-zero", "network:\n  max_interfaces: 0\n", "between"),
    ("max-modems-big", "modem:\n  max_modems: 1000\n", "between"),
    ("max-series-zero", "limits:\n  max_series: 0\n", "between"),
    ("skew-threshold-zero", "monitoring:\n  clock_skew_warn_threshold_ms: 0\n", "at least"),
    ("regex-broken", "disk:\n  allowed_devices: '^(sd[a-z]'\n", "regular expression"),
    ("log-level", "logging:\n  level: verbose\n", "must be one of"),
    ("log-format", "logging:\n  format: xml\n", "must be one of"),
    ("device-id-spaces", "device_id: 'my box'\n", "not allowed"),
    ("device-id-long", "device_id: " + "a" * 300 + "\n", "at most"),
    ("label-name-bad", "remote:\n  extra_labels:\n    'bad-name': x\n", "not a valid label name"),
    ("label-value-map", "remote:\n  extra_labels:\n    site: {a: 1}\n", "must be"),
    ("unknown-key", "upload_intervall: 1m\n", "did you mean 'upload_interval'"),
    ("unknown-section", "remot:\n  url: http://a/\n", "unknown key"),
    ("section-not-map", "remote: yes\n", "must be"),
    ("list-top", "- a\n- b\n", "must be a mapping"),
    ("scalar-top", "just text\n", "must be a mapping"),
    ("empty", "", "empty"),
    ("only-comment", "# nothing here\n", "empty"),
    ("tab-indent", "remote:\n\turl: http://a/\n", "YAML syntax error"),
    ("unclosed-quote", 'remote:\n  url: "http://a/\n', "YAML syntax error"),
    ("python-tag", "remote: !!python/object/apply:os.system ['true']\n", "YAML syntax error"),
    ("binary", "\x00\x01\x02", "YAML syntax error"),
    ("bool-as-number", "remote:\n  batch_size: true\n", "must be"),
    ("enabled-string", "collectors:\n  cpu:\n    enabled: maybe\n", "must be"),
    ("unknown-collector", "collectors:\n  gpu:\n    enabled: true\n", "unknown key"),
]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# One interpreter runs every case through the real command line (cli.main, as the console script
# does), each under an alarm: 70 interpreter start-ups would cost minutes on a busy 2-core CI.
DRIVER = r"""
import contextlib, io, json, signal, sys
from belabox_metrics.commands import cli

def alarm(signum, frame):
    raise TimeoutError("hung")

signal.signal(signal.SIGALRM, alarm)
for line in sys.stdin:
    name, path = json.loads(line)
    out, err = io.StringIO(), io.StringIO()
    signal.alarm(TIMEOUT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(["check-config", "--config", path])
    except BaseException as e:  # reported, never swallowed: the test fails on it
        rc = f"{type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
    print(json.dumps([name, rc, out.getvalue(), err.getvalue()]), flush=True)
""".replace("TIMEOUT", str(TIMEOUT_S))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    requests = []
    for name, content, _ in CASES:
        path = folder / name / "config.yaml"
        path.parent.mkdir()
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
        requests.append(json.dumps([name, str(path)]))
    res = subprocess.run([sys.executable, "-c", DRIVER], input="\n".join(requests) + "\n", env=cli_env(),
                         capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S * 4,
                         preexec_fn=_limit_memory)
    got = {}
    for line in res.stdout.splitlines():
        name, rc, out, err = json.loads(line)
        got[name] = (rc, out, err)
    assert len(got) == len(CASES), f"driver stopped after {len(got)} cases: {res.stderr[-3000:]}"
    return got


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_config_is_refused_in_one_line_each(results, case):
    name, _, expected = case
    rc, out, err = results[name]
    lines = err.splitlines()
    assert rc == 78, f"{name}: exit {rc}\n{err[-2000:]}"
    assert "Traceback" not in err and "MemoryError" not in err, err[-2000:]
    assert lines and all(line.startswith("config.yaml:") or "/config.yaml:" in line for line in lines), err[-2000:]
    assert any(expected in line for line in lines), f"{name}: {expected!r} not in {lines}"
    assert out == ""


def test_at_least_sixty_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("alias-bomb", "duplicate-top-key", "port-99999")],
                         ids=lambda c: c[0])
def test_run_refuses_them_too(tmp_path, case):
    """`run` validates in a child process: the same refusal, exit 78, before anything starts."""
    name, content, expected = case
    path = tmp_path / "config.yaml"
    path.write_text(content)
    env = cli_env({"BELABOX_METRICS_STORAGE_PATH": str(tmp_path / "data/metrics.db")})
    res = subprocess.run(cli_argv("run", "--config", str(path)), env=env, capture_output=True, text=True,
                         timeout=TIMEOUT_S, preexec_fn=_limit_memory)
    assert res.returncode == 78, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert any(expected in line for line in res.stderr.splitlines()), res.stderr[-2000:]
    assert not (tmp_path / "data").exists()
