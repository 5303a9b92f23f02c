# boma_changes: an Ansible callback the integration harness enables for its own runs. It
# writes every task that reported `changed` (with its role and file:line) to the JSON-lines
# file named by BOMA_IT_CHANGES_FILE, so the harness's idempotence check (a second apply of
# every step must change nothing) can name each culprit. Without that variable it does nothing.
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: boma_changes
    type: aggregate
    short_description: record changed tasks for boma's idempotence check
    description:
      - Appends one JSON line per changed task result to the file in BOMA_IT_CHANGES_FILE.
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

    def _record(self, result, status):
        if not self._path:
            return
        task = result._task
        role = task._role.get_name() if task._role else None
        entry = {
            "host": result._host.get_name(),
            "task": task.get_name(),
            "role": role,
            "path": task.get_path(),
            "status": status,
        }
        with open(self._path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    def v2_runner_on_ok(self, result):
        if result._result.get("changed", False):
            self._record(result, "changed")

    def v2_runner_item_on_ok(self, result):
        # Loop items report per item; the task's aggregate result is reported by on_ok.
        pass
