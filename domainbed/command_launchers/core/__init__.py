"""The launchers' core: the one interface and its registry (``base``), the process toolkit
(``process``: start, wait, log, progress, thread variables), the machine's resources
(``resources``), the slot pool that runs tasks concurrently (``parallel``), typed calls run
in this process (``in_process``) or in persistent workers (``workers``), and the failure
records (``failures``). The backends (``local``, ``multi_gpu``, ``slurm``, ``dummy``, or an
extension's) import only this package; nothing here imports a backend.
"""
