"""The model card (README.md): YAML metadata, then what the training did and what it changed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from isotune.evaluation.suite import markdown_table, summary_row
from isotune.publish.run_folder import RunFolder
from isotune.publish.sources import BaseModel, TrainingData
from isotune.publish.tables import geometry_table, sts_table, transfer_table

WANG_ISOLA_BIBTEX = """@inproceedings{wang2020understanding,
  title     = {Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere},
  author    = {Wang, Tongzhou and Isola, Phillip},
  booktitle = {Proceedings of the 37th International Conference on Machine Learning (ICML)},
  series    = {Proceedings of Machine Learning Research},
  volume    = {119},
  pages     = {9929--9939},
  year      = {2020}
}"""

# all-MiniLM-L6-v2's card has no BibTeX block; it was trained with the sentence-transformers framework.
SENTENCE_BERT_BIBTEX = """@inproceedings{reimers2019sentencebert,
  title     = {Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks},
  author    = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing},
  year      = {2019},
  url       = {https://arxiv.org/abs/1908.10084}
}"""


@dataclass(frozen=True)
class CardInputs:
    """Everything the card states beyond the run folder itself."""

    repo_id: str
    revision: str | None
    metadata: dict[str, Any]
    base_model: BaseModel
    data: TrainingData
    plots: list[str]
    publish_command: str


def render_card(run: RunFolder, inputs: CardInputs) -> str:
    """Return the whole README.md: metadata block, summary, usage, results, training, recipe and citations."""
    front_matter = yaml.safe_dump(inputs.metadata, sort_keys=False, allow_unicode=True)
    sections = [
        _summary(run, inputs),
        _usage(inputs),
        _results(run, inputs.plots),
        _training(run, inputs),
        _environment(run),
        _citation(inputs.base_model),
    ]
    return f"---\n{front_matter}---\n\n" + "\n".join(sections)


def _base_model_text(base_model: BaseModel) -> str:
    if base_model.hub_id is not None:
        return f"[{base_model.hub_id}](https://huggingface.co/{base_model.hub_id})"
    return f"a local model (`{base_model.name}`, not a Hub id)"


def _summary(run: RunFolder, inputs: CardInputs) -> str:
    name = inputs.repo_id.split("/")[-1]
    recipe = run.recipe
    return "\n".join(
        [
            f"# {name}",
            "",
            f"A sentence-embedding model fine-tuned with isotune from "
            f"{_base_model_text(inputs.base_model)} with {_objective_text(run)}, on {inputs.data.description}. "
            f"It maps text to L2-normalised {_dimension(run)}-dimensional vectors ({recipe.model.pooling} pooling, "
            f"at most {recipe.model.max_seq_length} tokens per text); compare them with cosine similarity.",
            "",
        ]
    )


def _objective_text(run: RunFolder) -> str:
    objective = run.recipe.objective
    if objective.name == "align_uniform":
        return (
            "the alignment and uniformity losses of Wang and Isola (2020), "
            f"`L_align + lambda * (L_uniform(x) + L_uniform(y)) / 2` with alpha {objective.alpha:g}, "
            f"t {objective.t:g} and lambda {objective.lam:g}"
        )
    if objective.name == "info_nce_uniform":
        return (
            f"in-batch InfoNCE (temperature {objective.temperature:g}) plus the uniformity loss of Wang and Isola "
            f"(2020), `L_InfoNCE + lambda * (L_uniform(x) + L_uniform(y)) / 2` with t {objective.t:g} and lambda "
            f"{objective.lam:g}"
        )
    return f"in-batch InfoNCE (temperature {objective.temperature:g})"


def _dimension(run: RunFolder) -> str:
    pooling = run.model_dir / "1_Pooling" / "config.json"
    if pooling.is_file():
        config = json.loads(pooling.read_text(encoding="utf-8"))
        # sentence-transformers 6 writes embedding_dimension, earlier releases word_embedding_dimension.
        dimension = config.get("embedding_dimension", config.get("word_embedding_dimension"))
        if isinstance(dimension, int):
            return str(dimension)
    return "fixed-size"


def _usage(inputs: CardInputs) -> str:
    revision = f', revision="{inputs.revision}"' if inputs.revision else ""
    return "\n".join(
        [
            "## Usage",
            "",
            "```python",
            "from sentence_transformers import SentenceTransformer",
            "",
            f'model = SentenceTransformer("{inputs.repo_id}"{revision})',
            'embeddings = model.encode(["A man is playing a guitar.", "Someone plays an instrument."])',
            "print(model.similarity(embeddings[0], embeddings[1]))",
            "```",
            "",
        ]
    )


def _results(run: RunFolder, plots: list[str]) -> str:
    before, after = run.metrics["before"], run.metrics["after"]
    rows = {"before": summary_row(before), "after": summary_row(after)}
    lines = [
        "## Evaluation before and after training",
        "",
        "STS scores are Spearman correlation x 100 between cosine similarity and the gold scores, over all pairs "
        "of a task pooled. Geometry is measured on L2-normalised embeddings: alignment over STS-B dev pairs with "
        "gold score >= 4, uniformity (t = 2) and average cosine over sentences sampled from the training data.",
        "",
        markdown_table(rows),
    ]
    if any(value is None for row in rows.values() for value in row.values()):
        lines += ["n/a: not evaluated in this run.", ""]
    lines += [
        "### STS",
        "",
        sts_table(before, after),
        "### Transfer",
        "",
        transfer_table(before, after),
        "### Geometry",
        "",
        geometry_table(before, after),
    ]
    if plots:
        lines += ["### Plots", ""] + [f"![{path}]({path})\n" for path in plots]
    return "\n".join(lines)


def _training(run: RunFolder, inputs: CardInputs) -> str:
    recipe, info = run.recipe, run.run_info
    training = recipe.training
    data = info.get("data", {})
    command = info.get("command") or "not recorded (the run was started from Python)"
    saved_step = run.metrics.get("saved_step", info.get("saved_step"))
    lines = [
        "## Training",
        "",
        f"- Base model: {_base_model_text(inputs.base_model)}",
        f"- Data: {inputs.data.description}; {_count(data.get('pairs'))} positive pairs, "
        f"{_count(data.get('truncated_sentences'))} sentences truncated at {recipe.model.max_seq_length} tokens",
        f"- Objective: {_objective_text(run)}",
        f"- Steps: {training.max_steps} of {training.batch_size} pairs (gradient accumulation "
        f"{training.gradient_accumulation_steps}), AdamW at learning rate {training.learning_rate:g}, "
        f"{training.scheduler} schedule, warmup ratio {training.warmup_ratio:g}, seed {training.seed}",
        f"- Saved model: step {saved_step} of {training.max_steps} ({_selection_text(run)})",
        f"- Precision used: {_precision_text(info.get('precision'))}",
        "",
        "Training command:",
        "",
        f"```bash\n{command}\n```",
        "",
        "Published with:",
        "",
        f"```bash\n{inputs.publish_command}\n```",
        "",
        "The resolved recipe, with every key; the same file is in this repository as `isotune/recipe.yaml`, "
        "next to `isotune/metrics.json` and `isotune/run.json`:",
        "",
        f"```yaml\n{run.recipe_text.rstrip()}\n```",
        "",
    ]
    return "\n".join(lines)


def _selection_text(run: RunFolder) -> str:
    scored = [entry for entry in run.metrics.get("history", []) if "stsb_dev" in entry]
    if run.recipe.training.keep_best and scored:
        return f"the best STS-B dev score of {len(scored)} evaluated step(s)"
    return "the last step"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "n/a"


def _precision_text(precision: Any) -> str:
    names = {"no": "fp32 (no mixed precision)", "bf16": "bf16 mixed precision", "fp16": "fp16 mixed precision"}
    return names.get(precision, f"{precision} (as recorded in run.json)")


def _environment(run: RunFolder) -> str:
    info = run.run_info
    software = info.get("software", {})
    lines = [
        "## Environment",
        "",
        f"- Hardware: {info.get('device', 'not recorded')}, {info.get('processes', 1)} process(es)",
        f"- Training time: {info.get('seconds', 'n/a')} s",
        f"- isotune {info.get('isotune_version', 'n/a')}",
    ]
    lines += [f"- {name} {version}" for name, version in software.items()]
    return "\n".join(lines) + "\n"


def _citation(base_model: BaseModel) -> str:
    lines = [
        "## Citation",
        "",
        "The training objective (alignment and uniformity on the hypersphere):",
        "",
        f"```bibtex\n{WANG_ISOLA_BIBTEX}\n```",
        "",
    ]
    entries = base_model.bibtex_entries()
    if not entries and base_model.hub_id == "sentence-transformers/all-MiniLM-L6-v2":
        entries = [SENTENCE_BERT_BIBTEX]
    if entries:
        if base_model.bibtex_entries():
            lines.append("The base model, as its card asks to cite it:")
        else:
            lines.append("The base model (its card has no BibTeX entry; all-MiniLM-L6-v2 is a Sentence-BERT model):")
        lines += ["", *[f"```bibtex\n{entry}\n```\n" for entry in entries]]
    elif base_model.hub_id is not None:
        lines += [
            f"The base model: its card lists no BibTeX entry; cite it as "
            f"[{base_model.hub_id}](https://huggingface.co/{base_model.hub_id}) and the papers its card names.",
            "",
        ]
    else:
        lines += [
            f"The base model: a local model (`{base_model.name}`) without a Hub id or BibTeX entry in its card; "
            "add its citation here.",
            "",
        ]
    return "\n".join(lines)
