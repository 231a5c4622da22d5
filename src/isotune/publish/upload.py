"""Commit a staged folder to a Hugging Face Hub model repository in one commit.

A commit made with `HfApi.create_commit` is atomic on the Hub: the branch moves to the new commit with all
of its files, or stays where it was. Large files are sent to the Hub's storage (LFS or Xet) before the
commit. If the commit then fails, they belong to no revision. With LFS, a retry skips the ones the Hub
already has (tested); Xet deduplicates content too, but that is not tested here.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from isotune.errors import PublishError
from isotune.hub import hub_offline, hub_unreachable_reason
from isotune.publish.files import MARKER_PATH

logger = logging.getLogger(__name__)

DEFAULT_BRANCH = "main"
# Files that the Hub itself writes into a new repository; they do not count as someone else's content.
HUB_OWN_FILES = frozenset({".gitattributes"})


@dataclass(frozen=True)
class HubTarget:
    """The publish target: the repository, the branch (None for main) and how to treat existing content."""

    repo_id: str
    revision: str | None = None
    private: bool = False
    force: bool = False

    @property
    def branch(self) -> str:
        return self.revision or DEFAULT_BRANCH


def resolve_endpoint() -> str:
    """Return the Hub URL to publish to: HF_ENDPOINT as set now, else huggingface_hub's default."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def require_token() -> str:
    """Return the user's Hugging Face token (HF_TOKEN, else the one saved by `hf auth login`).

    Raises:
        PublishError: when there is none; no request has been sent at that point.
    """
    token = get_token()
    if not token:
        raise PublishError(
            "No Hugging Face token found, so nothing was uploaded. Set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens) or run `hf auth login`, then run the command again. "
            "--dry-run needs no token."
        )
    return token


def check_reachable(endpoint: str) -> None:
    """Fail within seconds when the Hub at `endpoint` cannot be used, instead of after minutes of retries.

    Raises:
        PublishError: when HF_HUB_OFFLINE is set, or when the default endpoint does not accept a connection.
    """
    if endpoint == constants.ENDPOINT:
        reason = hub_unreachable_reason()
    else:
        # A custom endpoint (HF_ENDPOINT set after huggingface_hub was imported) is not probed here; a
        # closed port fails at the first request, which is not retried.
        reason = "HF_HUB_OFFLINE is set" if hub_offline() else None
    if reason is not None:
        raise PublishError(
            f"Cannot reach the Hugging Face Hub: {reason}. Nothing was uploaded. Unset HF_HUB_OFFLINE and check "
            "the network, or use --dry-run OUT_DIR to write the files locally."
        )


def commit_folder(
    staging: Path,
    paths: list[str],
    target: HubTarget,
    *,
    token: str,
    endpoint: str,
    commit_message: str,
    commit_description: str,
) -> str:
    """Commit the files `paths` of `staging` to `target` in a single commit and return the commit URL.

    The repository is created when missing. A target branch that is empty, new, or contains an earlier
    isotune publish ends up with exactly `paths` (and .gitattributes). Other content is an error unless
    `target.force`, which adds the files on top and keeps the rest.

    Raises:
        PublishError: naming the repository, what failed and what was changed on the Hub (never the token).
    """
    api = HfApi(endpoint=endpoint, token=token)
    changes: list[str] = []
    try:
        if _ensure_repo(api, target):
            changes.append("the repository was created")
        fresh_branch, branch_created = _ensure_branch(api, target)
        if branch_created:
            changes.append(f"branch {target.branch} was created from {DEFAULT_BRANCH}")
        head = api.repo_info(target.repo_id, revision=target.branch).sha
        remote = set(api.list_repo_files(target.repo_id, revision=target.branch)) - HUB_OWN_FILES
        mirror = fresh_branch or not remote or MARKER_PATH in remote
        if not mirror and not target.force:
            raise PublishError(_foreign_content_message(target, remote))
        if not mirror:
            logger.warning(
                "--force: keeping %d file(s) in %s that isotune did not publish.",
                len(remote - set(paths)),
                target.repo_id,
            )
        operations: list[Any] = [CommitOperationAdd(path, str(staging / path)) for path in paths]
        stale = sorted(remote - set(paths)) if mirror else []
        operations += [CommitOperationDelete(path) for path in stale]
        logger.info(
            "Committing %d file(s) to %s (branch %s)%s.",
            len(paths),
            target.repo_id,
            target.branch,
            f", deleting {len(stale)} left from an earlier publish" if stale else "",
        )
        commit = api.create_commit(
            target.repo_id,
            operations,
            commit_message=commit_message,
            commit_description=commit_description,
            revision=target.branch,
            parent_commit=head,
        )
    except PublishError:
        raise
    except _hub_errors() as error:
        raise PublishError(_failure_message(error, target, token, changes)) from None
    return commit.commit_url


def _ensure_repo(api: HfApi, target: HubTarget) -> bool:
    """Create the repository when missing; return True when it was created."""
    try:
        info = api.repo_info(target.repo_id)
    except RepositoryNotFoundError:
        api.create_repo(target.repo_id, private=target.private)
        logger.info("Created %s repository %s.", "private" if target.private else "public", target.repo_id)
        return True
    if target.private and info.private is False:
        raise PublishError(
            f"Repository {target.repo_id} exists and is public, but --private was passed; nothing was uploaded. "
            "Make it private in its settings on the Hub, or drop --private."
        )
    return False


def _ensure_branch(api: HfApi, target: HubTarget) -> tuple[bool, bool]:
    """Create `target.branch` from main when missing.

    Returns (fresh, created): fresh when the branch has no content of its own, created when it is new.
    """
    if target.branch == DEFAULT_BRANCH:
        return False, False
    main_head = api.repo_info(target.repo_id, revision=DEFAULT_BRANCH).sha
    try:
        branch_head = api.repo_info(target.repo_id, revision=target.branch).sha
    except RevisionNotFoundError:
        api.create_branch(target.repo_id, branch=target.branch)
        logger.info("Created branch %s in %s.", target.branch, target.repo_id)
        return True, True
    # A branch still at main's commit (for example from a publish that stopped before its commit) has no
    # content of its own to protect.
    return branch_head == main_head, False


def _foreign_content_message(target: HubTarget, remote: set[str]) -> str:
    shown = ", ".join(sorted(remote)[:5]) + (", ..." if len(remote) > 5 else "")
    return (
        f"Repository {target.repo_id} (branch {target.branch}) already holds {len(remote)} file(s) that isotune "
        f"did not publish ({shown}); nothing was uploaded. Publish to a new branch with --revision NAME, choose "
        "another --repo-id, or pass --force to add this model's files on top (files at the same paths are "
        "replaced, the others are kept)."
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    """Exception types of a failed Hub request, for the HTTP client that this huggingface_hub uses.

    HfHubHTTPError is an OSError; the Hub's README check raises ValueError and a failed LFS upload
    RuntimeError inside `create_commit`.
    """
    errors: list[type[BaseException]] = [HfHubHTTPError, OSError, ValueError, RuntimeError]
    for module_name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module_name).HTTPError)
        except ImportError:
            continue
    return tuple(errors)


def _failure_message(error: BaseException, target: HubTarget, token: str, changes: list[str]) -> str:
    # huggingface_hub wraps a failed LFS upload in a RuntimeError whose own message names only the file.
    causes = [error] if error.__cause__ is None else [error, error.__cause__]
    detail = " ".join(" ".join(str(item).split()).rstrip(".") or type(item).__name__ for item in causes)
    detail = detail.replace(token, "<token>")
    status = getattr(getattr(error, "response", None), "status_code", None)
    hint = "Check the network and run the same command again."
    if status in (401, 403):
        hint = (
            f"The token was rejected or cannot write to {target.repo_id.split('/')[0]}: set HF_TOKEN to a token "
            "with write access or run `hf auth login`."
        )
    changed = f" ({' and '.join(changes)})" if changes else ""
    return (
        f"Publishing to {target.repo_id} (branch {target.branch}) failed: {detail}. No commit was made, so the "
        f"branch contains none of this run's files{changed}. {hint}"
    )
