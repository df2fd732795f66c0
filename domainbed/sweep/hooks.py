"""Extension points of the sweep: extensions (e.g. ``domainbed_aux``) register here.

- ``SWEEP_ARGUMENTS``: a dataclass whose fields, declared with
  ``domainbed.lib.options.option``, are options of ``sweep`` (``--<field>``, with their help):
  the parser's flags are generated from them and their defaults are known without a parser
  (``options.extension_defaults``). An optional class attribute ``GROUP`` titles their
  section of ``--help``. Register it with ``@register_sweep_options("name")``.
- ``JOB_TRANSFORMERS``: ``fn(train_args: dict, spec: SweepSpec) -> dict`` edits each job's
  training arguments before the job is hashed (e.g. adds ``init_from``); every key of the
  returned dict becomes a ``--key value`` flag of the training command.
- ``BEFORE_LAUNCH``: ``fn(jobs, sweep_args: SweepSpec)`` runs once, after confirmation and
  before the launcher starts (e.g. trains a shared linear probe that the jobs need).
- ``PLAN_READERS``: ``fn(spec: SweepSpec) -> Optional[Plan]`` turns the sweep's options
  into a multi-stage plan (``domainbed.sweep.plan``; e.g. ``launch --recipe FILE``), which
  the core runs; the first that returns a plan wins, None lets the ordinary sweep run.

Functions run in registration order. The core never imports an extension: extensions are
found by ``domainbed.plugins.load_plugins``.
"""

from domainbed.registry import Registry

SWEEP_ARGUMENTS: Registry = Registry("sweep options")
JOB_TRANSFORMERS: Registry = Registry("job transformer")
BEFORE_LAUNCH: Registry = Registry("before-launch hook")
PLAN_READERS: Registry = Registry("plan reader")

register_sweep_options = SWEEP_ARGUMENTS.register
register_sweep_arguments = register_sweep_options  # the former name
register_job_transformer = JOB_TRANSFORMERS.register
register_before_launch = BEFORE_LAUNCH.register
register_plan_reader = PLAN_READERS.register
