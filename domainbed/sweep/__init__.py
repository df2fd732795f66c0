"""Sweeps: the job list (``jobs``), what to do with it (``actions``), the command line
options (``options``) and the extension points (``hooks``)."""

from domainbed.sweep.actions import delete_incomplete, failures, group_by_state, launch, status
from domainbed.sweep.jobs import (Job, all_test_env_combinations, job_hash, make_args_list,
                                  make_jobs)

__all__ = ["Job", "all_test_env_combinations", "delete_incomplete", "failures",
           "group_by_state", "job_hash", "launch", "make_args_list", "make_jobs", "status"]
