"""``README.md`` of a model folder: the model card, with the Hugging Face hub's metadata
block, made from ``config.json`` and ``merge.json`` alone (the same inputs give the same
text)."""

from typing import Any, Dict, List, Mapping

CITATION = """@inproceedings{rame2023ratatouille,
  title     = {Model Ratatouille: Recycling Diverse Models for Out-of-Distribution
               Generalization},
  author    = {Ram{\\'e}, Alexandre and Ahuja, Kartik and Zhang, Jianyu and Cord, Matthieu
               and Bottou, L{\\'e}on and Lopez-Paz, David},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2023}
}
@inproceedings{gulrajani2021search,
  title     = {In Search of Lost Domain Generalization},
  author    = {Gulrajani, Ishaan and Lopez-Paz, David},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021}
}"""

RULE_TEXT = {
    "uniform": "uniform weight average (soup) of every run",
    "greedy": "greedy weight average: runs added by ID-validation accuracy, each kept "
              "unless the average's ID-validation accuracy drops (the paper's rule)",
    "greedy_strict": "greedy weight average: runs added by ID-validation accuracy, each kept "
                     "only if the average's ID-validation accuracy rises (model soups' rule)",
    "dagger": "uniform weight average of the runs of every trial seed",
    "single": "one fine-tuned run (no averaging)",
}


def _yaml_list(values: List[str]) -> str:
    return "[" + ", ".join(values) + "]"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f}%"


def _front_matter(config: Mapping[str, Any]) -> List[str]:
    tags = ["image-classification", "domain-generalization", "domainbed", "weight-averaging",
            "model-ratatouille"]
    backbone = config["network"]["backbone"]
    if backbone.startswith("timm:"):
        tags.append("timm")
    return ["---", "library_name: domainbed-ratatouille", "pipeline_tag: image-classification",
            f"tags: {_yaml_list(tags)}", "metrics: [accuracy]", "---", ""]


def _scores(merge: Mapping[str, Any]) -> List[str]:
    scores: Dict[str, Any] = dict(merge.get("scores") or {})
    if not scores:
        return ["No split was scored when this folder was written."]
    lines = ["| split | accuracy | what it is |", "|---|---|---|"]
    for key in sorted(scores):
        entry = scores[key]
        lines.append(f"| {entry.get('split', key)} | {_pct(entry.get('accuracy'))} | "
                     f"{entry.get('description', '')} |")
    return lines


def _members(merge: Mapping[str, Any]) -> List[str]:
    runs = list(merge.get("runs") or [])
    if not runs:
        return []
    lines = ["| run | algorithm | hparams seed | trial seed | ID-val accuracy | averaged |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(f"| {run.get('run_id')} | {run.get('algorithm')} | "
                     f"{run.get('hparams_seed')} | {run.get('trial_seed')} | "
                     f"{_pct(run.get('id_val_acc'))} | {'yes' if run.get('kept') else 'no'} |")
    return lines


def _provenance(provenance: Mapping[str, Any]) -> List[str]:
    if not provenance:
        return ["Not recorded."]
    git = provenance.get("git") or {}
    commit = git.get("commit", "none") + (" (uncommitted changes)" if git.get("dirty") else "")
    return [f"- package: {provenance.get('package')} {provenance.get('package_version')}, "
            f"git commit {commit}",
            f"- python {provenance.get('python')}, torch {provenance.get('torch')}, "
            f"torchvision {provenance.get('torchvision')}, timm {provenance.get('timm')}",
            f"- CUDA {provenance.get('cuda')}, cuDNN {provenance.get('cudnn')}, device "
            f"{provenance.get('device')}"]


def model_card(config: Mapping[str, Any], merge: Mapping[str, Any]) -> str:
    """The model card text."""
    network, spec = config["network"], config.get("input")
    rule = merge.get("rule", "single")
    n_members = len(merge.get("members") or [])
    envs = config.get("environments") or []
    tests = [envs[t] if t < len(envs) else str(t) for t in config.get("test_envs") or []]
    title = (f"{merge.get('algorithm', 'model')} {rule} model of {config['dataset']}"
             + (f", test domain {', '.join(tests)}" if tests else ""))
    training = merge.get("training") or {}
    lines = _front_matter(config) + [f"# {title}", ""]
    lines += [
        "## What it is", "",
        f"An image classifier over {config['num_classes']} classes of {config['dataset']}: "
        f"a {network['backbone']} featurizer and a linear head, one network with no "
        f"inference overhead. It is the {RULE_TEXT.get(rule, rule)} ({n_members} "
        f"run{'s' if n_members != 1 else ''} averaged, from {merge.get('weights', 'the runs')}).",
        "", f"Classes, in label order: {', '.join(config['class_names'])}.", "",
        "## How it was trained", "",
        f"- algorithm: {merge.get('algorithm')}; {training.get('steps', 'n/a')} steps per run; "
        f"hyperparameter space: {training.get('hparams_space', 'n/a')}",
        f"- initialisation: {training.get('init', 'n/a')}",
        f"- batch norm: {merge.get('bn', 'n/a')}", ""]
    lines += _members(merge) + [""]
    lines += [
        "## Data", "",
        f"- dataset: {config['dataset']}; environments (domains): {', '.join(envs) or 'n/a'}",
        f"- trained on: {', '.join(config.get('training_environments') or []) or 'n/a'}; "
        f"held out (test): {', '.join(tests) or 'none'}",
        f"- each environment split with trial seed(s) {config['splits']['trial_seeds']}: a "
        f"{config['splits']['holdout_fraction']:g} fraction held out as `out` (validation), "
        "the rest `in`", ""]
    lines += ["## Accuracy", ""] + _scores(merge) + [""]
    if spec:
        lines += ["## Input", "",
                  f"Images are resized to {spec['image_size']}x{spec['image_size']} "
                  f"({spec['interpolation']}, antialiased), {spec['channels']} channel(s), "
                  f"then normalised with mean {spec['mean']} and std {spec['std']} "
                  f"({spec['source']}). `load_model(...).transform` does exactly this.", ""]
    lines += [
        "## Use", "", "```python", "import domainbed", "",
        "model = domainbed.load_model(\"THIS_FOLDER\")",
        "predictions = domainbed.predict(model, [\"photo.jpg\"])",
        "print(predictions.names())", "```", "", "```bash",
        "python -m domainbed.scripts.predict --model THIS_FOLDER --images FOLDER_OR_FILES",
        "```", "",
        "## Limits", "",
        "- The accuracies above are measured on the splits named, of this dataset only; on "
        "other domains expect other numbers (that is what the held-out domain estimates).",
        "- The model knows only the classes listed; every image gets one of them.",
        "- The weights inherit the licences of the pretrained weights and of the data they "
        "were trained on.", "",
        "## Provenance", ""] + _provenance(config.get("provenance") or {}) + [
        "", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)
