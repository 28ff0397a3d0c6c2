"""Train mianjing's reranker on the bundled e5-small: its top layers fine-tuned (or LoRA) + a one-logit head.

Step 1 reads the questions (tune/questions.py) and holds out the questions of a share of the passages
(`holdout`, chosen by a seeded hash of the passage id). Step 2 mines hard negatives for the others from
hybrid retrieval (tune/negatives.py). Step 3 trains with sentence-transformers' own `CrossEncoderTrainer`
and `BinaryCrossEntropyLoss` (pos_weight = negatives per positive): the base (`CrossEncoder(base,
num_labels=1)`, a fresh head) keeps its first `layers` layers; method "full" trains every parameter of
the layers from `frozen` on, method "lora" has LoRA (rank `r`, peft) adapt the attention and feed-forward
linear layers (`rerank.TARGETS`); the head trains fully, everything else is frozen. Step 4 writes the
adapter folder that `retriever/rerank.py` merges at first use: `adapter.safetensors` (trained layers in
fp16, or LoRA A/B; the head in fp32), `reranker.json`, and `training.json` (data sha256, settings, counts,
duration, machine, versions, the command). Step 5 scores the held-out questions through the real search:
hybrid, rerank mode with the current reranker (when one is given) and the trained one, hit@1/hit@5/MRR@10.

Does not: write questions, tune hyperparameters, save the base model's weights, or change settings.

    python -m tune.train --questions tune/data/questions.jsonl --out retriever/reranker \
        [--layers 12] [--negatives 4] [--epochs 1] [--max-length 128] [--leave-out NOTE] [--limit N]

Not yet a working recipe on the bundled questions (README, "The reranker", has the runs). Pooling "cls"
(the usual head on position 0) reads a state e5-small leaves nearly constant across inputs (it was
trained with mean pooling): every setup tried kept a constant score. Pooling "mean" (the default: the head
reads the mean of all token states) gives scores that vary from the start; its head is initialised by a
linear probe (`probe_c`) and dropout is off. A linear probe on 6 layers separates positives from hard
negatives better than one on all 12 (a positive above its 3 negatives for 0.69 vs 0.49 of held-out
questions), but as a reranker it is still far below hybrid search (held-out MRR@10 0.57 vs 0.83).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retriever import rerank
from retriever.e5 import E5_NAME
from retriever.rerank import Reranker, WindowReranker
from tune import negatives as negatives_

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

REPO = Path(__file__).resolve().parent.parent
LIBRARIES = (
    "torch",
    "transformers",
    "sentence-transformers",
    "peft",
    "accelerate",
    "safetensors",
    "datasets",
)


@dataclass(frozen=True)
class TrainSettings:
    base: str = E5_NAME  # base model: the bundled e5-small, or a CrossEncoder-loadable folder
    method: str = "full"  # full: layers from `frozen` on train fully (shipped fp16); lora: LoRA + head
    layers: int = 6  # transformer layers kept (of 12): rerank latency is about proportional
    frozen: int = 1  # full: the first layers stay as in e5 (keeps the shipped file under 20 MB)
    pooling: str = "mean"  # what the head reads: "mean" of every token's state, or "cls" (position 0)
    head_token: str = "s"  # pooling cls: "s" (<s>) or "question" (the question's first token)
    max_length: int = 128  # tokens of (question, passage) while training; recorded in reranker.json
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 5e-5  # the transformer layers (full fine-tuning); LoRA wants ~1e-3
    head_lr: float = 1e-4  # the head, which starts from the linear probe
    probe: int = 4000  # pairs (a seeded sample) the head's initial linear probe is fitted on; 0 = none
    probe_c: float = 0.01  # inverse L2 strength of that probe (sklearn C): small keeps its scores calm
    warmup: float = 0.1  # share of the steps with a linear warmup
    r: int = 16  # LoRA rank
    alpha: int = 32  # LoRA scale = alpha / r
    dropout: float = 0.1  # LoRA dropout
    negatives: int = 2  # hard negatives per question (of up to negatives_.PER_QUESTION mined)
    random_negatives: int = 2  # easy negatives per question: random answering passages
    depth: int = negatives_.DEPTH  # hybrid hits mined per question
    near: float = negatives_.NEAR  # bigram Jaccard that makes a hit a copy of the positive
    holdout: float = 0.1  # share of passages whose questions are held out (0 = train on all)
    eval_k: int = 20  # hits searched per held-out question
    seed: int = 12
    limit: int = 0  # use only the first N questions (0 = all)
    leave_out: str = ""  # a note file none of whose questions is trained on (the leave-one-file-out check)
    threads: int = 0  # torch CPU threads; 0 = torch's default


# Step 1: questions, split by passage
def read_rows(path: Path, limit: int = 0) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def split(rows: list[dict[str, Any]], holdout: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train rows, held-out rows): the held-out ones are all questions of round(holdout x passages)
    passages, those first by sha256(seed:passage id)."""
    passages = sorted(
        {r["passage"] for r in rows}, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).digest()
    )
    n = min(len(passages) - 1, max(1, round(holdout * len(passages)))) if holdout > 0 else 0
    held = set(passages[:n])
    return [r for r in rows if r["passage"] not in held], [r for r in rows if r["passage"] in held]


# Step 3: training
def train(pairs: list[negatives_.Pair], base: Path, settings: TrainSettings) -> tuple[CrossEncoder, dict]:
    """The base with a trained LoRA adapter and head (unmerged), and what the trainer reported."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, inject_adapter_in_model
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    set_seed(settings.seed)  # the head (and LoRA A) are initialised at random
    if settings.pooling == "mean" and settings.method != "full":
        raise ValueError("pooling 'mean' trains with method 'full' only")
    model = rerank.base_cross_encoder(
        base, settings.layers, settings.max_length, head_token=settings.head_token, pooling=settings.pooling
    )
    if settings.pooling == "mean":
        no_dropout(model)
    probe = probe_head(model, pairs, settings) if settings.pooling == "mean" and settings.probe else None
    if settings.method == "lora":
        # peft's own injection: transformers 5.24's add_adapter wrapper (CrossEncoder.add_adapter) demands
        # peft >= 0.22, which is not released; it only checks the version, then calls this.
        config = LoraConfig(
            r=settings.r,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=rerank.TARGETS,
        )
        inject_adapter_in_model(config, model.model)
    for name, param in rerank.parameters(model, settings.pooling).items():
        if settings.method == "full":
            param.requires_grad = _trained(name, settings)
        elif rerank.is_head(name):
            param.requires_grad = True  # peft froze everything but LoRA: the fresh head trains fully
    positives = sum(p.label == 1.0 for p in pairs)
    data = Dataset.from_dict(
        {
            "query": [p.question for p in pairs],
            "passage": [p.passage for p in pairs],
            "label": [p.label for p in pairs],
        }
    )
    pos_weight = torch.tensor((len(pairs) - positives) / max(positives, 1))
    head_lr = {re.escape(rerank.MEAN_HEAD) + r"\..*": settings.head_lr} if settings.pooling == "mean" else {}
    with tempfile.TemporaryDirectory() as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=scratch,
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.lr,
            warmup_steps=settings.warmup,
            seed=settings.seed,
            data_seed=settings.seed,
            save_strategy="no",
            report_to="none",
            logging_steps=25,
            use_cpu=True,
            dataloader_pin_memory=False,
            learning_rate_mapping=head_lr,
        )
        trainer = CrossEncoderTrainer(
            model=model,
            args=args,
            train_dataset=data,
            loss=BinaryCrossEntropyLoss(model, pos_weight=pos_weight),
        )
        out = trainer.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report = {
        "steps": out.global_step,
        "loss": round(out.training_loss, 4),
        "trainable_parameters": trainable,
    }
    report["pos_weight"] = round(float(pos_weight), 3)
    if probe is not None:
        report["probe"] = probe
    return model, report


def no_dropout(model: CrossEncoder) -> None:
    """Dropout off while training (pooling "mean"): the head starts from a linear probe fitted on small
    differences between e5's mean-pooled states, which dropout noise (p=0.1) swamps."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def features(model: CrossEncoder, pairs: list[tuple[str, str]], batch: int = 32) -> Any:
    """Pooling "mean": the mean-pooled states (before the head) of (question, passage) pairs."""
    import numpy as np
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for at in range(0, len(pairs), batch):
            pooled = model[1](model[0](model.preprocess(pairs[at : at + batch])))
            out.append(pooled["sentence_embedding"].float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def probe_head(model: CrossEncoder, pairs: list[negatives_.Pair], settings: TrainSettings) -> dict[str, Any]:
    """Initialise the fresh head with a linear probe: a class-balanced logistic regression on the
    untrained model's mean-pooled states of a seeded sample of the pairs, unstandardised into the Dense
    layer. A random head on e5's states (whose differences are small beside their common mean) left the
    constant score slowly; fine-tuning from the probe starts from a head that already ranks."""
    import random

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sample = random.Random(settings.seed).sample(pairs, min(settings.probe, len(pairs)))
    x = features(model, [(p.question, p.passage) for p in sample])
    y = [int(p.label == 1.0) for p in sample]
    scaler = StandardScaler().fit(x)
    fit = LogisticRegression(C=settings.probe_c, max_iter=2000, class_weight="balanced").fit(
        scaler.transform(x), y
    )
    weight = fit.coef_[0] / scaler.scale_
    bias = fit.intercept_[0] - float((fit.coef_[0] * scaler.mean_ / scaler.scale_).sum())
    head: Any = model[2].linear  # the Dense module's nn.Linear
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weight[None], dtype=head.weight.dtype))
        head.bias.fill_(bias)
    return {"pairs": len(sample), "accuracy": round(float(fit.score(scaler.transform(x), y)), 4)}


def _trained(name: str, settings: TrainSettings) -> bool:
    """Method full: the head and every parameter of the layers from `frozen` on (embeddings stay)."""
    layer = rerank.layer_of(name)
    return rerank.is_head(name) or (layer is not None and layer >= settings.frozen)


# Step 4: the adapter folder
def save_adapter(model: CrossEncoder, out: Path, settings: TrainSettings) -> None:
    """LoRA: A/B and the head in fp32. Full: the trained layers in fp16 (half the bytes; the merged
    model scores within ~1e-3 of the trained one), the head in fp32."""
    import torch
    from safetensors.torch import save_file

    params = rerank.parameters(model, settings.pooling)
    head = {n: p.detach().float() for n, p in params.items() if rerank.is_head(n)}
    if settings.method == "full":
        trained = {n: p for n, p in params.items() if _trained(n, settings) and n not in head}
        layers = {n: p.detach().to(torch.float16) for n, p in trained.items()}
        tensors = {**layers, **head}
        shape: dict[str, Any] = {"method": "full", "frozen": settings.frozen}
    else:
        from peft import get_peft_model_state_dict

        tensors = {n: t.float() for n, t in get_peft_model_state_dict(model.model).items()} | head
        shape = {"r": settings.r, "alpha": settings.alpha, "targets": rerank.TARGETS}
    out.mkdir(parents=True, exist_ok=True)
    save_file({n: t.contiguous() for n, t in tensors.items()}, str(out / rerank.WEIGHTS))
    config = {
        "format": rerank.FORMAT,
        "base": settings.base,
        "layers": settings.layers,
        **shape,
        "max_length": settings.max_length,
        "head_token": settings.head_token,
        "pooling": settings.pooling,
    }
    (out / rerank.CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


# Step 5: held-out questions, hybrid vs rerank mode with each reranker (the search that users get)
def heldout(
    rows: list[dict[str, Any]], searcher: Any, rerankers: dict[str, Reranker | WindowReranker], k: int
) -> dict[str, Any]:
    """hit@1 / hit@5 / MRR@10 of the held-out questions: "hybrid", then rerank mode with each reranker,
    through `retriever.search.search` with the searcher's settings (fusion, candidates) and `k` hits."""
    from assistant.settings import search_args
    from retriever.search import search

    args = {**search_args(searcher.settings), "k": k}
    found: dict[str, list[int | None]] = {}
    for name, reranker in {"hybrid": None, **rerankers}.items():
        mode = "hybrid" if reranker is None else "rerank"
        found[name] = []
        for row in rows:
            result = search(
                searcher.index, row["question"], **{**args, "mode": mode}, embedder=searcher.embedder,
                reranker=reranker,
            )  # fmt: skip
            found[name].append(
                next((n for n, h in enumerate(result.hits, 1) if _relevant(h.chunk, row)), None)
            )
    return {"questions": len(rows), **{name: _metrics(ranks) for name, ranks in found.items()}}


def _relevant(chunk: Any, row: dict[str, Any]) -> bool:
    """The question's passage, or one overlapping its span in the same note (eval's rule)."""
    if chunk.id == row["passage"]:
        return True
    return (
        chunk.source == row.get("source")
        and chunk.start < row.get("end", 0)
        and row.get("start", 0) < chunk.end
    )


def _metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "hit@1": round(sum(r == 1 for r in ranks) / n, 4),
        "hit@5": round(sum(r is not None and r <= 5 for r in ranks) / n, 4),
        "mrr@10": round(sum(1 / r for r in ranks if r is not None and r <= 10) / n, 4),
        "found": round(sum(r is not None for r in ranks) / n, 4),
    }


def run(
    rows: list[dict[str, Any]],
    searcher: Any,
    out: Path,
    settings: TrainSettings,
    *,
    cache_dir: Path,
    current: Reranker | WindowReranker | None = None,
) -> tuple[CrossEncoder, dict[str, Any]]:
    """Steps 1-5 on loaded rows and an open Searcher; returns the trained (unmerged) model and the record.
    The held-out questions compare hybrid, the `current` reranker (when given) and the trained one."""
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    left_out = [r for r in rows if r["source"] == settings.leave_out]
    train_rows, held_rows = split(
        [r for r in rows if r["source"] != settings.leave_out], settings.holdout, settings.seed
    )
    began = time.perf_counter()
    pairs, skipped = negatives_.mine(
        train_rows,
        searcher,
        depth=settings.depth,
        k=settings.negatives,
        near=settings.near,
        random_k=settings.random_negatives,
    )
    mined = time.perf_counter()
    model, report = train(pairs, rerank.base_folder(settings.base, cache_dir), settings)
    trained = time.perf_counter()
    save_adapter(model, out, settings)
    record = {
        "settings": asdict(settings),
        "questions": {
            "train": len(train_rows),
            "heldout": len(held_rows),
            "left_out": len(left_out),
            "skipped": skipped,
        },
        "passages": {
            "train": len({r["passage"] for r in train_rows}),
            "heldout": len({r["passage"] for r in held_rows}),
        },
        "pairs": {"train": len(pairs), "positives": sum(p.label == 1.0 for p in pairs)},
        "training": {
            **report,
            "mining_seconds": round(mined - began, 1),
            "seconds": round(trained - mined, 1),
            "pairs_per_second": round(len(pairs) * settings.epochs / max(trained - mined, 1e-9), 2),
        },
        "heldout": heldout(held_rows, searcher, _compared(model, current), settings.eval_k)
        if held_rows
        else None,
        "adapter_bytes": sum(f.stat().st_size for f in (out / rerank.WEIGHTS, out / rerank.CONFIG)),
        "threads": torch.get_num_threads(),
    }
    return model, record


def _compared(
    model: CrossEncoder, current: Reranker | WindowReranker | None
) -> dict[str, Reranker | WindowReranker]:
    return {**({"current": current} if current is not None else {}), "tuned": Reranker.around(model)}


def provenance(questions: Path, command: str) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "data": {"file": str(questions), "sha256": hashlib.sha256(questions.read_bytes()).hexdigest()},
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": commit or None,
    }


def parse(argv: list[str]) -> tuple[argparse.Namespace, TrainSettings]:
    parser = argparse.ArgumentParser(prog="python -m tune.train", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=REPO / "tune" / "data" / "questions.jsonl")
    parser.add_argument("--out", type=Path, default=rerank.BUNDLED_DIR)
    parser.add_argument("--corpus", type=Path, default=None, help="notes folder (default: the bundled notes)")
    defaults = TrainSettings()
    for f in fields(TrainSettings):
        value = getattr(defaults, f.name)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    return args, TrainSettings(**{f.name: getattr(args, f.name) for f in fields(TrainSettings)})


def build(
    questions: Path,
    out: Path,
    settings: TrainSettings,
    searcher: Any,
    *,
    argv: list[str],
    current: Reranker | WindowReranker | None = None,
    command: str = "python -m tune.train",
) -> tuple[CrossEncoder, dict[str, Any]]:
    """Train from a questions file into the adapter folder `out`, with its training.json; `command` and
    `argv` are recorded as the command line that made it."""
    rows = read_rows(questions, settings.limit)
    model, record = run(rows, searcher, out, settings, cache_dir=searcher.settings.cache, current=current)
    record = {**provenance(questions, shlex.join([*shlex.split(command), *argv])), **record}
    (out / "training.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return model, record


def main(argv: list[str] | None = None) -> int:
    from assistant.retrieval import Searcher
    from assistant.settings import from_env

    argv = sys.argv[1:] if argv is None else argv
    args, settings = parse(argv)
    if not args.questions.is_file():
        print(f"tune.train: error: no questions file {args.questions}", file=sys.stderr)
        return 2
    _, record = build(args.questions, args.out, settings, Searcher(from_env(corpus=args.corpus)), argv=argv)
    print(json.dumps({k: record[k] for k in ("pairs", "training", "heldout", "adapter_bytes")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
