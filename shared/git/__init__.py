"""Git through the `git` command line, run as asyncio subprocesses, over a cache of bare clones.

`GitCache(root)` keeps one bare clone per remote under `root`; a
`GitRepository` from `cache.repository(remote)` fetches into it and reads
from it: `resolve`, `log`, `changed_paths`, `read_file`, `list_tree`,
`checkout`.

Errors: every failure is a `GitError` (an `Unavailable`: the same call may
work later) with a `kind` — `unreachable`, `auth`, `not_found` or `other` —
read from git's stderr, whose last lines it carries with any credentials
removed.

The modules, one job each:

- `command`: running `git` (`run_git`) in an environment that cannot prompt (`git_env`);
- `errors`: `GitError` and the classification of git's stderr;
- `arguments`: what may go onto git's command line (branch names, revisions, paths);
- `repository`: one remote's bare clone (`GitRepository`, `Commit`), checkouts;
- `commits`: writing through a bare clone: a commit of changed files on a parent, a push
  that is never forced (the event watcher's write-backs);
- `filelock`: the `flock` that queues fetches of processes sharing a cache;
- `cache`: `GitCache`, the clones under one root.
"""

from shared.git.arguments import branch_name_problem
from shared.git.cache import GitCache
from shared.git.command import git_env, redact, run_git
from shared.git.errors import GitError, GitErrorKind, classify_stderr
from shared.git.repository import Commit, GitRepository

__all__ = [
    "Commit",
    "GitCache",
    "GitError",
    "GitErrorKind",
    "GitRepository",
    "branch_name_problem",
    "classify_stderr",
    "git_env",
    "redact",
    "run_git",
]
