"""The web chat (Gradio, an optional extra: ``pip install "chatfreeze[web]"``): ``chatfreeze web``.

One page, two tabs: **Chat** streams the fine-tuned model's replies (the run's system prompt and generation
settings, a reset button) beside the run's learn-vs-keep numbers; **Side by side** sends each message to the
base model and the fine-tuned one at once and streams both. The server keeps no conversation: each request
carries its history (the chatbot's value), so sessions in several browser tabs never mix. It listens on
127.0.0.1 unless told otherwise and prints its URL.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from collections.abc import Iterator
from typing import Any

from ..common import LiteralPercentHelpFormatter
from ..evaluation.metrics_table import describe, format_value
from ..rundir import read_evaluation
from .conversation import (
    ChatError,
    ChatModel,
    ChatSession,
    ChatSettings,
    initial_settings,
    load_chat_model,
    pick_model,
)

logger = logging.getLogger(__name__)

MESSAGE_ID, SEND_ID, RESET_ID, CHAT_ID = "message", "send", "reset", "chat"
BOTH_MESSAGE_ID, BOTH_SEND_ID, BOTH_RESET_ID, BASE_CHAT_ID, TUNED_CHAT_ID = (
    "both-message", "both-send", "both-reset", "base-chat", "tuned-chat")


def message_text(content: Any) -> str:
    """The text of a chatbot message's content: a string, or Gradio's list of parts (``{"type": "text", ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content)
    return "" if content is None else str(content)


def as_messages(history: list | None) -> list[dict]:
    """The chatbot's value as chat-template messages (role + plain text content)."""
    return [{"role": m["role"], "content": message_text(m.get("content"))} for m in history or []
            if isinstance(m, dict) and m.get("role") in ("user", "assistant")]


def stream_reply(chat_model: ChatModel, settings: ChatSettings, system_prompt: str | None, history: list[dict],
                 ) -> Iterator[str]:
    """The reply to ``history`` (ending with the user's message), as the growing text while tokens arrive."""
    session = ChatSession(chat_model, settings, system_prompt)
    session.messages = list(history)
    stream, _ = session.start_reply()
    text = ""
    try:
        for piece in stream:
            text += piece
            yield text
        final = stream.result()
        if final != text.strip():
            yield final
    finally:
        stream.close()


def learn_keep_markdown(run_dir: str) -> str:
    """The run's learn-vs-keep numbers (``evaluation.json``) as a small Markdown table, or a note that there are none."""
    evaluation = read_evaluation(run_dir) if run_dir else None
    learn_keep = (evaluation or {}).get("learn_keep")
    if not learn_keep:
        return "*No learn-vs-keep measurements in this model's directory (train with `eval_before_after: true`).*"
    rows = []
    for side, metrics in (("learn", learn_keep.get("learn", {})), ("keep", learn_keep.get("keep", {}))):
        for name, values in metrics.items():
            before, after = values.get("before"), values.get("after")
            if before is None or after is None:
                continue
            # The table's short name (lm-eval metrics get one made from their task), never one made from the key.
            rows.append(f"| {side} | {describe(name).name} | {format_value(name, before)} | "
                        f"{format_value(name, after)} |")
    return "### Learned vs kept\n\n| | measure | base | this model |\n|---|---|---|---|\n" + "\n".join(rows)


def build_app(chat_model: ChatModel, settings: ChatSettings, system_prompt: str | None,
              base_model: ChatModel | None = None, title: str = "chatfreeze"):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    def respond(message: str, history: list):
        messages = as_messages(history)
        if not message.strip():
            yield "", messages
            return
        messages.append({"role": "user", "content": message})
        yield "", messages + [{"role": "assistant", "content": ""}]
        try:
            for text in stream_reply(chat_model, settings, system_prompt, messages):
                yield "", messages + [{"role": "assistant", "content": text}]
        except ChatError as err:
            raise gr.Error(str(err)) from None

    def respond_both(message: str, base_history: list, tuned_history: list):
        base_msgs, tuned_msgs = as_messages(base_history), as_messages(tuned_history)
        if not message.strip() or base_model is None:
            yield "", base_msgs, tuned_msgs
            return
        base_msgs.append({"role": "user", "content": message})
        tuned_msgs.append({"role": "user", "content": message})
        base_text = tuned_text = ""
        streams = (stream_reply(base_model, settings, system_prompt, base_msgs),
                   stream_reply(chat_model, settings, system_prompt, tuned_msgs))
        # Both generate at once (each in its own thread); the page shows whichever has new text.
        for base_part, tuned_part in itertools.zip_longest(*streams):
            base_text = base_part if base_part is not None else base_text
            tuned_text = tuned_part if tuned_part is not None else tuned_text
            yield ("", base_msgs + [{"role": "assistant", "content": base_text}],
                   tuned_msgs + [{"role": "assistant", "content": tuned_text}])

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"## {title}\n\nModel: `{chat_model.name}`" +
                    (f" · base: `{base_model.name}`" if base_model else ""))
        with gr.Tab("Chat"), gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(elem_id=CHAT_ID, label="fine-tuned", height=460)
                message = gr.Textbox(elem_id=MESSAGE_ID, placeholder="Ask the support assistant...", show_label=False)
                with gr.Row():
                    send = gr.Button("Send", elem_id=SEND_ID, variant="primary")
                    reset = gr.Button("Reset", elem_id=RESET_ID)
            with gr.Column(scale=2):
                gr.Markdown(learn_keep_markdown(chat_model.resolved.path))
                gr.Markdown(f"**System prompt**\n\n{system_prompt or '(none)'}\n\n**Settings**: `{settings.describe()}`")
        send.click(respond, [message, chat], [message, chat])
        message.submit(respond, [message, chat], [message, chat])
        reset.click(lambda: ("", []), None, [message, chat])
        with gr.Tab("Side by side"):
            if base_model is None:
                gr.Markdown("*No base model to compare with: start with `--base ID_OR_DIR` (a run's own base is "
                            "used when it can be loaded).*")
            with gr.Row():
                base_chat = gr.Chatbot(elem_id=BASE_CHAT_ID, label="base", height=420)
                tuned_chat = gr.Chatbot(elem_id=TUNED_CHAT_ID, label="fine-tuned", height=420)
            both_message = gr.Textbox(elem_id=BOTH_MESSAGE_ID, placeholder="One message to both models...",
                                      show_label=False)
            with gr.Row():
                both_send = gr.Button("Send to both", elem_id=BOTH_SEND_ID, variant="primary")
                both_reset = gr.Button("Reset", elem_id=BOTH_RESET_ID)
        for trigger in (both_send.click, both_message.submit):
            trigger(respond_both, [both_message, base_chat, tuned_chat], [both_message, base_chat, tuned_chat])
        both_reset.click(lambda: ("", [], []), None, [both_message, base_chat, tuned_chat])
    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatfreeze web", description=__doc__.splitlines()[0],
                                     formatter_class=LiteralPercentHelpFormatter)
    parser.add_argument("--model_name_or_path", default=None,
                        help="A run's output dir, a delta or a Hub id (default: the newest run under outputs/).")
    parser.add_argument("--base", default=None,
                        help="Model for the side-by-side tab (default: the run's base model; 'none' for no tab).")
    parser.add_argument("--system_prompt", default=None, help="Default: the one the model was trained with.")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (0.0.0.0 exposes it).")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="Also open a public Gradio share link.")
    parser.add_argument("--model_dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    return parser


def load_base(chat_model: ChatModel, requested: str | None, dtype: str) -> ChatModel | None:
    """The side-by-side model: ``--base``, else the run's own base if it loads (offline it may not)."""
    if requested == "none":
        return None
    name = requested or chat_model.base_model
    if not name:
        return None
    try:
        return load_chat_model(name, dtype, "--base")
    except Exception as err:  # noqa: BLE001 - the chat works without the comparison tab
        if requested:
            raise
        logger.warning("Side by side off: the run's base %s could not be loaded (%s).", name, err)
        return None


def make_app(model_name_or_path: str | None = None, *, base: str | None = None, dtype: str = "auto",
             system_prompt: str | None = None, revision: str | None = None, title: str | None = None):
    """Load a model (a run's output dir, a delta or a Hub id; default: the newest run under outputs/) and its
    side-by-side base, and build the app (not launched): what ``chatfreeze web`` serves and what the ``app.py``
    of a Space written by ``chatfreeze push --space`` calls. Returns ``(app, name)``."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ChatError('the web chat needs Gradio: pip install "chatfreeze[web]" (or pip install gradio)') from None
    name, _ = pick_model(model_name_or_path)
    chat_model = load_chat_model(name, dtype, revision=revision)
    base_model = load_base(chat_model, base, dtype)
    settings, _ = initial_settings(chat_model.model.generation_config, {})
    system_prompt = chat_model.system_prompt if system_prompt is None else system_prompt
    app = build_app(chat_model, settings, system_prompt, base_model, title=title or f"chatfreeze · {name}")
    return app, name


def main(argv: list[str] | None = None, announce=logger.warning) -> int:
    """Serve until interrupted; ``announce`` receives the line with the URL (the CLI prints it)."""
    args = build_parser().parse_args(argv)
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: give a TCP port from 1 to 65535 (default 7860).")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app, name = make_app(args.model_name_or_path, base=args.base, dtype=args.model_dtype,
                         system_prompt=args.system_prompt)
    app.queue()
    _, local_url, share_url = app.launch(server_name=args.host, server_port=args.port, share=args.share,
                                         prevent_thread_lock=True, quiet=True)
    announce(f"chatfreeze web: serving {name} at {local_url}" + (f" (public: {share_url})" if share_url else ""))
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0
