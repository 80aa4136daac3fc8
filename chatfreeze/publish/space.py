"""A Gradio Space for a pushed model: ``chatfreeze push RUN --repo_id ORG/NAME --space ORG/NAME-chat``.

The Space is three files, written here and uploaded to a Space repository (``repo_type="space"``, Gradio SDK):

* ``app.py``: loads the pushed model (full model or trained-blocks delta, at the pushed revision) with
  ``chatfreeze.chat.web.make_app`` -- the same page as ``chatfreeze web``: streamed replies with the run's system
  prompt and settings, a side-by-side tab with the base, the learn-vs-keep numbers -- and launches it;
* ``requirements.txt``: ``chatfreeze[web]`` at the version that trained the model (``--space_requirement``
  names another, e.g. a Git URL);
* ``README.md``: the Space's configuration (front matter: SDK, its version, ``app_file``, the model it uses).

Environment variables of the Space override what was written: ``CHATFREEZE_MODEL``, ``CHATFREEZE_REVISION``,
``CHATFREEZE_BASE`` (``none`` turns the side-by-side tab off).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__

SPACE_FILES = ("app.py", "requirements.txt", "README.md")
SPACE_ID_HELP = "USER/NAME of the Space repository (created if missing)"

APP_TEMPLATE = '''"""Chat with {model} -- a Gradio Space written by `chatfreeze push --space` (chatfreeze {version})."""

import os

from chatfreeze.chat.web import make_app

MODEL = os.environ.get("CHATFREEZE_MODEL", {model!r})
REVISION = os.environ.get("CHATFREEZE_REVISION", {revision!r}) or None
BASE = os.environ.get("CHATFREEZE_BASE") or None  # default: the run's own base model; "none": no side-by-side

demo, _ = make_app(MODEL, revision=REVISION, base=BASE, title={title!r})

if __name__ == "__main__":
    demo.queue().launch()
'''


def default_requirement() -> str:
    return f"chatfreeze[web]=={__version__}"


def gradio_version() -> str:
    """The Gradio the Space runs: the one installed here (the web chat was tested with it), else a 5.x."""
    try:
        from importlib.metadata import version

        return version("gradio")
    except Exception:  # noqa: BLE001 - gradio is an optional extra
        return "5.0.0"


def space_readme(space_id: str, model_repo_id: str) -> str:
    # Front-matter values are JSON strings: valid YAML whatever characters the names hold.
    title = space_id.split("/")[-1][:30]
    lines = [
        "---",
        f"title: {json.dumps(title)}",
        "emoji: 💬",
        "colorFrom: blue",
        "colorTo: gray",
        "sdk: gradio",
        f"sdk_version: {json.dumps(gradio_version())}",
        "app_file: app.py",
        "models:",
        f"  - {json.dumps(model_repo_id)}",
        "pinned: false",
        "---",
        "",
        f"# {title}",
        "",
        f"A chat with [{model_repo_id}](https://huggingface.co/{model_repo_id}), a support assistant fine-tuned with "
        "chatfreeze: the **Chat** tab streams its replies (with the system prompt and generation settings it was "
        "trained with) beside its learned-vs-kept measurements; **Side by side** answers each message with the "
        "base model and the fine-tuned one at once.",
        "",
        "Space variables: `CHATFREEZE_MODEL`, `CHATFREEZE_REVISION` (another model or revision), `CHATFREEZE_BASE` "
        "(the comparison model; `none` for no comparison tab).",
        "",
    ]
    return "\n".join(lines)


def write_space(folder: str | Path, space_id: str, model_repo_id: str, *, revision: str | None = None,
                requirement: str | None = None) -> list[Path]:
    """Write the Space's files into ``folder`` (created; must not already hold them). Returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    title = f"chatfreeze · {model_repo_id}"
    contents = {
        "app.py": APP_TEMPLATE.format(model=model_repo_id, revision=revision or "", title=title,
                                      version=__version__),
        "requirements.txt": (requirement or default_requirement()).strip() + "\n",
        "README.md": space_readme(space_id, model_repo_id),
    }
    paths = []
    for name in SPACE_FILES:
        path = folder / name
        path.write_text(contents[name], encoding="utf-8")
        paths.append(path)
    return paths
