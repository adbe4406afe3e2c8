"""Publishing a prepared folder as a Hub repository, or (offline) as the exact files a repository would hold."""

import shutil
from pathlib import Path


def publish_folder(
    folder: str | Path,
    repo_id: str,
    repo_type: str,
    *,
    to_folder: str | Path | None = None,
    private: bool = False,
    token: str | None = None,
) -> str:
    """Uploads `folder` (hidden files left out) to the `repo_type` repo `repo_id`, created if missing; with
    `to_folder`, copies the same files there instead. Returns where they went."""
    if to_folder is not None:
        shutil.copytree(folder, to_folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        return str(to_folder)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type=repo_type,
        folder_path=str(folder),
        commit_message=f"Upload OneDiff {repo_type}",
        ignore_patterns=[".*"],
    )
    return str(getattr(commit, "commit_url", commit))
