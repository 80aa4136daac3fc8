"""The web chat in a real browser: headless Chromium (system package) drives ``python -m chatfreeze.web``: open the
page, send a message, watch the reply stream in, reset; the side-by-side tab answers with both models."""

from __future__ import annotations

import re

import pytest
from conftest import require_package
from webchat import WebServer, chromium_driver, lettered_model_dir, wait_for

require_package("gradio")

# Records the length of the newest bot message on every change of the page, to see the reply arrive in parts.
WATCH_STREAM = """
window.__lengths = [];
const target = document.querySelector(arguments[0]);
new MutationObserver(() => {
  const bots = target.querySelectorAll('[data-testid="bot"]');
  if (bots.length) window.__lengths.push(bots[bots.length - 1].innerText.length);
}).observe(target, {subtree: true, childList: true, characterData: true});
"""


def bot_texts(driver, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, f"{selector} [data-testid='bot']")]


def settled_reply(driver, selector: str, count: int = 1) -> str:
    """The newest bot reply once ``count`` replies are shown and the newest has stopped growing."""
    seen = {"text": None, "same": 0}

    def done():
        texts = bot_texts(driver, selector)
        if len(texts) < count or not texts[-1].strip():
            return None
        seen["same"] = seen["same"] + 1 if texts[-1] == seen["text"] else 0
        seen["text"] = texts[-1]
        return texts[-1] if seen["same"] >= 5 else None

    return wait_for(done, what=f"a settled reply in {selector}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    tuned = lettered_model_dir(root / "tuned", "ab", max_new_tokens=120)
    base = lettered_model_dir(root / "base", "xy", max_new_tokens=40)  # the run's settings apply to both
    web = WebServer("--model_name_or_path", str(tuned), "--base", str(base))
    yield web
    web.stop()


@pytest.fixture(scope="module")
def browser():
    driver = chromium_driver()
    yield driver
    driver.quit()


@pytest.mark.slow
def test_send_a_message_read_the_streamed_reply_and_reset(server, browser):
    from selenium.webdriver.common.by import By

    assert server.url.startswith("http://127.0.0.1:")  # localhost by default
    browser.get(server.url)
    box = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#message textarea"), what="the message box")
    browser.execute_script(WATCH_STREAM, "#chat")
    box.send_keys("Hello, where is my order?")
    browser.find_element(By.CSS_SELECTOR, "#send").click()
    reply = settled_reply(browser, "#chat")
    assert re.fullmatch(r"[ab]{120}", reply.replace("\n", "")), reply
    lengths = [n for n in browser.execute_script("return window.__lengths") if n]
    assert len(set(lengths)) >= 2 and max(lengths) == 120, lengths  # shown in parts while it was generated
    assert "Hello, where is my order?" in browser.find_element(By.CSS_SELECTOR, "#chat").text
    assert "Learned vs kept" in browser.page_source or "No learn-vs-keep" in browser.page_source

    box.send_keys("And a second question?")
    browser.find_element(By.CSS_SELECTOR, "#send").click()
    settled_reply(browser, "#chat", count=2)  # the history goes back to the model with the new message
    browser.find_element(By.CSS_SELECTOR, "#reset").click()
    wait_for(lambda: not bot_texts(browser, "#chat") and "second question" not in
             browser.find_element(By.CSS_SELECTOR, "#chat").text, what="an empty chat after reset")


@pytest.mark.slow
def test_side_by_side_answers_with_base_and_tuned_at_once(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server.url)
    tab = wait_for(lambda: next(b for b in browser.find_elements(By.CSS_SELECTOR, "button[role='tab']")
                                if "Side by side" in b.text), what="the side-by-side tab")
    tab.click()
    box = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#both-message textarea"), what="its message box")
    box.send_keys("Can I return a kettle?")
    browser.find_element(By.CSS_SELECTOR, "#both-send").click()
    base_reply, tuned_reply = settled_reply(browser, "#base-chat"), settled_reply(browser, "#tuned-chat")
    assert re.fullmatch(r"[xy]{120}", base_reply.replace("\n", "")), base_reply
    assert re.fullmatch(r"[ab]{120}", tuned_reply.replace("\n", "")), tuned_reply
    browser.find_element(By.CSS_SELECTOR, "#both-reset").click()
    wait_for(lambda: not bot_texts(browser, "#base-chat") and not bot_texts(browser, "#tuned-chat"),
             what="both chats empty after reset")
