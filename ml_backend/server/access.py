"""Label Studio access per project: what each project's /setup named, kept apart.

Label Studio calls /setup per project with its address and the project owner's token, and
names the project in every /predict ("<id>.<created timestamp>"). One global that the last
/setup overwrites would send one project's token with another's image fetches; here each
project id keeps its own policy, and a project that never called /setup gets the policy from
the settings (LABELER_STUDIO_URL, no token).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ml_backend.server.fetch import FetchPolicy

ProjectKey = int | None  # None: a caller that names no project (or an unreadable one)
MAX_PROJECTS = 1000  # least recently set up dropped beyond this (the caller chooses the ids)


def project_key(project: str | None) -> ProjectKey:
    """The project id of Label Studio's "<id>.<timestamp>" (or a bare id); None otherwise."""
    head = (project or "").split(".", 1)[0].strip()
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 10 else None


@dataclass
class StudioAccess:
    base: FetchPolicy
    limit: int = MAX_PROJECTS
    _by_project: OrderedDict[ProjectKey, FetchPolicy] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def setup(self, project: ProjectKey, hostname: str | None, token: str | None) -> FetchPolicy:
        """Take one project's address and token (FetchPolicy.with_setup judges the address)."""
        policy = self.base.with_setup(hostname, token)
        with self._lock:
            self._by_project[project] = policy
            self._by_project.move_to_end(project)
            while len(self._by_project) > self.limit:
                self._by_project.popitem(last=False)
        return policy

    def policy(self, project: ProjectKey) -> FetchPolicy:
        with self._lock:
            return self._by_project.get(project, self.base)
