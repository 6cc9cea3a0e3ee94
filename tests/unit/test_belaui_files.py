"""belaUI's setup.json, config.json (whitelisted) and runtime files."""

from __future__ import annotations

import dataclasses
import json

import pytest

from belabox_metrics.collectors.belabox import belaui_files as files
from tests.support.proctree import PLANTED_SECRETS, STREAM_TREE


def test_parse_setup_reads_paths_and_falls_back_to_belaui_defaults():
    s = files.parse_setup(json.dumps({"hw": "rk3588", "bitrate_file": "/var/run/br", "ips_file": 7,
                                      "belacoder_path": "/home/belacoder"}))
    assert s.bitrate_file == "/var/run/br"
    assert s.ips_file == files.DEFAULT_IPS_FILE
    assert s.pipelines_dir == "/home/belacoder/pipeline"
    assert files.parse_setup("{}") == files.Setup()


@pytest.mark.parametrize("text", ["{", "[1, 2]", "null", ""])
def test_bad_json_is_reported_without_quoting_it(text):
    with pytest.raises(files.BadFile) as e:
        files.parse_config(text)
    assert "config.json" in str(e.value)


def test_bad_json_message_never_contains_the_file():
    secret = PLANTED_SECRETS[0]
    with pytest.raises(files.BadFile) as e:
        files.parse_config('{"password_hash": "' + secret + '", oops}')
    assert secret not in str(e.value)


def test_bitrate_file_is_min_then_max_in_bits_per_second():
    assert files.parse_bitrate_file("300000\n6000000\n") == (300000, 6000000)
    assert files.parse_bitrate_file("300000\n") == (300000, None)
    assert files.parse_bitrate_file("x\n5000000\n") == (None, 5000000)
    assert files.parse_bitrate_file("") == (None, None)


def test_ips_file_keeps_valid_unique_addresses():
    assert files.parse_ips_file("10.0.0.2\n\n garbage \n10.0.0.2\n192.168.8.100\nfe80::1\n") == [
        "10.0.0.2", "192.168.8.100", "fe80::1"]


def test_whitelist_copies_only_the_stream_settings():
    raw = json.loads((STREAM_TREE / "root" / "opt" / "belaUI" / "config.json").read_text())
    cfg = files.whitelist_config(raw)
    assert cfg.max_bitrate_kbps == 6000
    assert cfg.latency_ms == 2000
    assert cfg.audio_delay_ms == 0
    assert cfg.bitrate_overlay is False
    assert (cfg.audio_source, cfg.audio_codec) == ("HDMI", "opus")
    assert cfg.pipeline_id is not None and len(cfg.pipeline_id) == 40
    flat = repr(dataclasses.asdict(cfg))
    for secret in PLANTED_SECRETS:
        assert secret not in flat


def test_whitelist_refuses_values_that_do_not_look_like_settings():
    cfg = files.whitelist_config({
        "pipeline": "srt://relay.example:5000?streamid=key",  # not a sha1 id
        "asrc": "https://user:pass@host/",  # not a label
        "acodec": "x" * 200,
        "max_br": True, "srt_latency": "2000", "delay": 1.5,
    })
    assert cfg.pipeline_id is None and cfg.audio_source is None and cfg.audio_codec is None
    assert cfg.max_bitrate_kbps is None
    assert cfg.latency_ms == 2000
    assert cfg.audio_delay_ms is None
    assert files.whitelist_config(["not", "a", "dict"]) == files.StreamConfig()


def test_pipeline_ids_are_belauis_sha1_of_dir_and_file(tmp_path):
    (tmp_path / "rk3588").mkdir()
    (tmp_path / "rk3588" / "h265_hdmi_1080p30").write_text("x")
    names = files.pipeline_names(str(tmp_path))
    assert names == {files.pipeline_id("rk3588", "h265_hdmi_1080p30"): "rk3588/h265_hdmi_1080p30"}
    assert files.pipeline_id("rk3588", "h265_hdmi_1080p30") == "2c4fb47e22d5d28d5b332357a0fb0c79497f2a4a"


def test_runtime_files_are_looked_up_through_the_host_tmp_bind_first():
    assert files.runtime_candidates("/", "/tmp/belacoder_br") == [
        "/run/belabox-metrics/host-tmp/belacoder_br", "/tmp/belacoder_br"]
    assert files.runtime_candidates("/tree", "/var/run/x") == ["/tree/var/run/x"]
