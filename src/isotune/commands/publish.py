"""`isotune publish RUN_DIR --repo-id OWNER/NAME`: upload a run's model with a model card to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="upload a run's model, model card and plots to the Hugging Face Hub",
        description="Upload the sentence-transformers model of RUN_DIR, a model card (README.md with validated "
        "metadata, before/after results, recipe, command and environment), its plots and the run's recipe, "
        "metrics and run.json to a Hub model repository, in one commit. The token comes from HF_TOKEN or "
        "`hf auth login`; HF_ENDPOINT selects another Hub. The run folder is only read.",
    )
    parser.add_argument("run_dir", type=Path, help="run folder written by `isotune train`")
    parser.add_argument("--repo-id", required=True, metavar="OWNER/NAME", help="Hub model repository to publish to")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument(
        "--revision",
        metavar="BRANCH",
        help="commit to this branch instead of main, creating it from main when missing",
    )
    parser.add_argument(
        "--dry-run",
        type=Path,
        metavar="OUT_DIR",
        help="write exactly the files that would be uploaded to OUT_DIR and upload nothing (no token needed)",
    )
    parser.add_argument(
        "--license",
        help="Hub license id for the card, e.g. apache-2.0 (default: the base model's license, read from its "
        "card offline; without one, this option is required)",
    )
    parser.add_argument("--license-name", help="name of the license when --license is 'other'")
    parser.add_argument("--license-link", help="URL of the license text when --license is 'other'")
    parser.add_argument(
        "--force",
        action="store_true",
        help="publish into a repository branch that contains files isotune did not publish (they are kept; files "
        "at the same paths are replaced)",
    )
    parser.set_defaults(run=run)


def publish_command(args: argparse.Namespace) -> str:
    """Return the upload command equivalent to `args`, without --dry-run, as the card shows it."""
    parts = ["isotune", "publish", str(args.run_dir), "--repo-id", args.repo_id]
    if args.private:
        parts.append("--private")
    for option in ("revision", "license", "license_name", "license_link"):
        value = getattr(args, option)
        if value is not None:
            parts += [f"--{option.replace('_', '-')}", value]
    if args.force:
        parts.append("--force")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from isotune.publish.workflow import PublishOptions, publish_run

    options = PublishOptions(
        repo_id=args.repo_id,
        private=args.private,
        revision=args.revision,
        dry_run=args.dry_run,
        license=args.license,
        license_name=args.license_name,
        license_link=args.license_link,
        force=args.force,
        command=publish_command(args),
    )
    result = publish_run(args.run_dir, options)
    if args.dry_run is not None:
        print(f"Dry run: {len(result.paths)} files that would be uploaded to {args.repo_id} are in {result.location}:")
    else:
        print(f"Published {len(result.paths)} files to {args.repo_id}: {result.location}")
    for path in result.paths:
        print(f"  {path}")
    return 0
