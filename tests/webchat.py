"""Helpers of the web-chat browser test: a tiny model that always answers in visible letters, the web server in
a subprocess, and headless Chromium from the system's packages driven by Selenium (no driver download)."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from conftest import REPO_ROOT, build_chatml_tokenizer, build_tiny_model, in_ci

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def lettered_model_dir(path: Path, letters: str = "ab", max_new_tokens: int = 24) -> Path:
    """A tiny Llama whose greedy reply is always a string of ``letters`` (never end-of-turn): its final norm keeps
    one hidden dimension and the untied head maps its sign to the first or second letter."""
    tokenizer = build_chatml_tokenizer()
    model = build_tiny_model("llama", tie=False)
    first, second = tokenizer.convert_tokens_to_ids(list(letters))
    with torch.no_grad():
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[first, 0] = 50.0
        model.lm_head.weight[second, 0] = -50.0
    config = model.generation_config
    config.eos_token_id, config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    config.do_sample, config.max_new_tokens = False, max_new_tokens
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    """``python -m chatfreeze.web ...`` in a subprocess; ``url`` once it printed it."""

    def __init__(self, *args: str, timeout: float = 240):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "chatfreeze.web", *args, "--port", str(self.port)],
                                     cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        found: queue.Queue = queue.Queue()

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                if "chatfreeze web: serving" in line:
                    found.put(line.rsplit(" at ", 1)[1].split()[0])

        threading.Thread(target=read, daemon=True).start()
        try:
            self.url = found.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise AssertionError("the web chat did not print its URL:\n" + "".join(self.lines[-40:])) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def chromium_driver(width: int = 1280, height: int = 900):
    """Headless Chromium with the system's chromedriver; skips (fails in CI) when they are not installed."""
    import pytest

    binary = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        binary = None
    if not binary or not driver_path:
        message = "Chromium, chromedriver and selenium are needed (apt-get install chromium chromium-driver)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def wait_for(condition, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    """Poll ``condition()`` until it returns something truthy; that value, or an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - the page may be re-rendering the element
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
