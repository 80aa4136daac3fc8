"""Push a training run to the Hugging Face Hub: the folder ``chatfreeze.publish.staging`` builds (model, tokenizer,
evidence, model card), never ``OUTPUT_DIR`` itself (which is only read). ``dry_run`` writes that folder to a
directory instead of pushing it.

The push is ``HfApi.create_repo`` + ``create_branch`` (for ``revision``) + ``upload_folder``; each step is
idempotent, so transient failures (HTTP 5xx/429, connection errors) are retried as a whole with exponential
backoff, and re-running after any failure completes the upload. Every failure surfaces as one ``PushError``
line; the token is never printed, logged or written anywhere.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common import env_flag, first_line
from ..rundir import (
    RunDirError,
)
from .run import load_run
from .staging import PushError, Staged, format_size, refuse_token_in, stage

logger = logging.getLogger(__name__)

NO_TOKEN_MESSAGE = "no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --hub_token"


# ----------------------------------------------------------------------------------------------------------
# Dry run
# ----------------------------------------------------------------------------------------------------------


def space_dry_run_dir(target: str | Path) -> Path:
    """Where ``--dry_run DIR --space ID`` writes the Space's files: beside DIR, as ``DIR-space``."""
    target = Path(target).resolve()
    return target.with_name(target.name + "-space")


def _check_new_dir(path: Path, out: Path, flag: str = "--dry_run") -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise PushError(f"{flag} {path}: already exists and is not empty; choose a new directory.")
    if path == out or out in path.parents:
        raise PushError(f"{flag} {path}: must be outside the output directory, which is never modified.")


def dry_run(output_dir: str | Path, target: str | Path, repo_id: str | None = None, *,
            revision: str | None = None, base_model: str | None = None, token: str | None = None,
            trained_only: bool = False, space: str | None = None, space_requirement: str | None = None) -> Staged:
    """Write exactly the folder that ``push_output_dir`` would upload to ``target`` (which must be new or empty);
    with ``space``, the Space's files too (to ``space_dry_run_dir(target)``)."""
    out, target = Path(output_dir).resolve(), Path(target).resolve()
    _check_new_dir(target, out)
    if space:
        check_space_id(space)
        _check_new_dir(space_dry_run_dir(target), out, "--dry_run (the Space's folder)")
    run = load_run(out, base_model)
    repo_id = repo_id or f"your-username/{out.name}"
    token = token if token is not None else _quiet_token()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a failure never leaves a half-written folder at ``target``.
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        staged = stage(run, partial, repo_id, revision=revision, token=token, trained_only=trained_only)
        if target.exists():
            target.rmdir()
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    staged.folder = target
    if space:
        from .space import write_space

        write_space(space_dry_run_dir(target), space, repo_id, revision=revision, requirement=space_requirement)
    return staged


# ----------------------------------------------------------------------------------------------------------
# Pushing
# ----------------------------------------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    """Whole-push retries on transient failures: waits base_delay, 2x, 4x ... capped at max_delay seconds."""

    attempts: int = 4
    base_delay: float = 2.0
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


@dataclass
class PushResult:
    repo_id: str
    url: str
    commit_url: str | None
    staged: Staged
    space_url: str | None = None


def _quiet_token() -> str | None:
    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # noqa: BLE001 - an unusable login cache means "no token", reported by the caller
        return None


def resolve_token(explicit: str | None = None) -> str:
    """``--hub_token``, else ``HF_TOKEN``, else the login cache; no token is a PushError before any network call."""
    token = (explicit or "").strip() or _quiet_token()
    if not token:
        raise PushError(NO_TOKEN_MESSAGE)
    return token


def check_space_id(space_id: str) -> None:
    if not re.fullmatch(r"[\w-][\w.-]*/[\w-][\w.-]*", space_id or "") or ".." in space_id or len(space_id) > 96:
        raise PushError(f"--space {space_id}: not a Space id; give USER/NAME (letters, digits, -, _, .).")


def check_repo_id(repo_id: str) -> None:
    if not repo_id:
        raise PushError("--repo_id is required: give USER/NAME (or ORG/NAME) of the model repository.")
    kind = re.match(r"^(?:https?://[^/]+/)?(datasets|spaces)/", repo_id)
    if kind:
        raise PushError(f"--repo_id {repo_id}: names a {kind.group(1)[:-1]} repository; chatfreeze pushes models, "
                        "give USER/NAME of a model repository.")
    if not re.fullmatch(r"(?:[\w-][\w.-]*/)?[\w-][\w.-]*", repo_id) or ".." in repo_id or len(repo_id) > 96:
        raise PushError(f"--repo_id {repo_id}: not a repository id; give USER/NAME (letters, digits, -, _, .).")


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@contextmanager
def _current_env_flags() -> Iterator[None]:
    """huggingface_hub reads HF_HUB_DISABLE_XET at import; honour the value the environment has now."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_DISABLE_XET
    if env_flag("HF_HUB_DISABLE_XET"):
        constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = saved


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _status_of(err: BaseException) -> int | None:
    for e in _chain(err):
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _is_transport_error(err: BaseException) -> bool:
    for e in _chain(err):
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        # httpx(2)'s connection/timeout/protocol errors all derive from TransportError.
        if any(cls.__name__ in ("TransportError", "TimeoutException") for cls in type(e).__mro__):
            return True
    return False


def classify(err: BaseException, repo_id: str, endpoint: str, revision: str | None,
             flag: str = "--repo_id", kind: str = "model") -> tuple[bool, str] | None:
    """``(transient, one-line message)`` for a Hub failure, or None for an error that is a bug (re-raised).
    ``flag``/``kind`` name the option and the kind of repository the failing request was about."""
    from huggingface_hub.errors import OfflineModeIsEnabled, RevisionNotFoundError

    if any(isinstance(e, OfflineModeIsEnabled) for e in _chain(err)):
        return False, "HF_HUB_OFFLINE is set: unset it to push to the Hub (or use --dry_run DIR)."
    status = _status_of(err)
    if status == 401:
        return False, ("the Hub rejected the token (401 Unauthorized): set a valid HF_TOKEN, run `hf auth login`, "
                       "or pass --hub_token.")
    if status == 403:
        return False, (f"the token may not write to {repo_id} (403 Forbidden): use a token with write access to "
                       "that user or organisation.")
    if status == 404:
        if revision and any(isinstance(e, RevisionNotFoundError) for e in _chain(err)):
            return False, f"--revision {revision}: not found in {repo_id} (404)."
        return False, (f"{repo_id} not found (404): check {flag}, and that the token's user or organisation "
                       "may create it.")
    if status == 409:
        return False, conflict_message(repo_id, flag, kind)
    if status is not None and (status >= 500 or status in (408, 429)):
        return True, f"the Hub answered HTTP {status}"
    if status is None and _is_transport_error(err):
        return True, f"cannot reach the Hub at {endpoint} ({first_line(next(iter(_chain(err))), with_type=True)})"
    if status is not None:
        return False, f"the Hub refused the upload (HTTP {status}): {first_line(err, with_type=True)}"
    if isinstance(err, ValueError) and "metadata" in str(err):
        return False, "the Hub rejected the model card: " + " ".join(line.strip() for line in str(err).splitlines())
    return None


def describer(repo_id: str, endpoint: str, revision: str | None, token: str, **kwargs):
    """``classify`` for one repository, with the token redacted from every message."""
    def describe(err: BaseException) -> tuple[bool, str] | None:
        verdict = classify(err, repo_id, endpoint, revision, **kwargs)
        return None if verdict is None else (verdict[0], verdict[1].replace(token, "<redacted>"))
    return describe


def conflict_message(repo_id: str, flag: str = "--repo_id", kind: str = "model") -> str:
    return (f"{flag} {repo_id}: the name is taken by a repository that is not a {kind} you can write to "
            f"(another kind of repository, or a private one of someone else); choose another {flag}.")


def with_retries(action: Callable[[], Any], policy: RetryPolicy, describe: Callable[[BaseException],
                 tuple[bool, str] | None], sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run ``action``; retry it on transient failures with exponential backoff; PushError (one line) otherwise."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except PushError:
            raise
        except Exception as err:  # noqa: BLE001 - classified below; unknown errors are re-raised untouched
            verdict = describe(err)
            if verdict is None:
                raise
            transient, message = verdict
            if not transient:
                raise PushError(message) from None
            if attempt == policy.attempts:
                raise PushError(
                    f"{message}; gave up after {attempt} attempts. Nothing local was changed: re-run the same "
                    "command to finish the upload."
                ) from None
            wait = policy.delay(attempt)
            logger.warning("%s; retrying in %.1f s (attempt %d of %d)", message, wait, attempt + 1, policy.attempts)
            sleep(wait)
    raise AssertionError("unreachable")


def _ensure_repo(api, repo_id: str, private: bool, repo_type: str = "model", flag: str = "--repo_id") -> None:
    """Create the model (or Gradio Space) repo unless it exists; a name held by another kind of repo is a clear
    error."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        api.repo_info(repo_id, repo_type=repo_type)
        if private:
            logger.info("%s already exists; --private does not change the visibility of an existing repo.", repo_id)
        return
    except RepositoryNotFoundError:
        pass
    try:
        extra = {"space_sdk": "gradio"} if repo_type == "space" else {}
        api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=False, **extra)
        logger.info("Created %s %s repository %s", "private" if private else "public", repo_type, repo_id)
    except HfHubHTTPError as err:
        if _status_of(err) == 409:
            raise PushError(conflict_message(repo_id, flag, repo_type)) from None
        raise


def _full_repo_id(api, repo_id: str, policy: RetryPolicy, describe) -> str:
    """``NAME`` -> ``USER/NAME`` (the token's user), so the card and the links name the real repository."""
    if "/" in repo_id:
        return repo_id
    whoami = with_retries(lambda: api.whoami(), policy, describe)
    return f"{whoami['name']}/{repo_id}"


def push_output_dir(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    base_model: str | None = None,
    retry: RetryPolicy | None = None,
    endpoint: str | None = None,
    trained_only: bool = False,
    space: str | None = None,
    space_requirement: str | None = None,
) -> PushResult:
    """Stage ``output_dir`` with its model card and upload it to the model repo ``repo_id`` (created if needed);
    with ``space``, then write and upload a Gradio Space (``publish.space``) that chats with the pushed model.

    Raises ``PushError`` (one line) on any failure, after retrying transient ones; OUTPUT_DIR is never modified
    and a re-run completes an interrupted upload.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    if space:
        check_space_id(space)
    token = resolve_token(token)
    if env_flag("HF_HUB_OFFLINE"):
        raise PushError("HF_HUB_OFFLINE is set: unset it to push to the Hub (or use --dry_run DIR).")
    run = load_run(output_dir, base_model)
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    policy = retry or RetryPolicy()
    revision = revision or None
    api = HfApi(endpoint=endpoint, token=token)

    describe = describer(repo_id, endpoint, revision, token)

    with _current_env_flags(), tempfile.TemporaryDirectory(prefix="chatfreeze-push-") as tmp:
        repo_id = _full_repo_id(api, repo_id, policy, describe)
        describe = describer(repo_id, endpoint, revision, token)  # messages name USER/NAME
        staged = stage(run, Path(tmp), repo_id, revision=revision, token=token, link=True,
                       trained_only=trained_only)
        logger.info("Uploading %d files (%s) from %s to %s", len(staged.files), format_size(staged.total_bytes),
                    run.output_dir, repo_id)

        def attempt():
            _ensure_repo(api, repo_id, private)
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
            return api.upload_folder(
                repo_id=repo_id, folder_path=tmp, repo_type="model", revision=revision,
                commit_message=commit_message or f"Upload fine-tuned model from {run.output_dir.name}",
            )

        commit = with_retries(attempt, policy, describe)
    url = f"{endpoint}/{repo_id}" + (f"/tree/{revision}" if revision and revision != "main" else "")
    space_url = push_space(api, space, repo_id, revision, private, space_requirement, policy, endpoint,
                           token) if space else None
    return PushResult(repo_id, url, getattr(commit, "commit_url", None), staged, space_url)


def push_space(api, space: str, model_repo_id: str, revision: str | None, private: bool,
               requirement: str | None, policy: RetryPolicy, endpoint: str, token: str) -> str:
    """Create (if needed) the Gradio Space ``space`` and upload its files, which chat with ``model_repo_id``."""
    from .space import write_space

    describe = describer(space, endpoint, None, token, flag="--space", kind="space")

    with tempfile.TemporaryDirectory(prefix="chatfreeze-space-") as tmp:
        space = _full_repo_id(api, space, policy, describe)
        describe = describer(space, endpoint, None, token, flag="--space", kind="space")
        write_space(tmp, space, model_repo_id, revision=revision, requirement=requirement)
        refuse_token_in(Path(tmp), token)

        def attempt():
            _ensure_repo(api, space, private, repo_type="space", flag="--space")
            return api.upload_folder(repo_id=space, folder_path=tmp, repo_type="space",
                                     commit_message=f"chatfreeze: chat with {model_repo_id}")

        with_retries(attempt, policy, describe)
    logger.info("Space %s chats with %s", space, model_repo_id)
    return f"{endpoint}/spaces/{space}"


# ----------------------------------------------------------------------------------------------------------
# Training integration (``--push_to_hub``)
# ----------------------------------------------------------------------------------------------------------


@dataclass
class TrainingPush:
    """The Hub options of a training run, taken out of TrainingArguments so the Trainer never pushes (nor
    pickles the token into ``training_args.bin``); chatfreeze pushes once, card included, after the final save."""

    repo_id: str
    private: bool
    revision: str | None
    token: str = field(repr=False)  # never in a repr, a log line or a traceback's locals printout

    def push(self, output_dir: str) -> PushResult:
        try:
            result = push_output_dir(output_dir, self.repo_id, private=self.private, revision=self.revision,
                                     token=self.token)
        except (PushError, RunDirError):
            logger.error("Training finished and %s is complete, but the push failed. Retry with "
                         "`python -m chatfreeze.push %s --repo_id %s`.", output_dir, output_dir, self.repo_id)
            raise
        logger.info("Pushed %s to %s", output_dir, result.url)
        return result


def take_training_push(training_args) -> TrainingPush | None:
    """Capture and clear ``push_to_hub``/``hub_*`` on ``training_args``; validate them before training starts."""
    token = getattr(training_args, "hub_token", None)
    training_args.hub_token = None
    if not getattr(training_args, "push_to_hub", False):
        return None
    training_args.push_to_hub = False
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).resolve().name
    check_repo_id(repo_id)
    return TrainingPush(repo_id=repo_id, private=bool(training_args.hub_private_repo),
                        revision=training_args.hub_revision, token=resolve_token(token))
