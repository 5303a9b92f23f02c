# boma_changes: an Ansible callback the integration harness enables for its own runs. It
# writes every task that reported `changed` (with its role and file:line) to the JSON-lines
# file named by BOMA_IT_CHANGES_FILE, so the harness's idempotence check (a second apply of
# every step must change nothing) can name each culprit. Without that variable it does nothing.
#
# It also proves it ran: a `start` line when the playbook starts, and an `end` line when it
# ends with, per host, how many task results it saw and how many of them changed. A file
# without both (the callback never loaded, Ansible swallowed an error of ours, the run was
# killed) proves nothing, and the harness fails the check rather than read "nothing changed";
# a `changed` count that does not match the lines written shows a line that was lost.
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: boma_changes
    type: aggregate
    short_description: record changed tasks for boma's idempotence check
    description:
      - Appends one JSON line per changed task result to the file in BOMA_IT_CHANGES_FILE,
        between a start line and an end line that counts the results seen per host.
    requirements:
      - enabled by the harness through ANSIBLE_CALLBACKS_ENABLED
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "boma_changes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("BOMA_IT_CHANGES_FILE")
        # host -> {"results": n, "changed": n} for the playbook running now.
        self._seen = {}

    def _write(self, entry):
        if not self._path:
            return
        with open(self._path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    def _count(self, result, changed=False):
        counts = self._seen.setdefault(result._host.get_name(), {"results": 0, "changed": 0})
        counts["results"] += 1
        if changed:
            counts["changed"] += 1

    def v2_playbook_on_start(self, playbook):
        self._seen = {}
        self._write({"event": "start", "playbook": playbook._file_name})

    def v2_playbook_on_stats(self, stats):
        self._write({"event": "end", "hosts": self._seen})

    def v2_runner_on_ok(self, result):
        changed = bool(result._result.get("changed", False))
        # Counted before it is written: a line lost to an error (which Ansible only warns
        # about) then shows as a count the lines do not match.
        self._count(result, changed)
        if changed:
            task = result._task
            role = task._role.get_name() if task._role else None
            self._write(
                {
                    "host": result._host.get_name(),
                    "task": task.get_name(),
                    "role": role,
                    "path": task.get_path(),
                    "status": "changed",
                }
            )

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result)

    def v2_runner_on_skipped(self, result):
        self._count(result)

    def v2_runner_on_unreachable(self, result):
        self._count(result)

    def v2_runner_item_on_ok(self, result):
        # Loop items report per item; the task's aggregate result is reported by on_ok.
        pass
