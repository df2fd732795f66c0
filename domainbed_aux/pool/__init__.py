"""The auxiliary pool: featurizers fine-tuned on auxiliary datasets, ready to initialise runs.

A pool is a folder with a manifest ``pool.json`` and featurizer-only weight files under
``members/``. Member 0 is the pretrained featurizer (a name, plus a file and its hash when
one is given); members 1.. are the LAST-step featurizers of auxiliary runs (trained with
``--test_envs -1``), in a fixed order: by dataset name, then by ``(hparams_seed,
trial_seed)``, then by file name. Manifest format (version 1)::

    {"format_version": 1, "excluded_dataset": "PACS" | null,
     "members": [{"kind": "pretrained", "name", "file", "sha256", "arch", "n_params"},
                 {"kind": "aux" | "external", "dataset", "run_dir", "hparams",
                  "hparams_seed", "trial_seed", "file", "sha256", "arch", "n_params",
                  "name"}, ...]}

``file`` and ``run_dir`` are relative to the pool folder. ``arch`` fingerprints the
featurizer's key names and shapes (members must share it to be averaged or fused);
``n_params`` counts the scalars of its floating tensors. A dataset's identity is the
``dataset`` argument its runs recorded, never the name of the folder holding them.

Modules (import them directly; this package imports nothing, so that torch loads only when
a pool is used): ``members`` (PoolMember, AuxPool, PoolError, the fixed order, hashes,
featurizer_state_dict), ``runs`` (finding and reading auxiliary runs), ``load``
(load_pool, the checks), ``build`` (build_pool, plan_pool, add_external_member).
"""
