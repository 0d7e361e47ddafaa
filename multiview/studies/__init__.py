"""The paper's studies as resumable plans of subprocess steps, and the tables and plots they end in.

One concept per module; the `eval/*.py` scripts are thin wrappers around them:

* `config_files` — read a trainer's configargparse file, apply `key=value` overrides, write the derived file.
* `cells`        — steps (one child command + a "done" file) grouped into cells, and the resumable runner.
* `steps`        — the standard steps: write synthetic data, train a run, evaluate a run.
* `dtu_sweep`    — the DTU 5/15/25 % sweep (scratch vs pretrained JDACS): options, plan, tabulation.
* `pretrain_study` — where to pretrain (Tables 4/6) and more data, more power (Fig. 5): options, plan.
* `subsets`      — seeded nested MVImgNet instance subsets, split files and symlink folders; CO3D set size.
* `results`      — a run's evaluation results (per-image files, summary.json, the run's config) as records.
* `tables`       — markdown/CSV/JSON renderings in the paper's table layouts.
* `plots`        — the Fig. 5 plot (matplotlib Agg, PNG + SVG).
* `provenance`   — command, commit and device of the process that made an output.
* `mvs_evaluation` — `eval/eval_mvs.py`: evaluate MVS runs (or reuse their results), Table 5 of them.
* `reports`      — `eval/make_tables.py`: find results under folders and write every table and plot.

Nothing here imports `ibrnet` or `jdacs`: trainers and evaluators always run as child processes.
"""
